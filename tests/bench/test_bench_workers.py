"""`pimsync create --workers 4` against `--workers 1`, on PostgreSQL staging (issue #5).

Each run gets a fresh database and a fresh mock Magento (50 ms a request), imports the same
catalog, pushes attributes and categories, then times `create --feed products --workers N`
over the whole command. While `--workers` does not exist, the row says so with the CLI's own
error instead of failing the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.bench.harness import (
    MAGENTO_TOKEN,
    PUSH_PRODUCTS,
    Measured,
    Row,
    add,
    base_env,
    plain_url,
    rate,
    run,
    start_mock,
    stop,
    try_run,
)

pytestmark = pytest.mark.bench

SECTION = "push with workers, PostgreSQL staging"
TARGET = 3.5  # 4 workers push at least 3.5 times what one does
CONCURRENCY = 8  # [magento] concurrency, the default, in every worker
# products/s of the one-worker run, or its error when it could not run
BASELINE: dict[str, float | str] = {}


def synced_products(staging_url: str) -> tuple[int, int]:
    """Products synced, and products staged: what the push did, whatever its report says.

    Variants (products with a parent) belong to the `variants` feed, not pushed here.
    """
    with psycopg.connect(plain_url(staging_url)) as connection:
        row = connection.execute(
            "SELECT count(*) FILTER (WHERE status = 'synced'), count(*) FROM products "
            "WHERE parent_code IS NULL"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("workers", [1, 4])
def test_workers(workers: int, tmp_path: Path, bench_postgres: str, postgres_url: str) -> None:
    if workers > 1 and isinstance(BASELINE.get("rate"), str):
        pytest.skip("the one-worker run could not run; its row says why")
    pim, pim_url = start_mock("pim", "--products", str(PUSH_PRODUCTS))
    magento, magento_url = start_mock("magento", "--latency", "0.05", "--token", MAGENTO_TOKEN)
    try:
        env = base_env(tmp_path, pim_url, postgres_url)
        env.update(
            {
                "PIMSYNC_MAGENTO__BASE_URL": magento_url,
                "PIMSYNC_MAGENTO__TOKEN": MAGENTO_TOKEN,
                "PIMSYNC_MAGENTO__MODE": "sync",
                "PIMSYNC_MAGENTO__CONCURRENCY": str(CONCURRENCY),
                "PIMSYNC_MAPPING__LOCALES": '{"en_US": "default"}',
            }
        )
        run(env, "import:full", "--attributes", "--categories", "--products")
        run(env, "create", "--feed", "attributes", "--feed", "categories")
        push = try_run(env, "create", "--feed", "products", "--workers", str(workers))
        scenario = f"create --feed products --workers {workers}"
        target = f"4 workers ≥ {TARGET}x 1 worker"
        if isinstance(push, Measured):
            BASELINE["rate"] = error = push.error_line()
            figure = f"not available: {error}"
            add(Row(SECTION, scenario, figure, target=target, notes=f"exit code {push.returncode}"))
            return
        pushed, staged = synced_products(postgres_url)
        assert pushed > 0, push.report
        products_per_s = pushed / push.seconds
        notes = f"sync, concurrency {CONCURRENCY} per worker, 1 store view; whole command"
        if pushed < staged:
            notes += f"; only {pushed:,} of {staged:,} staged products synced"
        figure, met = rate(pushed, push.seconds), None
        if workers == 1:
            BASELINE["rate"] = products_per_s
            target = ""
        elif isinstance(BASELINE.get("rate"), float):
            speedup = products_per_s / float(BASELINE["rate"])
            figure += f" = {speedup:.2f}x 1 worker"
            met = speedup >= TARGET
        # wait4 reports the largest of a process and the children it waited for.
        notes += "; peak RSS of the largest pimsync process"
        add(
            Row(
                SECTION,
                scenario,
                figure,
                pushed,
                push.seconds,
                push.peak_rss_mb,
                target,
                met,
                notes,
            )
        )
    finally:
        stop(pim)
        stop(magento)
