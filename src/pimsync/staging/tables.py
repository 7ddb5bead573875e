"""The staging schema: one table per PIM entity, plus the run history and the sync log.

Every entity table has the same columns, so one repository method serves them all. The record
is stored as JSON text, not JSONB: on PostgreSQL JSONB cost 3-4.5x TEXT on ingest and we never
query inside the record.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


class Status(StrEnum):
    """Where an item stands between the PIM and Magento."""

    NEW = "new"  # staged, never pushed
    NEEDS_UPDATE = "needs_update"  # pushed before, changed since
    SYNCED = "synced"  # what Magento holds matches the staged hash
    ERROR = "error"  # the last push of this item failed
    DELETED_IN_PIM = "deleted_in_pim"  # a complete full import did not see it
    QUARANTINED = "quarantined"  # the PIM record failed validation


# The entity tables, in the order a feed imports them.
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


def _entity_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        # Products are keyed by uuid; options and family variants by "<parent>/<code>".
        Column("code", String(255), nullable=False, unique=True),
        Column("identifier", String(255)),  # the SKU of a product; the code elsewhere
        Column("parent_code", String(255), index=True),
        Column("label", String(255)),
        Column("data", Text, nullable=False),
        Column("hash", String(64), nullable=False),
        Column("hash_version", SmallInteger, nullable=False),
        Column("pushed_hash", String(64)),
        Column("status", String(16), nullable=False, index=True),
        Column("skipped", Boolean, nullable=False, default=False),
        Column("last_error", Text),
        Column("pim_updated", String(40)),
        Column("imported_at", DateTime(timezone=True), nullable=False),
        Column("pushed_at", DateTime(timezone=True)),
        Column("magento_id", String(64)),
        # What was last sent to Magento, and its hash: "what is pushed is hashed".
        Column("payload_hash", String(64)),
        Column("pushed_payload", Text),
        # A worker's claim on a pending row (`pimsync worker`): who, and until when.
        Column("claimed_by", String(64)),
        Column("claimed_until", DateTime(timezone=True)),
        Index(f"ix_{name}_identifier", "identifier"),
    )


entity_tables: dict[str, Table] = {name: _entity_table(name) for name in ENTITIES}

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("feeds", Text, nullable=False),  # JSON list
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False, index=True),
    Column("counts", Text, nullable=False, default="{}"),  # JSON {feed: {counter: n}}
    Column("watermarks", Text, nullable=False, default="{}"),  # JSON {feed: iso datetime}
    Column("config_fingerprint", String(64), nullable=False),
    Column("config_snapshot", Text),  # JSON, secrets removed
    Column("message", Text),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("options", Text),  # JSON: what the run was asked to do, so a stopped run can resume
    Column("resumed_from", Integer),  # the stopped run this one carried on
)

# One row while a run holds the staging database: a lease its heartbeat renews. `pimsync stop`
# sets stop_requested_at; the holder sees it at its next heartbeat.
sync_lock = Table(
    "sync_lock",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    # Where `pid` names the holder's process (`lock.machine_key`); NULL if an older pimsync
    # wrote the row.
    Column("machine", String(16)),
    Column("run_id", Integer),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("stop_requested_at", DateTime(timezone=True)),
)

# One row per image a product should have in Magento; the assets feed uploads the rows
# without an entry id. Keyed by SKU: Magento's media endpoint is.
product_media = Table(
    "product_media",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("product_sku", String(255), nullable=False),
    Column("media_code", String(255), nullable=False),
    Column("position", Integer, nullable=False),
    Column("label", String(255)),
    Column("entry_id", String(32)),
    Column("status", String(16), nullable=False, index=True),
    Column("last_error", Text),
    UniqueConstraint("product_sku", "media_code", name="uq_product_media"),
)

# Small facts that outlive a run, such as the mapping fingerprint of the last push.
sync_state = Table(
    "sync_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

sync_log = Table(
    "sync_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("sync_runs.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("feed", String(32), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("code", String(255), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("message", Text),
)
