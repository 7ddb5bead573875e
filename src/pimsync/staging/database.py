"""Opening the staging database and keeping its schema current with Alembic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from pimsync.errors import ConfigError, StagingError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = "pimsync.staging:migrations"
# The newest migration shipped; a test checks it against Alembic's own view of the scripts.
# Knowing it here lets every command skip importing Alembic (12 MB) when the schema is current.
HEAD_REVISION = "0004"


def open_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files are created private (0600) and run in WAL mode."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"[staging] url {url!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            _create_private_file(Path(database))
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # Plain postgresql:// would pick psycopg2, which we do not ship.
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"[staging] url: unsupported database URL ({exc})") from None
    event.listen(engine, "connect", _postgresql_session)
    return engine


def backend_name(url: str) -> str:
    """`sqlite`, `postgresql`...: the database a staging URL names, without connecting ("" for
    a URL that is not one; opening it says why)."""
    try:
        return make_url(url).get_backend_name()
    except ArgumentError:
        return ""


def _create_private_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StagingError(f"cannot create the staging database {path}: {exc.strerror}") from None


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # 8 KB pages instead of 4 KB: a staged product is a 3 KB record, so a 4 KB page held one
    # row and every row written was a page (and a WAL frame, copied again at the checkpoint).
    # Measured on 100k products: inserts 20-21k/s -> 22-24k/s, 10k random updates 0.52-0.55 s
    # -> 0.59-0.65 s, the file as large. It takes effect only in a database without tables yet
    # (before WAL is switched on); an existing database keeps its page size.
    cursor.execute("PRAGMA page_size=8192")
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only power loss can undo the
    # last commits, and those are re-fetched by the next import.
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A checkpoint copies the WAL into the database and syncs both files; by default it runs
    # every 1,000 pages (4 MB), which an import writes every batch, and every random page of the
    # code index was copied and synced again and again. Every 200 MB of WAL at most (25,000
    # pages of 8 KB) the copies coalesce: 1M products 8,700-9,400/s -> 10,100/s, measured on
    # SQLite (then with 50,000 pages of 4 KB).
    cursor.execute("PRAGMA wal_autocheckpoint=25000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _postgresql_session(dbapi_connection: object, _record: object) -> None:
    # psycopg prepares a statement it has run five times, and PostgreSQL may then reuse a
    # generic plan made when the statement was prepared. An import prepares its lookups while
    # the table is nearly empty, and the seq-scan plan that was right then stayed for the whole
    # run (measured: 100k products 75.8 s, 13.1 s with plans made for each execution). The
    # statements stay prepared (parsed once); only their plans are made afresh.
    # plan_cache_mode is PostgreSQL 12+; older servers keep their generic plans.
    if dbapi_connection.info.server_version >= 120000:  # type: ignore[attr-defined]
        with dbapi_connection.cursor() as cursor:  # type: ignore[attr-defined]
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_connection.commit()  # type: ignore[attr-defined]


def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to the newest migration; returns the revision it is at."""
    try:
        if current_revision(engine) == HEAD_REVISION:
            return HEAD_REVISION
        from alembic import command

        command.upgrade(_alembic_config(engine), "head")
        return current_revision(engine)
    except OperationalError as exc:
        raise StagingError(f"cannot open the staging database: {failure_reason(exc)}") from None
    except SQLAlchemyError as exc:
        raise StagingError(f"cannot migrate the staging database: {failure_reason(exc)}") from None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        if not engine.dialect.has_table(connection, "alembic_version"):
            return None
        revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
        return str(revision) if revision is not None else None


def head_revision(engine: Engine) -> str | None:
    """The newest revision among the migration scripts, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def failure_reason(exc: SQLAlchemyError) -> str:
    """The driver's first line says what went wrong; the rest is SQL and a link."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]
