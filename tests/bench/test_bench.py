"""Benchmarks: `make bench` runs them and writes bench/REPORT.md. A report, not a test.

Every pimsync step runs as a real subprocess against mocks in their own processes on
127.0.0.1, so the figures include HTTP, JSON, validation, hashing and the staging database,
and peak RSS is the pimsync process's own. Sizes can be lowered for a quick look, and the 1M
runs left out: `PIMSYNC_BENCH_SIZES=100000 make bench` (every variable: tests/bench/harness.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.harness import (
    BACKENDS,
    MAGENTO_TOKEN,
    PUSH_PRODUCTS,
    SIZES,
    Measured,
    Row,
    add,
    bare_loop,
    bare_share_row,
    base_env,
    rate,
    run,
    start_mock,
    stop,
    touch_products,
    try_run,
)

pytestmark = pytest.mark.bench

IMPORT = "import:full"
INCREMENTAL = "import:incremental"
PUSH = "push, 50 ms Magento latency"
# The client-level targets of tests/bench/bench_magento_client.py: share of concurrency/latency.
BOUND_SHARE = {8: 0.8, 32: 0.6}
# Issue #2's targets for an import into SQLite on the 2-core machine; #5's for any backend.
IMPORT_RATE = 10_000  # products/s, end to end
IMPORT_RSS_MB = 100.0  # peak RSS, and flat from the smallest size to the largest
ONE_PERCENT_SECONDS = 5.0  # import:incremental with 1% of the largest catalog changed
NOTHING_SECONDS = 10.0  # import:incremental with nothing changed
# Peak RSS of each import:full, by backend and size, for the flatness row.
IMPORT_RSS: dict[tuple[str, int], float] = {}


def compare_with_bare_loop(
    env: dict[str, str], url: str, size: int, ours: float, tmp_path: Path
) -> None:
    """The bare loop over the same mock, and the share of its speed pimsync kept."""
    loop, rows, seconds = bare_loop(env, url, tmp_path / "bare.db")
    assert rows == size, rows
    loop_rate = rows / seconds
    add(
        Row(
            IMPORT,
            f"bare loop, {size:,} products (SQLite)",
            rate(rows, seconds),
            rows,
            seconds,
            loop.rss_mb,
            notes="tests/bench/bare_loop.py on the same mock: fetch, orjson, hash, upsert;"
            f" whole process {loop.seconds:.1f} s",
        )
    )
    add(bare_share_row(IMPORT, f"pimsync/bare loop, {size:,} products (SQLite)", ours, loop_rate))


def staging_for(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (a file in the test's folder), else a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    request.getfixturevalue("bench_postgres")
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_import(backend: str, size: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    label = "SQLite" if backend == "sqlite" else "PostgreSQL"
    mock, url = start_mock("pim", "--products", str(size))
    try:
        env = base_env(tmp_path, url, staging_for(backend, request))
        run(env, "import:full", "--attributes")
        full = try_run(env, "import:full", "--products")
        scenario = f"import:full --products, {size:,} products ({label})"
        if isinstance(full, Measured):
            error = full.error_line()
            add(Row(IMPORT, scenario, "did not finish", seconds=full.seconds, notes=error))
            pytest.fail(f"{scenario}: {error}")
        products = full.report["feeds"]["products"]
        # Products alone (the mock's --products), though the feed reads their models too.
        target, met = "", None
        if backend == "sqlite":
            target = f"≥ {IMPORT_RATE:,}/s, peak RSS ≤ {IMPORT_RSS_MB:.0f} MB"
            met = size / products["seconds"] >= IMPORT_RATE and full.peak_rss_mb <= IMPORT_RSS_MB
        add(
            Row(
                IMPORT,
                scenario,
                rate(size, products["seconds"]),
                size,
                products["seconds"],
                full.peak_rss_mb,
                target,
                met,
                notes=f"products alone; with their models {products['fetched']:,} records,"
                f" {rate(products['fetched'], products['seconds'])}; whole command"
                f" {full.seconds:.1f} s, {rate(size, full.seconds)}",
            )
        )
        IMPORT_RSS[backend, size] = full.peak_rss_mb
        if backend == "sqlite":
            compare_with_bare_loop(env, url, size, size / products["seconds"], tmp_path)
        if size < max(SIZES):
            return
        if (backend, min(SIZES)) in IMPORT_RSS and min(SIZES) < size:
            smallest = IMPORT_RSS[backend, min(SIZES)]
            growth = full.peak_rss_mb - smallest
            # Issue #5 asks for flat on every backend; #2's 100 MB is for SQLite, and each
            # SQLite import row above already judges it.
            add(
                Row(
                    IMPORT,
                    f"peak RSS from {min(SIZES):,} to {size:,} products ({label})",
                    f"{smallest:.0f} → {full.peak_rss_mb:.0f} MB ({growth:+.0f} MB)",
                    target="flat (within 10%)",
                    met=growth <= 0.1 * smallest,
                )
            )
        nothing = run(env, "import:incremental", "--feed", "products")
        feed = nothing.report["feeds"]["products"]
        add(
            Row(
                INCREMENTAL,
                f"nothing changed, over {size:,} staged ({label})",
                f"{nothing.seconds:.1f} s",
                feed["fetched"],
                nothing.seconds,
                nothing.peak_rss_mb,
                f"≤ {NOTHING_SECONDS:.0f} s",
                nothing.seconds <= NOTHING_SECONDS,
                notes="whole command",
            )
        )
        changed = size // 100
        touch_products(url, changed, 97)
        one_percent = run(env, "import:incremental", "--feed", "products")
        feed = one_percent.report["feeds"]["products"]
        assert feed["changed"] >= changed
        add(
            Row(
                INCREMENTAL,
                f"1% changed, over {size:,} staged ({label})",
                f"{one_percent.seconds:.1f} s",
                feed["fetched"],
                one_percent.seconds,
                one_percent.peak_rss_mb,
                f"≤ {ONE_PERCENT_SECONDS:.0f} s",
                one_percent.seconds <= ONE_PERCENT_SECONDS,
                notes=f"{feed['changed']:,} changed; whole command",
            )
        )
    finally:
        stop(mock)


@pytest.mark.parametrize(
    ("mode", "concurrency", "locales"),
    [
        ("sync", 1, "one"),
        ("sync", 8, "one"),
        ("sync", 32, "one"),
        ("bulk", 8, "one"),
        ("sync", 8, "three"),
    ],
)
def test_push(mode: str, concurrency: int, locales: str, tmp_path: Path) -> None:
    """Push products to a mock Magento answering each request after 50 ms.

    With one store view a product is one request, so concurrency/latency bounds products/s;
    with three (the mock catalog's locales) each product also writes two store views.
    """
    count = PUSH_PRODUCTS if concurrency > 1 else min(PUSH_PRODUCTS, 500)
    pim, pim_url = start_mock("pim", "--products", str(count))
    magento, magento_url = start_mock("magento", "--latency", "0.05", "--token", MAGENTO_TOKEN)
    try:
        env = base_env(tmp_path, pim_url)
        env.update(
            {
                "PIMSYNC_MAGENTO__BASE_URL": magento_url,
                "PIMSYNC_MAGENTO__TOKEN": MAGENTO_TOKEN,
                "PIMSYNC_MAGENTO__MODE": mode,
                "PIMSYNC_MAGENTO__CONCURRENCY": str(concurrency),
            }
        )
        if locales == "one":
            env["PIMSYNC_MAPPING__LOCALES"] = '{"en_US": "default"}'
        run(env, "import:full", "--attributes", "--categories", "--products")
        run(env, "create", "--feed", "attributes", "--feed", "categories")
        push = run(env, "create", "--feed", "products")
        feed = push.report["feeds"]["products"]
        pushed = feed["created"] + feed["updated"]
        assert feed["failed"] == 0, push.report["errors"]
        store_views = 1 if locales == "one" else 3
        bound = concurrency / 0.05 / store_views
        products_per_s = pushed / feed["seconds"]
        target, met = "", None
        if mode == "sync" and store_views == 1 and concurrency in BOUND_SHARE:
            share = BOUND_SHARE[concurrency]
            target = f"≥ {share:.0%} of the {bound:,.0f}/s bound (client target)"
            met = products_per_s >= share * bound
        if concurrency == 1:
            scenario = "baseline: one at a time"
        else:
            scenario = f"{mode}, concurrency {concurrency}"
        notes = f"SQLite staging, {store_views} store view(s)"
        if mode == "sync":
            notes += f"; bound {bound:,.0f}/s"
        add(
            Row(
                PUSH,
                scenario,
                rate(pushed, feed["seconds"]),
                pushed,
                feed["seconds"],
                push.peak_rss_mb,
                target,
                met,
                notes,
            )
        )
    finally:
        stop(pim)
        stop(magento)
