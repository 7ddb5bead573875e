"""The push stage end to end: import from the mock PIM, create into the mock Magento."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from pimsync import pipeline
from pimsync.app import App
from pimsync.errors import MagentoError
from pimsync.pipeline.report import PushReport
from pimsync.staging.tables import entity_tables
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.conftest import make_config
from tests.helpers import statuses

PRODUCTS = 120
MAGENTO_ENV = {
    "PIMSYNC_MAGENTO__BASE_URL": "http://magento.test",
    "PIMSYNC_MAGENTO__TOKEN": "magento-token",
}
WRITES = ("POST", "PUT", "DELETE")


@pytest.fixture
def pim() -> FakePim:
    return FakePim(products=PRODUCTS)


@pytest.fixture
def magento():
    with FakeMagento() as fake:
        yield fake


def make_app(staging_url: str, pim: FakePim, magento: FakeMagento, **env: str) -> App:
    config = make_config(staging_url, **MAGENTO_ENV, **env)
    return App(
        config,
        pim_transport=httpx.MockTransport(pim),
        magento_transport=httpx.MockTransport(magento),
        sleep=lambda _s: None,
    )


@pytest.fixture
def app(staging_url, pim, magento):
    app = make_app(staging_url, pim, magento)
    yield app
    app.close()


def create(app: App, **options) -> PushReport:
    options.setdefault("feeds", pipeline.order_push_feeds(()))
    return pipeline.run_push(app, "create", pipeline.PushOptions(**options))


def writes(magento: FakeMagento) -> list[tuple[str, str, str | None]]:
    return [r for r in magento.requests if r[0] in WRITES]


def label(values: dict, code: str, locale: str | None) -> str:
    return next(e["data"] for e in values[code] if e["locale"] == locale)


def test_magento_holds_the_pim_catalog_after_mapping(app, pim, magento):
    pipeline.run_full_import(app)
    report = create(app)
    assert report.exit_code == 0, report.errors
    assert report.failed == 0
    options = {code: magento.attribute_options(f"pim_{code}") for code in ("color", "size")}
    for index in range(PRODUCTS):
        product = pim.product(index)
        sku = product["values"]["sku"][0]["data"]
        stored = magento.product(sku)
        assert stored is not None, sku
        values = product["values"]
        custom = {a["attribute_code"]: a["value"] for a in stored["custom_attributes"]}
        if "name" in values and not product.get("parent"):
            assert stored["name"] == label(values, "name", "en_US")
            french = magento.product(sku, store="fr")
            assert french["name"] == label(values, "name", "fr_FR")
        eur = next(a for a in values["price"][0]["data"] if a["currency"] == "EUR")
        assert float(stored["price"]) == float(eur["amount"])
        assert stored["status"] == (1 if product["enabled"] else 2)
        assert stored["visibility"] == (1 if product.get("parent") else 4)
        if "color" in values:
            color = values["color"][0]["data"]
            assert custom["pim_color"] == str(options["color"][color])
        links = stored["extension_attributes"]["category_links"]
        assert len(links) == len(product["categories"])
        pictures = [e for e in values.get("picture", []) if e.get("data")]
        assert len(magento.media(sku)) == len(pictures)
    # Configurables: every root model is one, with its variants as children.
    with app.repository() as repo:
        models = dict(repo.records("product_models"))
    roots = [code for code, model in models.items() if not model.get("parent")]
    assert roots
    for root in roots:
        assert magento.product(root)["type_id"] == "configurable"
    variants = [pim.product(i) for i in range(PRODUCTS) if pim.product(i).get("parent")]
    for variant in variants:
        parent = variant["parent"]
        root = models[parent].get("parent") or parent
        assert variant["values"]["sku"][0]["data"] in magento.configurable_children(root)
    # Categories: the tree under the root, with French names per store view.
    assert len(magento.categories) >= 31
    assert set(statuses(app, "products").values()) == {"synced"}


def test_a_second_create_sends_no_request(app, magento):
    pipeline.run_full_import(app)
    create(app)
    magento.reset_stats()
    report = create(app)
    assert report.exit_code == 0
    assert magento.request_count() == 0


def test_one_changed_product_sends_only_its_requests(app, pim, magento):
    pipeline.run_full_import(app)
    create(app)
    index = next(i for i in range(PRODUCTS) if not pim.product(i).get("parent"))
    sku = pim.product(index)["values"]["sku"][0]["data"]
    pim.clock.advance(600)
    pim.update_product(index, values={"ean": [{"locale": None, "scope": None, "data": "999"}]})
    pipeline.run_incremental_import(app)
    magento.reset_stats()
    report = create(app)
    assert report.feeds["products"].updated == 1
    assert [(m, p) for m, p, _ in writes(magento)] == [("PUT", f"/V1/products/{sku}")]
    assert magento.product(sku) is not None
    custom = {a["attribute_code"]: a["value"] for a in magento.product(sku)["custom_attributes"]}
    assert custom["pim_ean"] == "999"


def test_a_store_view_write_carries_only_what_changed(app, pim, magento):
    pipeline.run_full_import(app)
    create(app)
    index = next(i for i in range(PRODUCTS) if not pim.product(i).get("parent"))
    product = pim.product(index)
    sku = product["values"]["sku"][0]["data"]
    names = [
        {**e, "data": e["data"] + " !"} if e["locale"] == "fr_FR" else e
        for e in product["values"]["name"]
    ]
    pim.clock.advance(600)
    pim.update_product(index, values={"name": names})
    pipeline.run_incremental_import(app)
    magento.reset_stats()
    create(app)
    assert [(m, store) for m, _, store in writes(magento)] == [("PUT", "all"), ("PUT", "fr")]
    assert set(magento.product_overrides(sku)) == {"fr", "de"}
    assert magento.product(sku, store="fr")["name"].endswith(" !")


def test_a_skipped_item_is_never_sent(app, pim, magento):
    pipeline.run_full_import(app)
    index = next(i for i in range(PRODUCTS) if not pim.product(i).get("parent"))
    uuid = pim.catalog.uuid(index)
    sku = pim.product(index)["values"]["sku"][0]["data"]
    products = entity_tables["products"]
    with app.repository() as repo:
        repo.connection.execute(
            update(products).where(products.c.code == uuid).values(skipped=True)
        )
        repo.commit()
    create(app)
    assert magento.product(sku) is None
    assert sku not in magento.writes_by_sku
    assert statuses(app, "products")[uuid] == "new"


def test_a_rejected_product_is_an_item_error_and_the_rest_goes_on(app, pim, magento):
    pipeline.run_full_import(app)
    index = next(i for i in range(PRODUCTS) if not pim.product(i).get("parent"))
    uuid = pim.catalog.uuid(index)
    sku = pim.product(index)["values"]["sku"][0]["data"]
    magento.reject_sku(sku, status=400, message="The product was unable to be saved.")
    report = create(app)
    assert report.exit_code == 1
    assert report.failed == 1
    assert report.errors == [
        {"feed": "products", "code": uuid, "message": "The product was unable to be saved."}
    ]
    states = statuses(app, "products")
    assert states[uuid] == "error"
    assert {s for code, s in states.items() if code != uuid} == {"synced"}
    with app.repository() as repo:
        assert repo.get("products", uuid)["last_error"] == "The product was unable to be saved."


def test_401_stops_the_run_with_exit_4_and_marks_nothing(app, magento):
    pipeline.run_full_import(app)
    magento.revoke_token()
    with pytest.raises(MagentoError) as caught:
        create(app)
    assert caught.value.exit_code == 4
    assert "check [magento] token" in caught.value.message
    for entity in ("attributes", "categories", "products"):
        assert "synced" not in set(statuses(app, entity).values())


def test_auto_create_new_off_waits_unless_named(staging_url, pim, magento):
    app = make_app(staging_url, pim, magento, PIMSYNC_SYNC__AUTO_CREATE_NEW="false")
    pipeline.run_full_import(app)
    report = create(app)
    assert report.feeds["products"].waiting_new > 0
    assert magento.product_count() == 0
    sku = pim.product(0)["values"]["sku"][0]["data"]
    create(app, feeds=["attributes", "categories"], skus=None)
    app2 = make_app(staging_url, pim, magento)  # structure goes in with auto-create on
    create(app2, feeds=["attributes", "categories"])
    named = create(app, feeds=["products", "variants"], skus=[sku])
    assert named.failed == 0
    assert magento.product(sku) is not None
    assert magento.product_count() <= 2  # the product, and its configurable parent if any
    app.close()
    app2.close()


def test_dry_run_prints_and_changes_nothing(app, magento):
    pipeline.run_full_import(app)
    seen: list[dict] = []
    report = create(app, dry_run=True, dry_run_sink=seen.append)
    assert report.dry_run
    assert len(writes(magento)) == 0
    assert {r["feed"] for r in seen} >= {"attributes", "categories", "products"}
    assert set(statuses(app, "products").values()) == {"new"}


def test_bulk_and_sync_modes_reach_the_same_magento_state(tmp_path, pim):
    def state(mode: str) -> dict:
        with FakeMagento() as magento:
            # One worker: Magento numbers options and categories in creation order.
            app = make_app(
                f"sqlite:///{tmp_path / mode}.db",
                pim,
                magento,
                PIMSYNC_MAGENTO__MODE=mode,
                PIMSYNC_MAGENTO__CONCURRENCY="1",
            )
            pipeline.run_full_import(app)
            assert create(app).failed == 0
            app.close()
            products = {}
            for sku in magento.products:
                product = magento.product(sku)
                product.pop("id", None)
                product.pop("created_at", None)
                product.pop("updated_at", None)
                overrides = magento.product_overrides(sku)
                products[sku] = (product, overrides, len(magento.media(sku)))
            children = {sku: sorted(magento.configurable_children(sku)) for sku in magento.products}
            return {"products": products, "children": children}

    assert state("bulk") == state("sync")


def test_resync_pushes_every_item_of_the_feed(app, magento):
    pipeline.run_full_import(app)
    create(app)
    magento.reset_stats()
    report = pipeline.run_push(
        app, "resync", pipeline.PushOptions(feeds=["categories"], force=True)
    )
    assert report.feeds["categories"].updated == 31
    assert all(p.startswith("/V1/categories") for _, p, _ in writes(magento))


def test_mapping_change_marks_only_the_items_it_changes(staging_url, pim, magento):
    app = make_app(staging_url, pim, magento)
    pipeline.run_full_import(app)
    create(app)
    app.close()
    # A new category root changes the payload of the PIM's root categories, and only theirs.
    new_root = magento.add_category("PIM catalog", parent_id=2)
    changed = make_app(staging_url, pim, magento, PIMSYNC_MAPPING__CATEGORY_ROOT_ID=str(new_root))
    magento.reset_stats()
    report = create(changed, feeds=["categories"])
    with changed.repository() as repo:
        roots = [c for c, d in repo.records("categories") if d.get("parent") is None]
    assert report.marked_by_mapping == len(roots)
    assert report.feeds["categories"].updated == len(roots)
    assert report.failed == 0
    for root in roots:
        with changed.repository() as repo:
            category_id = int(repo.get("categories", root)["magento_id"])
        assert magento.category(category_id, "all")["parent_id"] == new_root
    changed.close()


def test_a_2xx_without_what_the_api_promises_is_the_items_error(app, magento, monkeypatch):
    """A body without the id Magento promises must not mark the item synced."""
    from pimsync.pipeline import push_items

    pipeline.run_full_import(app, ["attributes", "categories"])
    original = push_items.SENDERS["categories"]

    def no_id(client, row, payloads, context):
        if row["code"] == "master":
            raise KeyError("id")
        return original(client, row, payloads, context)

    monkeypatch.setitem(push_items.SENDERS, "categories", no_id)
    report = create(app, feeds=["attributes", "categories"])
    assert report.exit_code == 1
    assert report.errors[0]["code"] == "master"
    assert report.errors[0]["message"] == "unexpected answer: KeyError: 'id'"
    assert statuses(app, "categories")["master"] == "error"
