"""The run lock names the machine its holder's pid belongs to, not only the host name.

Two containers on one host (with the host's network, so one host name) or two machines cloned
from one image can share a host name, and a pid of one means nothing to the other: the lock
takes over a dead holder at once only when the machine key matches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_lock") as batch:
        batch.add_column(sa.Column("machine", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("sync_lock") as batch:
        batch.drop_column("machine")
