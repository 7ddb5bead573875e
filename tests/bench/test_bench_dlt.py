"""pimsync's product import against the same import done by dlt (tests/bench/dlt_import.py).

Both read one mock PIM process, one after the other, through the same endpoint and page size
(`/products-uuid`, search_after, 100 a page): pimsync into SQLite staging, dlt into duckdb.
Each figure is products/s over the import itself (pimsync's products feed, dlt's
`pipeline.run`), and peak RSS is each process's own. dlt comes with the `bench` extra
(`pip install -e '.[bench]'`, which `make bench` does); without it the row says so and the
test is skipped.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.bench.harness import (
    DLT_SIZE,
    FACTS,
    PRODUCTS_URL,
    SIZES,
    Row,
    add,
    base_env,
    measure,
    pim_token,
    rate,
    run,
    start_mock,
    stop,
)

pytestmark = pytest.mark.bench

SECTION = "pimsync against dlt"
SCRIPT = Path(__file__).with_name("dlt_import.py")
TARGET = 10.0  # pimsync imports at least ten times dlt's products/s
# dlt's fastest here: its duckdb default (insert_values) loaded 10k-30k products ~1.7x slower,
# and parquet (with pyarrow) was no faster than jsonl.
DLT_FORMAT = "jsonl"


def test_pimsync_against_dlt(tmp_path: Path) -> None:
    if importlib.util.find_spec("dlt") is None:
        note = "dlt is not importable: `pip install -e '.[bench]'` installs it (make bench does)"
        target = f"≥ {TARGET:.0f}x"
        add(Row(SECTION, "import, pimsync/dlt", "skipped", target=target, notes=note))
        pytest.skip(note)
    version = importlib.metadata.version("dlt")
    FACTS["dlt"] = f"{version} (duckdb {importlib.metadata.version('duckdb')})"
    mock, url = start_mock("pim", "--products", str(DLT_SIZE))
    try:
        env = base_env(tmp_path, url)
        run(env, "import:full", "--attributes")
        ours = run(env, "import:full", "--products")
        feed = ours.report["feeds"]["products"]
        with httpx.Client(base_url=url) as client:
            token = pim_token(client)
        dlt_env = {**env, "BENCH_PIM_TOKEN": token, "RUNTIME__DLTHUB_TELEMETRY": "false"}
        argv = [sys.executable, str(SCRIPT), "--pim", url, "--path", PRODUCTS_URL]
        argv += ["--format", DLT_FORMAT, "--dir", str(tmp_path / "dlt")]
        theirs = measure(dlt_env, argv)
        assert theirs.returncode == 0, theirs.stderr.decode()[-3000:]
        dlt = json.loads(theirs.stdout)
        assert dlt["rows"] == DLT_SIZE, dlt
    finally:
        stop(mock)
    steps = dlt["steps"]
    # Products alone, as dlt reads them: pimsync's feed reads their models too, in that time.
    ours_rate = DLT_SIZE / feed["seconds"]
    dlt_rate = dlt["rows"] / dlt["seconds"]
    largest = max(SIZES)
    size_note = ""
    if largest != DLT_SIZE:
        size_note = (
            f"; {DLT_SIZE:,} products, not {largest:,}: dlt would take"
            f" ~{largest / dlt_rate / 60:.0f} min (PIMSYNC_BENCH_DLT_SIZE={largest} runs it)"
        )
    add(
        Row(
            SECTION,
            "pimsync import:full --products (SQLite)",
            rate(DLT_SIZE, feed["seconds"]),
            DLT_SIZE,
            feed["seconds"],
            ours.peak_rss_mb,
            notes=f"products alone; the feed also read their models ({feed['fetched']:,} records"
            f" in all, {rate(feed['fetched'], feed['seconds'])}); validation, hashing,"
            " needs-update",
        )
    )
    add(
        Row(
            SECTION,
            f"dlt {version}: rest_client resource, merge on uuid (duckdb)",
            rate(dlt["rows"], dlt["seconds"]),
            dlt["rows"],
            dlt["seconds"],
            theirs.rss_mb,
            notes=f"max_table_nesting=0, {dlt['format']} load files; extract {steps['extract']:.0f}"
            f" s, normalize {steps['normalize']:.0f} s, load {steps['load']:.0f} s; "
            f"whole process {theirs.seconds:.1f} s{size_note}",
        )
    )
    add(
        Row(
            SECTION,
            "import, pimsync/dlt",
            f"{ours_rate / dlt_rate:.1f}x",
            target=f"≥ {TARGET:.0f}x",
            met=ours_rate / dlt_rate >= TARGET,
            notes="ratio of products/s",
        )
    )
