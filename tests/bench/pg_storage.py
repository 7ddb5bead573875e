"""Staging upsert throughput on PostgreSQL with the `data` column at pglz against lz4.

Issue #5 measured that PostgreSQL's default pglz compression of every value over 2 KB halves
upsert throughput. This measures pimsync's own path, `StagingRepository.upsert_fetched` on the
products table in batches of `[staging] batch_size`, with records exactly as an import stages
them: the mock catalog's products read through `PimClient` and turned into `StagedItem`s by the
import's own function (about 3 KB of JSON each, so every one is over the TOAST threshold).

Two phases per run, each timed alone: the first insert of every row, then an update of every
row with a changed record (what an import writes for changed products). Runs alternate
between the two settings so that the machine's other load spreads over both.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import orjson
from sqlalchemy import Engine, text

from pimsync.config import load_config
from pimsync.pim.client import PimClient
from pimsync.pim.records import Parsed
from pimsync.staging.database import open_engine, upgrade
from pimsync.staging.hashing import content_hash
from pimsync.staging.prepare import StagedItem, staged_item
from pimsync.staging.repository import StagingRepository
from pimsync.testing.fake_pim import FakePim
from tests.conftest import PIM_ENV

COMPRESSIONS = ("pglz", "lz4")


@dataclass
class Phase:
    """Rows/s of every run of one phase under one setting."""

    rates: list[float] = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def spread(self) -> str:
        return " / ".join(f"{r / 1000:.1f}k" for r in self.rates)


@dataclass
class Measurement:
    compression: str
    insert: Phase = dataclasses.field(default_factory=Phase)
    update: Phase = dataclasses.field(default_factory=Phase)
    table_mb: float = 0.0  # the products table with its TOAST and indexes, after the insert
    stored_as: str = ""  # what pg_column_compression says of the stored values


def realistic_items(count: int) -> list[StagedItem]:
    """`count` products of the mock catalog, staged as `import:full` stages them."""
    config = load_config(None, {**PIM_ENV, "PIMSYNC_STAGING__URL": "sqlite://"})
    transport = httpx.MockTransport(FakePim(products=count))
    items: list[StagedItem] = []
    with PimClient.from_config(config.pim, transport) as client:
        for page in client.products():
            items += [staged_item(i, "sku") for i in page if isinstance(i, Parsed)]
    assert len(items) == count, f"{count - len(items)} products were not valid"
    return items


def changed(item: StagedItem, stamp: str) -> StagedItem:
    """The item after a PIM edit: a new EAN and a later `updated`, re-hashed."""
    record = orjson.loads(item.data)
    record["values"]["ean"] = [{"locale": None, "scope": None, "data": stamp}]
    record["updated"] = "2026-06-01T00:00:00+00:00"
    data = orjson.dumps(record).decode()
    return item._replace(data=data, hash=content_hash(record))


def compressions(staging_url: str) -> tuple[str, ...]:
    """pglz, and lz4 when the server was built with it (PostgreSQL 14+ `--with-lz4`)."""
    engine = open_engine(staging_url)
    try:
        with engine.connect() as connection:
            values = connection.scalar(
                text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
            )
    finally:
        engine.dispose()
    return tuple(name for name in COMPRESSIONS if values is not None and name in values)


def _batches(items: Sequence[StagedItem], size: int) -> Iterator[Sequence[StagedItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _upsert_all(engine: Engine, items: Sequence[StagedItem], batch_size: int) -> float:
    """Rows/s of upserting every item, a commit per batch, as an import does."""
    with StagingRepository(engine) as repo:
        started = time.perf_counter()
        for batch in _batches(items, batch_size):
            counts = repo.upsert_fetched("products", batch)
            assert counts.unchanged == 0, "every row must be written"
            repo.commit()
        return len(items) / (time.perf_counter() - started)


def _prepare(engine: Engine, compression: str) -> None:
    # TRUNCATE gives the table new, empty files; the column's setting applies to new values.
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE products"))
        connection.execute(
            text(f"ALTER TABLE products ALTER COLUMN data SET COMPRESSION {compression}")
        )


def _settle(engine: Engine) -> None:
    # A VACUUM between the phases, untimed, instead of an autovacuum at a random moment.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE products"))


def _inspect(engine: Engine, measurement: Measurement) -> None:
    with engine.connect() as connection:
        size = connection.scalar(text("SELECT pg_total_relation_size('products')"))
        methods = connection.execute(
            text(
                "SELECT coalesce(pg_column_compression(data), 'not compressed'), count(*) "
                "FROM products GROUP BY 1 ORDER BY 2 DESC"
            )
        ).all()
    measurement.table_mb = int(size or 0) / 2**20
    measurement.stored_as = ", ".join(f"{method} {count:,}" for method, count in methods)


def measure(
    staging_url: str,
    items: Sequence[StagedItem],
    settings: Sequence[str],
    *,
    repeat: int = 3,
    batch_size: int = 1000,
) -> dict[str, Measurement]:
    """Insert then update every item, `repeat` times under each setting, interleaved."""
    updates = [changed(item, f"{i:013d}") for i, item in enumerate(items)]
    # The records live through every run: out of the collector's sight, they cost no run a
    # full collection that another run did not pay.
    gc.collect()
    gc.freeze()
    engine = open_engine(staging_url)
    try:
        upgrade(engine)
        results = {name: Measurement(name) for name in settings}
        for _ in range(repeat):
            for name, measurement in results.items():
                _prepare(engine, name)
                measurement.insert.rates.append(_upsert_all(engine, items, batch_size))
                _inspect(engine, measurement)
                _settle(engine)
                measurement.update.rates.append(_upsert_all(engine, updates, batch_size))
        return results
    finally:
        engine.dispose()
        gc.unfreeze()
