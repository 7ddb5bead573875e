"""The `data` column of PostgreSQL staging at pglz (PostgreSQL's default) against lz4: rows/s of
`StagingRepository.upsert_fetched` on products, first insert and changed-rows update
(tests/bench/pg_storage.py does the measuring)."""

from __future__ import annotations

import pytest

from tests.bench import pg_storage
from tests.bench.harness import STORAGE_ROWS, Row, add

pytestmark = pytest.mark.bench

SECTION = "PostgreSQL storage: compression of the `data` column"
REPEAT = 3
DEFAULT = {"pglz": " (PostgreSQL's default)"}


def test_data_compression(bench_postgres: str, postgres_url: str) -> None:
    settings = pg_storage.compressions(postgres_url)
    if "lz4" not in settings:
        add(Row(SECTION, "lz4", "not available", notes="the server was built without lz4"))
    items = pg_storage.realistic_items(STORAGE_ROWS)
    average_kb = sum(len(item.data) for item in items) / len(items) / 1024
    add(
        Row(
            SECTION,
            "records",
            f"{average_kb:.1f} KB",
            STORAGE_ROWS,
            notes="average JSON record of the mock catalog, as staged; batches of 1,000; "
            "the issue measured 14.6k rows/s at pglz against 29k/s at lz4 on its PostgreSQL 15",
        )
    )
    results = pg_storage.measure(postgres_url, items, settings, repeat=REPEAT)
    pglz = results["pglz"]
    for name, measurement in results.items():
        phases = (
            ("first insert", measurement.insert, pglz.insert),
            ("changed-rows update", measurement.update, pglz.update),
        )
        for phase_name, phase, default in phases:
            notes = f"median of {REPEAT} runs ({phase.spread()})"
            if name != "pglz":
                notes += f"; {phase.median / default.median:.2f}x pglz"
            if phase is measurement.insert:
                notes += (
                    f"; table {measurement.table_mb:,.0f} MB after the insert; "
                    f"values stored as: {measurement.stored_as}"
                )
            add(
                Row(
                    SECTION,
                    f"{phase_name}, `data` at {name}" + DEFAULT.get(name, ""),
                    f"{phase.median:,.0f} rows/s",
                    STORAGE_ROWS,
                    STORAGE_ROWS / phase.median,
                    notes=notes,
                )
            )
