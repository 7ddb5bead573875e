"""The same product import done by dlt, for the pimsync/dlt comparison of issue #5.

A generator `@dlt.resource` pages the mock PIM's `/products-uuid` list 100 at a time (the page
size pimsync uses) with dlt's own RESTClient, following `_links.next`, and loads the products
into duckdb with `write_disposition="merge"` on `primary_key="uuid"`: what pimsync's staging
does (an upsert keyed by uuid). `max_table_nesting=0` keeps each product's nested fields as
JSON columns, as pimsync keeps the record as JSON, instead of dlt's default of a child table
per value list, which would make dlt do far more work than pimsync does. `--dlt-defaults`
leaves both the nesting and the load file format to dlt, as a resource written from dlt's
documentation would.

    BENCH_PIM_TOKEN=... python tests/bench/dlt_import.py --pim http://127.0.0.1:PORT \
        --path '/api/rest/v1/products-uuid?pagination_type=search_after&limit=100' --dir /tmp/dlt

Prints one JSON object: rows loaded, seconds of `pipeline.run` (extract, normalize, load) and
dlt's version. It imports nothing of pimsync or the tests, so its peak RSS is dlt's own. The
OAuth token comes from the environment, never the command line. dlt's telemetry is switched
off: it would reach for the network.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def load(
    pim_url: str, path: str, token: str, folder: Path, nesting: int | None, file_format: str | None
) -> dict[str, Any]:
    # Set before dlt is imported, so that no part of it ever sees telemetry on.
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
    from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator

    client = RESTClient(
        base_url=pim_url,
        auth=BearerTokenAuth(token),
        paginator=JSONLinkPaginator(next_url_path="_links.next.href"),
        data_selector="_embedded.items",
    )

    @dlt.resource(
        name="products",
        write_disposition="merge",
        primary_key="uuid",
        max_table_nesting=nesting,
    )
    def products() -> Iterator[Any]:
        yield from client.paginate(path)

    pipeline = dlt.pipeline(
        pipeline_name="pim_products",
        destination=dlt.destinations.duckdb(str(folder / "products.duckdb")),
        dataset_name="pim",
        pipelines_dir=str(folder / "pipelines"),
    )
    started = time.perf_counter()
    pipeline.run(products(), loader_file_format=file_format)
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as sql:
        rows = sql.execute_sql("SELECT count(*) FROM products")[0][0]
    steps = {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in pipeline.last_trace.steps
        if step.finished_at is not None
    }
    return {
        "rows": int(rows),
        "seconds": seconds,
        "steps": steps,
        "dlt": dlt.__version__,
        "nesting": nesting,
        "format": file_format or pipeline.destination.capabilities().preferred_loader_file_format,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pim", required=True, help="base URL of the mock PIM")
    parser.add_argument("--path", required=True, help="the product list, with its query")
    parser.add_argument("--dir", required=True, type=Path, help="folder for duckdb and dlt state")
    parser.add_argument("--nesting", type=int, default=0, help="dlt's max_table_nesting")
    parser.add_argument("--format", help="dlt's loader_file_format (default: the destination's)")
    parser.add_argument(
        "--dlt-defaults", action="store_true", help="dlt's own nesting and load file format"
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    token = os.environ["BENCH_PIM_TOKEN"]
    nesting, file_format = (None, None) if args.dlt_defaults else (args.nesting, args.format)
    result = load(args.pim, args.path, token, args.dir, nesting, file_format)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
