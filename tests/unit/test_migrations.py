"""The migrations and the table definitions describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pimsync.staging.database import HEAD_REVISION, head_revision, open_engine, upgrade
from pimsync.staging.tables import metadata


def test_head_constant_matches_the_scripts(staging_url):
    engine = open_engine(staging_url)
    assert head_revision(engine) == HEAD_REVISION
    engine.dispose()


def test_migrated_schema_matches_the_table_definitions(staging_url):
    engine = open_engine(staging_url)
    assert upgrade(engine) == HEAD_REVISION
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_upgrade_is_idempotent(staging_url):
    engine = open_engine(staging_url)
    assert upgrade(engine) == HEAD_REVISION
    assert upgrade(engine) == HEAD_REVISION
    engine.dispose()
