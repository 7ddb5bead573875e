"""The import stage end to end: the Akeneo client against the mock PIM, into real staging."""

from __future__ import annotations

from datetime import timedelta

import httpx
import orjson
import pytest

from pimsync import pipeline
from pimsync.errors import PimError
from pimsync.staging.repository import StagingRepository
from pimsync.testing.fake_pim import FakePim
from tests.conftest import make_config
from tests.helpers import count, mark_all_synced, pim_app, staged_record, statuses

PRODUCTS = 240


@pytest.fixture
def pim() -> FakePim:
    return FakePim(products=PRODUCTS)


@pytest.fixture
def app(config, pim):
    app = pim_app(config, pim)
    yield app
    app.close()


def product_uuids(pim: FakePim) -> set[str]:
    return {pim.catalog.uuid(i) for i in range(PRODUCTS)}


def test_full_import_stores_every_item_exactly(app, pim):
    report = pipeline.run_full_import(app)
    assert report.status == "success"
    assert report.exit_code == 0
    products = report.feeds["products"]
    assert count(app, "products") == PRODUCTS
    assert set(statuses(app, "products")) == product_uuids(pim)
    assert set(statuses(app, "products").values()) == {"new"}
    assert count(app, "product_models") == len(pim.served_models) > 0
    assert products.fetched == products.new == count(app, "products") + count(app, "product_models")
    # Content: the staged record is the PIM's record, byte for byte after parsing.
    for index in (0, 1, PRODUCTS // 2, PRODUCTS - 1):
        uuid = pim.catalog.uuid(index)
        staged = staged_record(app, "products", uuid)
        staged.pop("_links")  # list items link to themselves; the single GET does not
        assert staged == pim.product(index)
    for feed in ("attributes", "categories", "assets"):
        assert report.feeds[feed].fetched > 0
    assert count(app, "attribute_options") > 0
    assert count(app, "family_variants") > 0
    # The SKU is found through the identifier attribute on /products-uuid.
    with app.repository() as repo:
        row = repo.get("products", pim.catalog.uuid(7))
    assert row["identifier"] == pim.product(7)["values"]["sku"][0]["data"]


def test_second_full_import_marks_nothing(app):
    pipeline.run_full_import(app)
    mark_all_synced(app)
    before = {e: statuses(app, e) for e in ("products", "product_models", "attributes")}
    report = pipeline.run_full_import(app)
    for feed in report.feeds.values():
        assert (feed.new, feed.changed, feed.deleted_in_pim) == (0, 0, 0), feed
        assert feed.unchanged == feed.fetched
    after = {e: statuses(app, e) for e in ("products", "product_models", "attributes")}
    assert after == before
    assert set(after["products"].values()) == {"synced"}


def test_incremental_requests_and_marks_only_what_changed(app, pim):
    pipeline.run_full_import(app)
    mark_all_synced(app)
    pim.clock.advance(600)
    changed = {
        pim.update_product(i, values={"ean": [{"locale": None, "scope": None, "data": f"X{i}"}]})
        for i in range(0, 200, 20)
    }
    pim.reset_stats()
    report = pipeline.run_incremental_import(app, ["products"])
    assert pim.served_uuids() == changed
    products = report.feeds["products"]
    assert products.mode == "incremental"
    assert products.changed == 10 and products.new == 0
    marked = {code for code, status in statuses(app, "products").items() if status != "synced"}
    assert marked == changed
    assert {statuses(app, "products")[u] for u in changed} == {"needs_update"}


def test_a_changed_variant_marks_its_configurable_parent(app, pim):
    pipeline.run_full_import(app)
    mark_all_synced(app)
    variant = next(i for i in range(PRODUCTS) if pim.product(i).get("parent"))
    parent = pim.product(variant)["parent"]
    pim.clock.advance(600)
    pim.update_product(variant, values={"ean": [{"locale": None, "scope": None, "data": "NEW"}]})
    report = pipeline.run_incremental_import(app, ["products"])
    models = statuses(app, "product_models")
    assert models[parent] == "needs_update"
    root = pim.model(parent).get("parent")
    if root:
        assert models[root] == "needs_update"
    assert report.feeds["products"].dependents_marked == (2 if root else 1)
    assert sum(status == "needs_update" for status in models.values()) == (2 if root else 1)


def test_items_sharing_one_second_across_page_boundaries_are_all_read(staging_url, pim):
    app = pim_app(make_config(staging_url, PIMSYNC_PIM__PAGE_SIZE="10"), pim)
    pipeline.run_full_import(app, ["attributes", "products"])
    pim.clock.advance(600)
    pim.clock.freeze()
    ean = {"ean": [{"locale": None, "scope": None, "data": "same-second"}]}
    changed = {pim.update_product(i, values=ean) for i in range(3, 3 + 35)}
    pim.reset_stats()
    report = pipeline.run_incremental_import(app, ["products"])
    assert report.feeds["products"].changed == 35
    assert pim.served_uuids() == changed
    app.close()


def test_an_item_changed_behind_the_cursor_is_caught_by_the_next_incremental(staging_url, pim):
    """The watermark is the PIM clock at the feed's start, not the newest `updated` seen."""
    state = {"pages": 0, "changed": None}

    def handler(request: httpx.Request) -> httpx.Response:
        response = pim(request)
        if request.url.path.endswith("/products-uuid"):
            state["pages"] += 1
            if state["pages"] == 2:  # product 0 was on page 1: now it sits behind the cursor
                pim.clock.advance(5)
                state["changed"] = pim.update_product(0, enabled=False)
        return response

    app = pim_app(make_config(staging_url, PIMSYNC_SYNC__OVERLAP_SECONDS="0"), handler)
    pipeline.run_full_import(app, ["attributes", "products"])
    assert staged_record(app, "products", state["changed"])["enabled"] is True
    pim.reset_stats()
    pipeline.run_incremental_import(app, ["products"])
    assert state["changed"] in pim.served_uuids()
    assert staged_record(app, "products", state["changed"])["enabled"] is False
    app.close()


def test_an_outage_mid_import_leaves_the_watermark_where_it_was(app, pim):
    pipeline.run_full_import(app)
    with app.repository() as repo:
        watermark = repo.last_watermark("products")
    pim.clock.advance(600)
    changed = [pim.update_product(i, enabled=False) for i in range(150)]
    pim.outage(after_requests=3, status=503)
    with pytest.raises(PimError, match="503"):
        pipeline.run_incremental_import(app, ["products"])
    with app.repository() as repo:
        assert repo.last_watermark("products") == watermark
        runs = repo.connection.exec_driver_sql(
            "SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1"
        ).scalar()
    assert runs == "failed"
    pim.end_outage()
    report = pipeline.run_incremental_import(app, ["products"])
    assert report.status == "success"
    assert all(staged_record(app, "products", u)["enabled"] is False for u in changed)
    with app.repository() as repo:
        assert repo.last_watermark("products") > watermark


def test_429_and_5xx_are_retried(app, pim):
    pim.fail_next(2, status=429, retry_after=3, path_prefix="/api/rest/v1/products-uuid")
    pim.fail_next(2, status=503, path_prefix="/api/rest/v1/categories")
    report = pipeline.run_full_import(app)
    assert report.status == "success"
    assert count(app, "products") == PRODUCTS


def test_a_bad_record_is_quarantined_and_the_run_goes_on(staging_url, pim):
    bad_uuid = pim.catalog.uuid(5)

    def handler(request: httpx.Request) -> httpx.Response:
        response = pim(request)
        if request.url.path.endswith("/products-uuid"):
            body = orjson.loads(response.content)
            for item in body["_embedded"]["items"]:
                if item["uuid"] == bad_uuid:
                    item["values"]["name"] = "not a list of values"
                    item["categories"] = 7
            return httpx.Response(200, json=body, headers=response.headers)
        return response

    app = pim_app(make_config(staging_url), handler)
    report = pipeline.run_full_import(app)
    assert report.status == "success"
    assert report.exit_code == 1
    assert report.feeds["products"].quarantined == 1
    assert count(app, "products") == PRODUCTS
    with app.repository() as repo:
        row = repo.get("products", bad_uuid)
        log = repo.log(report.run_id)
    assert row["status"] == "quarantined"
    assert "values.name" in row["last_error"]
    assert [e["action"] for e in log if e["code"] == bad_uuid] == ["quarantined"]
    app.close()


def test_deleted_products_are_flagged_by_a_full_import_only(app, pim):
    pipeline.run_full_import(app)
    gone = pim.catalog.uuid(3)
    pim.delete_product(3)
    pipeline.run_incremental_import(app, ["products"])
    assert statuses(app, "products")[gone] == "new"
    report = pipeline.run_full_import(app, ["products"])
    assert report.feeds["products"].deleted_in_pim == 1
    assert statuses(app, "products")[gone] == "deleted_in_pim"


def test_incremental_without_watermark_reads_in_full(app):
    report = pipeline.run_incremental_import(app, ["categories"])
    assert report.feeds["categories"].mode == "full"
    assert "read in full" in report.feeds["categories"].note


def test_watermark_is_the_pim_clock_minus_nothing(app, pim):
    pim.clock.freeze()
    pipeline.run_full_import(app, ["categories"])
    with app.repository() as repo:
        watermark = repo.last_watermark("categories")
    assert watermark == pim.clock.now().replace(microsecond=0)
    assert isinstance(repo, StagingRepository)
    assert timedelta(0) <= pim.clock.now() - watermark < timedelta(seconds=1)


def test_incremental_assets_read_only_the_unknown_media_of_changed_products(app, pim):
    from sqlalchemy import delete

    from pimsync.staging.tables import entity_tables

    pipeline.run_full_import(app)
    index = next(i for i in range(PRODUCTS) if pim.product(i)["values"].get("picture"))
    code = pim.product(index)["values"]["picture"][0]["data"]
    assets = entity_tables["assets"]
    with app.repository() as repo:  # as if the file had never been imported
        repo.connection.execute(delete(assets).where(assets.c.code == code))
        repo.commit()
    pim.clock.advance(600)
    pim.update_product(index, values={"ean": [{"locale": None, "scope": None, "data": "1"}]})
    pim.reset_stats()
    report = pipeline.run_incremental_import(app, ["products", "assets"])
    assert (report.feeds["assets"].fetched, report.feeds["assets"].new) == (1, 1)
    assert staged_record(app, "assets", code)["code"] == code


def test_a_large_listing_prepared_by_processes_stages_what_one_process_stages(
    staging_url, tmp_path, monkeypatch
):
    # Past POOL_AFTER_PAGES pages, products are validated and hashed in other processes: what
    # lands in staging must not depend on where a page was prepared.
    from pimsync.pipeline import preparers

    monkeypatch.setattr(preparers, "POOL_AFTER_PAGES", 2)
    pooled: list[int] = []  # pages each run had prepared by the pool, noted when it closes
    close = preparers.PagePreparer.close

    def noting_close(self: preparers.PagePreparer) -> None:
        pooled.append(self.pooled_pages)
        close(self)

    monkeypatch.setattr(preparers.PagePreparer, "close", noting_close)
    pim = FakePim(products=1500)  # 15 pages of products
    bad_uuid = pim.catalog.uuid(1234)  # on a page the pool prepares

    def handler(request: httpx.Request) -> httpx.Response:
        response = pim(request)
        if not request.url.path.endswith("/products-uuid"):
            return response
        body = orjson.loads(response.content)
        for item in body["_embedded"]["items"]:
            if item["uuid"] == bad_uuid:
                item["values"]["name"] = "not a list of values"
        return httpx.Response(200, json=body, headers=response.headers)

    rows = {}
    for processes, url in ((0, f"sqlite:///{tmp_path / 'one.db'}"), (2, staging_url)):
        config = make_config(url, PIMSYNC_STAGING__PREPARE_PROCESSES=str(processes))
        app = pim_app(config, handler)
        try:
            report = pipeline.run_full_import(app, feeds=["attributes", "products"])
            assert report.feeds["products"].quarantined == 1
            rows[processes] = {
                entity: staged_rows(app, entity) for entity in ("products", "product_models")
            }
        finally:
            app.close()
    assert pooled[0] == 0 and pooled[1] >= 13  # products: 15 pages, the first 2 prepared here
    assert rows[2] == rows[0]
    assert len(rows[2]["products"]) == 1500
    assert rows[2]["products"][bad_uuid][6] == "quarantined"


def staged_rows(app, entity: str) -> dict[str, tuple]:
    from sqlalchemy import select

    from pimsync.staging.tables import entity_tables

    table = entity_tables[entity]
    columns = ("code", "hash", "data", "identifier", "parent_code", "label", "status", "last_error")
    with app.repository() as repo:
        result = repo.connection.execute(select(*(table.c[c] for c in columns)))
        return {row.code: tuple(row) for row in result}
