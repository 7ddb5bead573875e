"""`pimsync create --workers 4` against `--workers 1`, on PostgreSQL staging (issue #5).

Each run gets a fresh database and a fresh mock Magento (50 ms a request), imports the same
catalog, pushes attributes and categories, then times `create --feed products --workers N`
over the whole command. The two are run in turns, `PIMSYNC_BENCH_WORKER_PAIRS` pairs of them
(3 by default): on this shared machine one pair's ratio moved between 3.1x and 3.6x from one
hour to the next, so the report gives the median run of each and the range of the pairs'
ratios. When a run cannot run at all, its row says so with the CLI's own error instead of
failing the benchmark.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
PAIRS = int(os.environ.get("PIMSYNC_BENCH_WORKER_PAIRS", "3"))
RUNS_IN_TURN = [(pair, workers) for pair in range(PAIRS) for workers in (1, 4)]


@dataclass(frozen=True)
class Push:
    pushed: int
    staged: int
    seconds: float
    rss_mb: float

    @property
    def rate(self) -> float:
        return self.pushed / self.seconds


# The finished runs, by worker count, in the order they ran; an error ends the section.
RUNS: dict[int, list[Push]] = {1: [], 4: []}
FAILED: list[str] = []


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


@pytest.mark.parametrize(("pair", "workers"), RUNS_IN_TURN)
def test_workers(
    pair: int, workers: int, tmp_path: Path, bench_postgres: str, postgres_url: str
) -> None:
    if FAILED:
        pytest.skip("an earlier run could not run; its row says why")
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
        if isinstance(push, Measured):
            FAILED.append(push.error_line())
            add(
                Row(
                    SECTION,
                    f"create --feed products --workers {workers}",
                    f"not available: {push.error_line()}",
                    target=f"4 workers ≥ {TARGET}x 1 worker",
                    notes=f"exit code {push.returncode}",
                )
            )
            return
        pushed, staged = synced_products(postgres_url)
        assert pushed > 0, push.report
        RUNS[workers].append(Push(pushed, staged, push.seconds, push.peak_rss_mb))
    finally:
        stop(pim)
        stop(magento)
    if (pair, workers) == RUNS_IN_TURN[-1]:
        add_rows()


def median_run(runs: list[Push]) -> Push:
    """The run with the median rate (the lower middle one of an even number)."""
    return sorted(runs, key=lambda push: push.rate)[(len(runs) - 1) // 2]


def add_rows() -> None:
    one, four = median_run(RUNS[1]), median_run(RUNS[4])
    speedup = four.rate / one.rate
    ratios = [b.rate / a.rate for a, b in zip(RUNS[1], RUNS[4], strict=True)]
    for workers, median in ((1, one), (4, four)):
        rates = ", ".join(f"{push.rate:,.0f}/s" for push in RUNS[workers])
        notes = f"sync, concurrency {CONCURRENCY} per worker, 1 store view; whole command"
        if len(RUNS[workers]) > 1:
            notes += (
                f"; the median of {len(RUNS[workers])} runs in turns with the other row's: {rates}"
            )
        if median.pushed < median.staged:
            notes += f"; only {median.pushed:,} of {median.staged:,} staged products synced"
        # wait4 reports the largest of a process and the children it waited for.
        notes += "; peak RSS of the largest pimsync process"
        figure, target, met = rate(median.pushed, median.seconds), "", None
        if workers == 4:
            figure += f" = {speedup:.2f}x 1 worker"
            target, met = f"4 workers ≥ {TARGET}x 1 worker", speedup >= TARGET
            if len(ratios) > 1:
                notes += f"; the pairs' own ratios: {', '.join(f'{r:.2f}x' for r in ratios)}"
        scenario = f"create --feed products --workers {workers}"
        add(
            Row(
                SECTION,
                scenario,
                figure,
                items=median.pushed,
                seconds=median.seconds,
                rss_mb=median.rss_mb,
                target=target,
                met=met,
                notes=notes,
            )
        )
