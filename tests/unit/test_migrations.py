"""The migrations and the table definitions describe the same schema."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

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


@pytest.mark.postgres
def test_record_columns_are_lz4_compressed_on_postgresql(postgres_url):
    engine = open_engine(postgres_url)
    upgrade(engine)
    with engine.connect() as connection:
        supported = connection.execute(
            text(
                "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                "AND 'lz4' = ANY(enumvals)"
            )
        ).first()
        methods = dict(
            connection.execute(
                text(
                    "SELECT attname, attcompression FROM pg_attribute "
                    "WHERE attrelid = 'products'::regclass AND attname IN ('data', 'code')"
                )
            ).all()
        )
    engine.dispose()
    if supported is None:
        pytest.skip("this PostgreSQL server is built without lz4")
    assert methods == {"data": "l", "code": ""}  # 'l' is lz4; other columns keep the default


@pytest.mark.postgres
def test_postgresql_sessions_plan_each_execution_afresh(postgres_url):
    # A generic plan prepared while a table is nearly empty (a seq scan) would stay for the
    # whole import: every pooled connection plans each execution with its own parameters.
    engine = open_engine(postgres_url)
    try:
        for _ in range(2):  # a new connection, then one handed back by the pool
            with engine.connect() as connection:
                assert connection.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    finally:
        engine.dispose()


def test_a_new_sqlite_database_gets_8k_pages_and_an_old_one_keeps_its_own(tmp_path):
    def settings(engine) -> tuple[int, str, int]:
        with engine.connect() as connection:
            return (
                connection.exec_driver_sql("PRAGMA page_size").scalar(),
                connection.exec_driver_sql("PRAGMA journal_mode").scalar(),
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar(),
            )

    new = open_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(new)
    assert settings(new) == (8192, "wal", 25000)
    new.dispose()

    old_path = tmp_path / "old.db"
    old_file = sqlite3.connect(old_path)  # as pimsync made it before: 4 KB pages, WAL
    old_file.execute("PRAGMA page_size=4096")
    old_file.execute("PRAGMA journal_mode=WAL")
    old_file.execute("CREATE TABLE kept (x)")
    old_file.close()
    old = open_engine(f"sqlite:///{old_path}")
    assert upgrade(old) == HEAD_REVISION
    assert settings(old) == (4096, "wal", 25000)
    old.dispose()
