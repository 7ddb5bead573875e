"""Imports under PIM faults, at the pipeline level: what holds when the PIM misbehaves mid-run.

Each fault strikes in the middle of the product pagination (the third page), where a stop
leaves the most half-done state: earlier feeds completed, earlier pages committed, the feed's
watermark not yet moved. A burst shorter than the retries must be absorbed (the run completes
with exactly the PIM's data); a fault that outlasts them must stop the run with one line and
exit 4, keep every committed batch, flag nothing deleted, leave the feed's watermark where it
was, and let the next run catch up.

Already covered elsewhere, and not repeated here: the client's retry of a 429/5xx, a transport
error and a malformed page (tests/unit/test_pim_client.py), a 503 outage during an incremental
(tests/integration/test_import.py::test_an_outage_mid_import_leaves_the_watermark_where_it_was),
a few 429s and 503s during a full import (test_import.py::test_429_and_5xx_are_retried), and one
item edited behind the cursor (test_import.py::test_an_item_changed_behind_the_cursor_...).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from pimsync import pipeline
from pimsync.errors import PimError
from pimsync.pipeline.watermark import since_for
from pimsync.testing.fake_pim import FakePim
from tests.helpers import mark_all_synced
from tests.reliability.support import (
    PRODUCTS_PATH,
    armed_at,
    build_app,
    last_run,
    pim_products,
    staged_data,
    status_counts,
    statuses,
    watermark,
)

PRODUCTS = 35
ATTEMPTS = 4
SETTINGS = {
    "PIMSYNC_PIM__PAGE_SIZE": "10",
    "PIMSYNC_STAGING__BATCH_SIZE": "10",  # a commit per page
    "PIMSYNC_PIM__MAX_ATTEMPTS": str(ATTEMPTS),
}

FAULTS: dict[str, Callable[[FakePim, int], None]] = {
    "5xx burst": lambda pim, n: pim.fail_next(n, 503, path_prefix=PRODUCTS_PATH),
    "429 storm": lambda pim, n: pim.fail_next(n, 429, retry_after=20, path_prefix=PRODUCTS_PATH),
    "timeouts": lambda pim, n: pim.garble_next(n, "timeout", path_prefix=PRODUCTS_PATH),
    "connection resets": lambda pim, n: pim.drop_next(n, path_prefix=PRODUCTS_PATH),
    "truncated JSON": lambda pim, n: pim.garble_next(n, "truncated", path_prefix=PRODUCTS_PATH),
    "HTML page with 200": lambda pim, n: pim.garble_next(n, "html", path_prefix=PRODUCTS_PATH),
}
# Faults that are not retried: a page whose envelope reads well is handed on, and the damage to
# its records shows only where they are read (pim/records.py); one such page stops the run.
UNRETRIED: dict[str, Callable[[FakePim, int], None]] = {
    "records damaged behind a whole envelope": lambda pim, _n: pim.garble_next(
        1, "damaged", path_prefix=PRODUCTS_PATH
    ),
}


@pytest.fixture
def pim() -> FakePim:
    return FakePim(products=PRODUCTS)


class PageLog:
    """The uuids of every product page the PIM answered in full, in order."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.pages: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self.handler(request)
        if request.url.path == PRODUCTS_PATH and response.status_code == 200:
            try:
                items = orjson.loads(response.content)["_embedded"]["items"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return response
            self.pages.append([item["uuid"] for item in items])
        return response


@pytest.mark.parametrize("fault", FAULTS)
def test_a_burst_shorter_than_the_retries_is_absorbed(sqlite_url, pim, fault):
    sleeps: list[float] = []
    burst = ATTEMPTS - 1
    handler = armed_at(pim, PRODUCTS_PATH, 3, lambda: FAULTS[fault](pim, burst))
    app = build_app(sqlite_url, handler, None, sleeps, **SETTINGS)
    report = pipeline.run_full_import(app, ["attributes", "products"])
    assert (report.status, report.exit_code) == ("success", 0)
    assert staged_data(app, "products") == pim_products(pim)
    assert status_counts(app, "products") == {"new": PRODUCTS}
    assert watermark(app, "products") is not None
    assert len(sleeps) == burst  # one wait per retry, and no real time spent
    if fault == "429 storm":
        assert sleeps == [20.0] * burst  # the PIM's Retry-After, honoured
    app.close()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_outlasting_the_retries_stops_and_keeps_what_was_committed(sqlite_url, pim, fault):
    stop_mid_pagination_then_catch_up(sqlite_url, pim, fault)


@pytest.mark.parametrize("fault", UNRETRIED)
def test_a_page_damaged_behind_its_envelope_stops_and_keeps_what_was_committed(
    sqlite_url, pim, fault
):
    stop_mid_pagination_then_catch_up(sqlite_url, pim, fault)


def test_a_stop_mid_pagination_keeps_the_committed_batches_on_both_backends(staging_url, pim):
    stop_mid_pagination_then_catch_up(staging_url, pim, "5xx burst")


def stop_mid_pagination_then_catch_up(staging_url: str, pim: FakePim, fault: str) -> None:
    first = build_app(staging_url, pim, **SETTINGS)
    pipeline.run_full_import(first)
    mark_all_synced(first)
    before = {feed: watermark(first, feed) for feed in ("categories", "products", "assets")}
    first.close()

    pim.clock.advance(600)
    for index in range(PRODUCTS):  # every page has changes waiting
        pim.update_product(index, values={"ean": [{"locale": None, "scope": None, "data": "v2"}]})
    arm = {**FAULTS, **UNRETRIED}[fault]
    log = PageLog(armed_at(pim, PRODUCTS_PATH, 3, lambda: arm(pim, ATTEMPTS)))
    app = build_app(staging_url, log, **SETTINGS)
    with pytest.raises(PimError) as stopped:
        pipeline.run_full_import(app)

    error = stopped.value
    assert error.exit_code == 4
    assert error.message.startswith("import:full stopped: ")
    assert "\n" not in error.message
    assert "products-uuid" in error.message
    if fault in FAULTS:
        assert len(log.pages) == 2  # the next page's link was on the page that failed
    else:  # the damaged page's link was whole: the reader may have read on, nothing more staged
        assert len(log.pages) >= 2
    read = {uuid for page in log.pages[:2] for uuid in page}
    now = pim_products(pim)
    staged = staged_data(app, "products")
    states = statuses(app, "products")
    # Both committed pages are kept, with the PIM's new data; the rest is untouched.
    assert {u for u in now if staged[u] == now[u]} == read
    assert {u for u, s in states.items() if s == "needs_update"} == read
    assert {s for u, s in states.items() if u not in read} == {"synced"}
    # A listing that did not complete proves nothing about deletions.
    for entity in ("products", "product_models", "categories", "attributes"):
        assert "deleted_in_pim" not in status_counts(app, entity), entity
    assert watermark(app, "products") == before["products"]
    assert watermark(app, "assets") == before["assets"]  # never started
    assert _later(watermark(app, "categories"), before["categories"])  # completed first
    assert last_run(app)["status"] == "failed"
    app.close()

    recovered = build_app(staging_url, pim, **SETTINGS)
    report = pipeline.run_incremental_import(recovered, ["products"])
    assert report.status == "success"
    assert staged_data(recovered, "products") == now
    assert status_counts(recovered, "products") == {"needs_update": PRODUCTS}
    assert _later(watermark(recovered, "products"), before["products"])
    recovered.close()


def _later(one: datetime | None, other: datetime | None) -> bool:
    return one is not None and other is not None and one > other


def effective_updated(pim: FakePim, uuid: str) -> datetime:
    """When a product last changed, its models included: what Akeneo's `updated` filter sees."""
    index = pim.catalog.index_of_uuid(uuid)
    assert index is not None
    meta = pim.catalog.product_meta(index)
    assert meta is not None
    return datetime.fromtimestamp(meta.updated, UTC)


def assert_nothing_unread_is_behind_the_watermark(app, pim: FakePim, overlap: int) -> None:
    """Every product whose staged copy is stale is one the next incremental will ask for."""
    since = since_for(watermark(app, "products"), overlap)
    assert since is not None
    staged = staged_data(app, "products")
    for uuid, record in pim_products(pim).items():
        if staged.get(uuid) != record:
            assert effective_updated(pim, uuid) > since, f"{uuid} changed before the watermark"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_edits_racing_the_cursor_are_all_caught_by_the_next_incremental(sqlite_url, pim, seed):
    """The PIM edits products (behind and ahead of the cursor), their models and creates new
    ones while the import pages; the watermark must never pass a change it did not read."""
    rng = random.Random(seed)
    racing = {"on": True}
    models = sorted({p["parent"] for p in pim_products(pim).values() if p["parent"]})
    roots = sorted({pim.model(code)["parent"] or code for code in models})  # they hold the name

    def edit_while_paging(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = pim(request)
        if racing["on"] and request.url.path == PRODUCTS_PATH:
            pim.clock.advance(rng.choice([0, 0, 1, 2]))
            for _ in range(rng.randint(1, 4)):
                ean = [{"locale": None, "scope": None, "data": f"e{rng.random()}"}]
                pim.update_product(rng.randrange(PRODUCTS), values={"ean": ean})
            if rng.random() < 0.3:
                name = [{"locale": "en_US", "scope": None, "data": f"m{rng.random()}"}]
                pim.update_model(rng.choice(roots), values={"name": name})
            if rng.random() < 0.3:
                sku = [{"locale": None, "scope": None, "data": f"NEW-{rng.randrange(10**6)}"}]
                pim.create_product(values={"sku": sku}, family="clothing")
        return response

    overlap = 5
    app = build_app(
        sqlite_url, edit_while_paging, PIMSYNC_SYNC__OVERLAP_SECONDS=str(overlap), **SETTINGS
    )
    pipeline.run_full_import(app, ["attributes", "products"])
    assert_nothing_unread_is_behind_the_watermark(app, pim, overlap)
    pim.clock.advance(30)
    pipeline.run_incremental_import(app, ["products"])
    assert_nothing_unread_is_behind_the_watermark(app, pim, overlap)
    racing["on"] = False
    pim.clock.advance(30)
    pipeline.run_incremental_import(app, ["products"])
    assert staged_data(app, "products") == pim_products(pim)
    staged_models = staged_data(app, "product_models")
    everything = [*models, *roots]
    assert {c: staged_models[c] for c in everything} == {c: pim.model(c) for c in everything}
    app.close()
