"""What the reliability tests share: apps wired to the fakes, and views of staging and Magento.

Every app gets a sleep that records instead of waiting, so a retry storm costs no time and a
test can check the waits that were asked for (a 429's Retry-After, for instance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from pimsync import pipeline
from pimsync.app import App
from pimsync.pipeline.report import PushReport
from pimsync.staging.tables import entity_tables, sync_runs
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.conftest import make_config

Handler = Callable[[httpx.Request], httpx.Response]
MAGENTO_ENV = {
    "PIMSYNC_MAGENTO__BASE_URL": "http://magento.test",
    "PIMSYNC_MAGENTO__TOKEN": "magento-token",
}
PRODUCTS_PATH = "/api/rest/v1/products-uuid"
PUSH_PRODUCTS = 20  # enough for configurables with variants, images and every feed

# Every app `build_app` made; the suite's conftest closes them after each test, so a test that
# fails before its own `app.close()` does not leave a PostgreSQL connection to be collected
# (and warned about) in whichever test runs next.
built_apps: list[App] = []


def build_app(
    staging_url: str,
    pim: Handler,
    magento: Handler | None = None,
    sleeps: list[float] | Callable[[float], None] | None = None,
    /,
    **env: str,
) -> App:
    """An App on the fakes, in-process; `sleeps` receives every wait a retry asks for (a list
    records them; a function is called instead of waiting)."""
    config = make_config(staging_url, **(MAGENTO_ENV if magento is not None else {}), **env)
    if isinstance(sleeps, list):
        sleep: Callable[[float], None] = sleeps.append
    else:
        sleep = sleeps or (lambda _seconds: None)
    app = App(
        config,
        pim_transport=httpx.MockTransport(pim),
        magento_transport=httpx.MockTransport(magento) if magento is not None else None,
        sleep=sleep,
    )
    built_apps.append(app)
    return app


def armed_at(handler: Handler, path: str, request_number: int, arm: Callable[[], None]) -> Handler:
    """`handler`, with `arm()` called just before the `request_number`-th request to `path`
    (1-based) is handled: a fault that strikes in the middle of a pagination."""
    seen = 0

    def wrapped(request: httpx.Request) -> httpx.Response:
        nonlocal seen
        if request.url.path == path:
            seen += 1
            if seen == request_number:
                arm()
        return handler(request)

    return wrapped


# -- staging ------------------------------------------------------------------------------


def rows(app: App, entity: str) -> dict[str, dict[str, Any]]:
    """Every staged row of `entity` by code."""
    table = entity_tables[entity]
    with app.repository() as repo:
        return {row.code: dict(row._mapping) for row in repo.connection.execute(select(table))}


def statuses(app: App, entity: str) -> dict[str, str]:
    return {code: row["status"] for code, row in rows(app, entity).items()}


def status_counts(app: App, entity: str) -> Counter[str]:
    return Counter(statuses(app, entity).values())


def staged_data(app: App, entity: str) -> dict[str, dict[str, Any]]:
    """The staged PIM records by code, without their self links (a listing adds them)."""
    data = {}
    for code, row in rows(app, entity).items():
        record = orjson.loads(row["data"])
        if isinstance(record, dict):
            record.pop("_links", None)
        data[code] = record
    return data


def watermark(app: App, feed: str) -> datetime | None:
    with app.repository() as repo:
        return repo.last_watermark(feed)


def last_run(app: App) -> dict[str, Any]:
    with app.repository() as repo:
        query = select(sync_runs).order_by(sync_runs.c.id.desc()).limit(1)
        return dict(repo.connection.execute(query).one()._mapping)


def pim_products(pim: FakePim) -> dict[str, dict[str, Any]]:
    """What the PIM holds now, by uuid, as `GET /products-uuid/{uuid}` answers."""
    products = {}
    for index in range(pim.catalog.next_index):
        if pim.catalog.product_record(index) is not None:  # None: deleted
            products[pim.catalog.uuid_of(index)] = pim.product(index)
    return products


# -- Magento ------------------------------------------------------------------------------


def create(app: App, **options: Any) -> PushReport:
    options.setdefault("feeds", pipeline.order_push_feeds(()))
    return pipeline.run_push(app, "create", pipeline.PushOptions(**options))


def assert_synced_only_what_magento_holds(app: App, fm: FakeMagento) -> None:
    """Every row staging calls synced is in Magento with the payload staging recorded."""
    for entity in ("product_models", "products"):
        for row in rows(app, entity).values():
            if row["status"] != "synced" or row["pushed_payload"] is None:
                continue
            sent = orjson.loads(row["pushed_payload"])["all"]
            held = fm.product(sent["sku"])
            assert held is not None, f"{sent['sku']} is synced but not in Magento"
            assert (held["name"], held["status"]) == (sent["name"], sent["status"])
    categories = fm.categories
    for code, row in rows(app, "categories").items():
        if row["status"] == "synced":
            held = categories.get(int(row["magento_id"]))
            assert held is not None, f"category {code} is synced but not in Magento"
            assert held["name"] == orjson.loads(row["pushed_payload"])["all"]["name"]
    for code, row in rows(app, "attribute_options").items():
        if row["status"] == "synced" and row["magento_id"] is not None:
            options = fm.attribute_options(f"pim_{row['parent_code']}")
            assert int(row["magento_id"]) in options.values(), f"option {code} is not in Magento"


def assert_everything_synced(app: App) -> None:
    for entity in ("attributes", "attribute_options", "categories", "product_models", "products"):
        assert set(status_counts(app, entity)) == {"synced"}, entity  # nothing left behind


_VOLATILE = frozenset({"created_at", "updated_at"})


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def magento_state(fm: FakeMagento) -> dict[str, Any]:
    """Everything the push writes, without timestamps: equal states mean equal catalogs."""
    products = {
        sku: {
            "global": _stable(view),
            "stores": fm.product_overrides(sku),
            "media": [_stable(entry) for entry in fm.media(sku)],
        }
        for sku, view in fm.products.items()
    }
    attributes = {
        code: {"view": _stable(view), "options": fm.attribute_options(code)}
        for code, view in fm.attributes.items()
    }
    return {
        "products": products,
        "categories": {cid: _stable(view) for cid, view in fm.categories.items()},
        "attributes": attributes,
        "sets": {sid: _stable(view) for sid, view in fm.attribute_sets.items()},
    }


def assert_each_product_created_once(fm: FakeMagento) -> None:
    """Magento numbers products as it creates them: ids 1..N without a gap mean that no product
    was created twice (nor created, lost and created again)."""
    ids = sorted(int(view["id"]) for view in fm.products.values())
    assert ids == list(range(1, len(ids) + 1))
    saves_that_created = fm.request_count("POST", "/V1/products")  # pimsync saves by PUT only
    assert saves_that_created == 0


def duplicates(fm: FakeMagento) -> dict[str, list[Any]]:
    """What a repeated non-idempotent create leaves behind: two categories with the same name
    under one parent, two options with one label, two gallery entries for one image."""
    categories = Counter((c["parent_id"], c["name"]) for c in fm.categories.values())
    options = Counter(
        (code, str(option["label"]).strip().lower())
        for code, view in fm.attributes.items()
        for option in view.get("options") or ()
    )
    media = Counter((sku, entry.get("label")) for sku in fm.products for entry in fm.media(sku))
    sets = Counter(
        (s["entity_type_id"], s["attribute_set_name"]) for s in fm.attribute_sets.values()
    )
    found = {
        "categories": [key for key, n in categories.items() if n > 1],
        "options": [key for key, n in options.items() if n > 1],
        "media": [key for key, n in media.items() if n > 1],
        "attribute sets": [key for key, n in sets.items() if n > 1],
    }
    return {kind: keys for kind, keys in found.items() if keys}
