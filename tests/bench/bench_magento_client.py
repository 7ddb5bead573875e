"""Throughput of MagentoClient against FakeMagento(latency=0.05) on loopback.

The fake runs in a separate process (its own GIL), so the client's threads compete only with
each other. Each design saves N products one request each; the bound is concurrency / latency
(a worker cannot finish faster than the fake's sleep). Bulk submits batches of 100 and waits.

    .venv/bin/python tests/bench/bench_magento_client.py [--count 1000] [--latency 0.05]

Not a pytest module (the name does not start with `test_`): it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from pimsync.config import MagentoConfig
from pimsync.magento.client import MagentoClient

TOKEN = "magento-token"
SEQUENTIAL = "one at a time"
SHARED = "shared client, pool = concurrency"
DEFAULT_POOL = "shared client, httpx default pool"
PER_WORKER = "client per worker (for_worker)"
TARGETS = {8: 0.8, 32: 0.6}  # share of concurrency/latency a design must hold


def _serve(ready: Any, latency: float) -> None:
    """Child process: FakeMagento behind the loopback server until terminated."""
    from pimsync.testing.fake_magento import FakeMagento
    from pimsync.testing.server import serve_forever

    with FakeMagento(token=TOKEN, latency=latency) as fake:
        serve_forever(fake, port=0, on_ready=ready.put)


def product(tag: str, i: int) -> dict[str, Any]:
    return {
        "sku": f"{tag}-{i:05d}",
        "name": f"Bench {tag} {i}",
        "attribute_set_id": 4,
        "price": 10 + i % 7,
        "type_id": "simple",
        "custom_attributes": [{"attribute_code": "description", "value": "x" * 200}],
    }


def settings(base_url: str, concurrency: int) -> MagentoConfig:
    return MagentoConfig(base_url=base_url, token=TOKEN, concurrency=concurrency)


def run_threads(
    count: int, workers: int, client_for: Callable[[], MagentoClient], tag: str
) -> float:
    """Save `count` products from `workers` threads; each thread gets `client_for()`."""
    local = threading.local()
    made: list[MagentoClient] = []
    lock = threading.Lock()

    def save(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = client_for()
            with lock:
                made.append(client)
        client.save_product(product(tag, i))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(save, i) for i in range(count)]:
            future.result()
    elapsed = time.perf_counter() - start
    for client in {id(c): c for c in made}.values():
        if client is not made[0]:
            client.close()
    return count / elapsed


def bench_sync(base_url: str, count: int, repeat: int) -> dict[tuple[str, int], list[float]]:
    """Products/s per (design, workers); concurrent designs run `repeat` times, interleaved."""
    rates: dict[tuple[str, int], list[float]] = {}
    with MagentoClient.from_config(settings(base_url, 1)) as client:
        start = time.perf_counter()
        for i in range(count):
            client.save_product(product("seq", i))
        rates[(SEQUENTIAL, 1)] = [count / (time.perf_counter() - start)]

    for run in range(repeat):
        for workers in (8, 32):
            tag = f"r{run}w{workers}"
            # What from_config builds: one pool, max and keep-alive = [magento] concurrency.
            with MagentoClient.from_config(settings(base_url, workers)) as shared:
                rate = run_threads(count, workers, lambda: shared, f"sh{tag}")
            rates.setdefault((SHARED, workers), []).append(rate)

            # The same, on httpx's default pool (100 connections, 20 kept alive).
            http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"})
            with MagentoClient(http, settings(base_url, workers)) as default_pool:
                rate = run_threads(count, workers, lambda: default_pool, f"df{tag}")
            rates.setdefault((DEFAULT_POOL, workers), []).append(rate)

            # One client, with its own two-connection pool, per worker thread.
            with MagentoClient.from_config(settings(base_url, workers)) as parent:
                rate = run_threads(count, workers, parent.for_worker, f"pw{tag}")
            rates.setdefault((PER_WORKER, workers), []).append(rate)
    return rates


def bench_bulk(base_url: str, count: int, batch: int) -> tuple[float, int]:
    with MagentoClient.from_config(settings(base_url, 1)) as client:
        start = time.perf_counter()
        uuids = []
        for first in range(0, count, batch):
            items = [{"product": product("bulk", i)} for i in range(first, first + batch)]
            uuids.append(client.bulk_submit("all", "products", items).bulk_uuid)
        complete = 0
        for bulk_uuid in uuids:
            results = client.bulk_wait(bulk_uuid, poll_interval=0.1, timeout=120)
            complete += sum(r.status == "complete" for r in results)
        return count / (time.perf_counter() - start), complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3, help="runs per concurrent design")
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ready, args.latency), daemon=True)
    server.start()
    try:
        base_url = ready.get(timeout=30)
        print(f"FakeMagento(latency={args.latency}) in another process at {base_url}")
        print(f"{args.count} products per run, median of {args.repeat} runs\n")
        header = ("design", "workers", "products/s", "runs", "bound", "share")
        print("{:36} {:>7} {:>10} {:>17} {:>6} {:>6}".format(*header))
        held: dict[str, bool] = {}
        for (name, workers), runs in bench_sync(base_url, args.count, args.repeat).items():
            bound = workers / args.latency
            rate = statistics.median(runs)
            spread = "/".join(f"{r:.0f}" for r in runs)
            print(
                f"{name:36} {workers:7} {rate:10.1f} {spread:>17} {bound:6.0f} {rate / bound:6.0%}"
            )
            if workers in TARGETS:
                held[name] = held.get(name, True) and rate / bound >= TARGETS[workers]
        verdict = ", ".join(f"{name}: {'holds' if ok else 'misses'}" for name, ok in held.items())
        print(f"\n>=80% of bound at 8 and >=60% at 32 -> {verdict}")
        rate, complete = bench_bulk(base_url, args.count, 100)
        print(f"\nbulk, batches of 100, submit all then wait: {rate:.1f} products/s "
              f"({complete}/{args.count} complete)")  # fmt: skip
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
