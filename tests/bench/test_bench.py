"""Benchmarks: `make bench` runs them and writes bench/REPORT.md. A report, not a test.

Every pimsync step runs as a real subprocess against mocks in their own processes on
127.0.0.1, so the figures include HTTP, JSON, validation, hashing and SQLite, and peak RSS is
the pimsync process's own (`os.wait4`). Sizes can be lowered for a quick look:
`PIMSYNC_BENCH_SIZES=20000,100000 make bench`.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import PIM_ENV

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "bench" / "REPORT.md"
SIZES = [int(s) for s in os.environ.get("PIMSYNC_BENCH_SIZES", "100000,1000000").split(",")]
PUSH_PRODUCTS = int(os.environ.get("PIMSYNC_BENCH_PUSH", "10000"))
MAGENTO_TOKEN = "magento-token"


@dataclass
class Result:
    command: str
    seconds: float
    peak_rss_mb: float
    report: dict


ROWS: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def write_report() -> Iterator[None]:
    yield
    if not ROWS:
        return
    REPORT.parent.mkdir(exist_ok=True)
    header = [
        "# pimsync benchmark report",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- load average at the end: {os.getloadavg()[0]:.2f}",
        "",
        "| scenario | items | seconds | items/s | peak RSS (MB) | notes |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    REPORT.write_text("\n".join(header + ROWS) + "\n")
    print(f"\nwrote {REPORT}")


def row(scenario: str, items: int, seconds: float, rss: float | None, notes: str = "") -> None:
    rate = items / seconds if seconds else 0.0
    rss_text = f"{rss:.0f}" if rss is not None else ""
    ROWS.append(f"| {scenario} | {items:,} | {seconds:.1f} | {rate:,.0f} | {rss_text} | {notes} |")
    print(ROWS[-1], flush=True)


def start_mock(kind: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pimsync", "mock", kind, "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    assert match, f"mock {kind} did not start: {line}"
    return process, match.group(1)


TIME = "/usr/bin/time"


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()


def run(env: dict[str, str], *args: str) -> Result:
    """Run pimsync once and measure its own peak RSS.

    Linux carries a process's peak RSS across fork and exec, so a pimsync forked straight from
    this (large) pytest process would report pytest's size. /usr/bin/time is small: forked
    from it, pimsync's figure is its own.
    """
    rss_file = Path(env["BENCH_TMP"]) / "rss"
    wrapper = [TIME, "-f", "%M", "-o", str(rss_file)] if os.path.exists(TIME) else []
    started = time.monotonic()
    done = subprocess.run(
        [*wrapper, sys.executable, "-m", "pimsync", *args, "--json"],
        env=env,
        capture_output=True,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
    rss = int(rss_file.read_text().split()[-1]) / 1024 if wrapper else float("nan")
    return Result(" ".join(args), seconds, rss, orjson.loads(done.stdout))


def base_env(tmp: Path, pim_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}
    env.update(PIM_ENV)
    env["PIMSYNC_PIM__BASE_URL"] = pim_url
    env["PIMSYNC_STAGING__URL"] = f"sqlite:///{tmp / 'staging.db'}"
    env["BENCH_TMP"] = str(tmp)
    return env


def touch_products(pim_url: str, count: int, stride: int) -> None:
    """Change `count` products through the mock's Akeneo PATCH endpoint."""
    with httpx.Client(base_url=pim_url) as client:
        token = client.post(
            "/api/oauth/v1/token",
            json={"grant_type": "password", "username": "pimsync", "password": "pimsync-password"},
            auth=("pimsync", "pimsync-secret"),
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        chosen: list[str] = []
        # httpx's params= replaces a URL's query, so the next links are followed as they are.
        url: str | None = (
            "/api/rest/v1/products-uuid?pagination_type=search_after&limit=100&attributes=sku"
        )
        seen = 0
        while url and len(chosen) < count:
            page = client.get(url, headers=headers).json()
            for item in page["_embedded"]["items"]:
                if seen % stride == 0 and len(chosen) < count:
                    chosen.append(item["uuid"])
                seen += 1
            url = (page["_links"].get("next") or {}).get("href")
        body = {"values": {"ean": [{"locale": None, "scope": None, "data": "bench"}]}}

        def patch(uuid: str) -> None:
            response = client.patch(
                f"/api/rest/v1/products-uuid/{uuid}", json=body, headers=headers
            )
            assert response.status_code == 204, response.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(patch, chosen))


@pytest.mark.parametrize("size", SIZES)
def test_import(size: int, tmp_path: Path) -> None:
    mock, url = start_mock("pim", "--products", str(size))
    try:
        env = base_env(tmp_path, url)
        run(env, "import:full", "--attributes")
        full = run(env, "import:full", "--products")
        products = full.report["feeds"]["products"]
        row(
            "import:full --products (SQLite)",
            products["fetched"],
            products["seconds"],
            full.peak_rss_mb,
            f"{size:,} products + their models; wall {full.seconds:.1f} s",
        )
        if size < max(SIZES):
            return
        nothing = run(env, "import:incremental", "--feed", "products")
        feed = nothing.report["feeds"]["products"]
        row(
            "import:incremental, nothing changed",
            feed["fetched"],
            nothing.seconds,
            nothing.peak_rss_mb,
            f"over {size:,} staged; whole command",
        )
        changed = size // 100
        touch_products(url, changed, 97)
        one_percent = run(env, "import:incremental", "--feed", "products")
        feed = one_percent.report["feeds"]["products"]
        assert feed["changed"] >= changed
        row(
            "import:incremental, 1% changed",
            feed["fetched"],
            one_percent.seconds,
            one_percent.peak_rss_mb,
            f"{feed['changed']:,} changed of {size:,}; whole command",
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
        bound = concurrency / 0.05
        store_views = 1 if locales == "one" else 3
        notes = f"{mode}, concurrency {concurrency}, {store_views} store view(s)"
        if mode == "sync":
            notes += f"; bound {bound / store_views:,.0f}/s"
        row(
            "create --feed products, 50 ms latency",
            pushed,
            feed["seconds"],
            push.peak_rss_mb,
            notes,
        )
    finally:
        stop(pim)
        stop(magento)
