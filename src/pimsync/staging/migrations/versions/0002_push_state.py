"""Push state: the payload last pushed per item, product media entries, key-value sync state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ENTITIES = (
    "attributes",
    "attribute_options",
    "families",
    "family_variants",
    "categories",
    "product_models",
    "products",
    "assets",
)


def upgrade() -> None:
    for name in ENTITIES:
        with op.batch_alter_table(name) as batch:
            batch.add_column(sa.Column("payload_hash", sa.String(64)))
            batch.add_column(sa.Column("pushed_payload", sa.Text))
    op.create_table(
        "product_media",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("product_sku", sa.String(255), nullable=False),
        sa.Column("media_code", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("label", sa.String(255)),
        sa.Column("entry_id", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("product_sku", "media_code", name="uq_product_media"),
    )
    op.create_index("ix_product_media_status", "product_media", ["status"])
    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
    op.drop_table("product_media")
    for name in ENTITIES:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("pushed_payload")
            batch.drop_column("payload_hash")
