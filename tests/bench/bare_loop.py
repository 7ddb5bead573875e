"""The yardstick of issues #2 and #5: a bare fetch -> parse -> hash -> upsert loop.

Issue #2 says "a bare fetch -> parse (orjson) -> canonical JSON + hash -> batched upsert loop
measured about 12,800 products/s and 48 MB here", and issue #5 that it ran "about 15x dlt".
This is that loop, written plainly, so the bench can measure it on the day's machine beside
pimsync and dlt: it pages the mock PIM's `/products-uuid` list 100 at a time with httpx,
parses each page with orjson, hashes each product's JSON with sorted keys and without
`updated` (SHA-256), and upserts 500 rows at a time into SQLite (WAL, synchronous=NORMAL) keyed
by uuid. No validation, no status bookkeeping, no quarantine, no watermark, no resume: what
pimsync does on top is what the comparison shows the cost of. The cyclic GC keeps its default
settings (the issue's warning: httpx leaves a reference cycle per response).

    BENCH_PIM_TOKEN=... python tests/bench/bare_loop.py --pim http://127.0.0.1:PORT \
        --path '/api/rest/v1/products-uuid?pagination_type=search_after&limit=100' --db /tmp/x.db

Prints one JSON object: rows upserted and seconds. It imports nothing of pimsync, so its peak
RSS is the loop's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

BATCH = 500
UPSERT = (
    "INSERT INTO products (uuid, data, hash) VALUES (?, ?, ?) "
    "ON CONFLICT (uuid) DO UPDATE SET data = excluded.data, hash = excluded.hash"
)


def load(pim_url: str, path: str, token: str, database: Path) -> dict[str, Any]:
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS products (uuid TEXT PRIMARY KEY, data TEXT, hash TEXT)"
    )
    rows: list[tuple[str, str, str]] = []
    count = 0
    started = time.perf_counter()
    with httpx.Client(base_url=pim_url, headers={"Authorization": f"Bearer {token}"}) as client:
        url: str | None = path
        while url:
            response = client.get(url)
            response.raise_for_status()
            page = orjson.loads(response.content)
            for product in page["_embedded"]["items"]:
                product.pop("_links", None)
                updated = product.pop("updated", None)
                digest = hashlib.sha256(orjson.dumps(product, option=orjson.OPT_SORT_KEYS))
                product["updated"] = updated
                rows.append((product["uuid"], orjson.dumps(product).decode(), digest.hexdigest()))
            if len(rows) >= BATCH:
                connection.executemany(UPSERT, rows)
                connection.commit()
                count += len(rows)
                rows = []
            url = page.get("_links", {}).get("next", {}).get("href")
    if rows:
        connection.executemany(UPSERT, rows)
        connection.commit()
        count += len(rows)
    seconds = time.perf_counter() - started
    connection.close()
    return {"rows": count, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pim", required=True, help="base URL of the mock PIM")
    parser.add_argument("--path", required=True, help="the product list, with its query")
    parser.add_argument("--db", required=True, type=Path, help="the SQLite file to write")
    args = parser.parse_args()
    result = load(args.pim, args.path, os.environ["BENCH_PIM_TOKEN"], args.db)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
