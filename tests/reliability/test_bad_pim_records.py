"""Bad PIM records in a real import: each is quarantined with its reason, or handled where it
can be judged, and the rest of the run is unharmed.

A record that cannot be read as the PIM's API promises (wrong types, no identifier, null where
an object belongs, text that is not UTF-8, megabytes where a value belongs) is quarantined at
import: the other items of its page are staged, the run exits 1, the counts say how many. What
is only wrong relative to the rest of the catalog is judged at push time, where that is known:
a product naming an option that does not exist is that product's error ("waiting: option ...").
An attribute of a type pimsync does not map is staged and ignored: Akeneo has real types
(reference data, tables, asset collections) that a shop syncing only the others must not see
as a failure on every run.

Related, and not repeated: one product with wrong types (tests/integration/test_import.py::
test_a_bad_record_is_quarantined_and_the_run_goes_on) and record validation in the client
(tests/unit/test_pim_client.py::test_invalid_records_are_rejected_alone).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from pimsync import pipeline
from pimsync.testing.fake_pim import FakePim
from tests.reliability.support import (
    PRODUCTS_PATH,
    Handler,
    assert_synced_only_what_magento_holds,
    build_app,
    create,
    rows,
    staged_data,
    status_counts,
)

PRODUCTS = 20
Edit = Callable[[dict[str, Any]], None]
MARKER = "CORRUPT-ME"  # a text value the byte-level corruptions look for


def _drop(key: str) -> Edit:
    return lambda item: item.pop(key)


def _set(key: str, value: Any) -> Edit:
    return lambda item: item.__setitem__(key, value)


def _set_value(attribute: str, data: Any) -> Edit:
    def edit(item: dict[str, Any]) -> None:
        item["values"][attribute] = [{"locale": None, "scope": None, "data": data}]

    return edit


# name: (the edit, the record's code once quarantined (None: its uuid), expected reason)
QUARANTINED: dict[str, tuple[Edit, str | None, str]] = {
    "categories is a number": (_set("categories", 7), None, "categories: Input should be"),
    "values is a string": (_set("values", "none"), None, "values: Input should be"),
    "null where the values object belongs": (_set("values", None), None, "values: Input"),
    "null where a value entry belongs": (
        lambda item: item["values"].__setitem__("name", [None]),
        None,
        "values.name.0: Input should be",
    ),
    "no uuid and no identifier": (_drop("uuid"), "invalid:", "neither uuid nor identifier"),
    "a 5 MB text value": (
        _set_value("description", "x" * 5_000_000),
        None,
        "record of 5.0 MB, larger than the 4 MB pimsync stages",
    ),
    "bytes that are not UTF-8": (
        _set_value("ean", MARKER),
        None,
        "values.ean[0].data: text that is not valid UTF-8",
    ),
    "a lone surrogate escape": (
        _set_value("ean", MARKER),
        None,
        "values.ean[0].data: text that is not valid UTF-8",
    ),
}
RAW_BYTES = {
    "bytes that are not UTF-8": b"caf\xe9 \xff\xfe",
    "a lone surrogate escape": b"\\ud800",
}


def corrupting(pim: FakePim, uuid: str, edit: Edit, raw: bytes | None) -> Handler:
    """The PIM, with one product of its listing edited (and `MARKER` replaced by raw bytes)."""

    def handler(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = pim(request)
        if request.url.path != PRODUCTS_PATH or response.status_code != 200:
            return response
        body = orjson.loads(response.content)
        for item in body["_embedded"]["items"]:
            if item["uuid"] == uuid:
                edit(item)
        content = orjson.dumps(body)
        if raw is not None:
            content = content.replace(MARKER.encode(), raw)
        return httpx.Response(200, content=content, headers=response.headers)

    return handler


@pytest.fixture
def pim() -> FakePim:
    return FakePim(products=PRODUCTS)


@pytest.mark.parametrize("bad", QUARANTINED)
def test_a_bad_record_is_quarantined_with_its_reason_and_the_rest_is_staged(sqlite_url, pim, bad):
    edit, code, reason = QUARANTINED[bad]
    victim = pim.catalog.uuid(3)
    handler = corrupting(pim, victim, edit, RAW_BYTES.get(bad))
    app = build_app(sqlite_url, handler)
    report = pipeline.run_full_import(app, ["attributes", "products"])
    assert (report.status, report.exit_code) == ("success", 1)
    products = report.feeds["products"]
    assert products.quarantined == 1
    models = len(rows(app, "product_models"))
    assert products.fetched == PRODUCTS + models
    assert products.new == PRODUCTS - 1 + models
    staged = rows(app, "products")
    quarantined = {c: r for c, r in staged.items() if r["status"] == "quarantined"}
    assert len(quarantined) == 1
    (found, row), *_ = quarantined.items()
    assert found.startswith(code) if code else found == victim
    assert reason in row["last_error"]
    with app.repository() as repo:
        log = repo.log(report.run_id)
    assert [(e["code"], e["action"]) for e in log if e["action"] == "quarantined"] == [
        (found, "quarantined")
    ]
    # The other products are staged exactly as the PIM has them.
    data = staged_data(app, "products")
    for index in range(PRODUCTS):
        uuid = pim.catalog.uuid(index)
        if uuid != victim:
            assert data[uuid] == pim.product(index)
    # And a push never takes it.
    with app.repository() as repo:
        pending = {row["code"] for row in repo.pending_for_push("products", limit=1000)}
    assert pending == set(data) - {found}
    app.close()


def test_the_fixed_record_leaves_quarantine_on_the_next_import(sqlite_url, pim):
    victim = pim.catalog.uuid(3)
    bad = build_app(sqlite_url, corrupting(pim, victim, _set("values", None), None))
    pipeline.run_full_import(bad, ["attributes", "products"])
    bad.close()
    good = build_app(sqlite_url, pim)
    report = pipeline.run_full_import(good, ["attributes", "products"])
    assert report.exit_code == 0
    assert rows(good, "products")[victim]["status"] == "new"
    assert staged_data(good, "products")[victim] == pim.product(3)
    good.close()


def test_a_bad_structure_record_is_quarantined_too(sqlite_url, pim):
    """Attributes, options and categories go through the same door as products."""

    def handler(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = pim(request)
        path = request.url.path
        edits: dict[str, tuple[str, Edit]] = {
            "/api/rest/v1/attributes": ("ean", _set("type", None)),
            "/api/rest/v1/categories": ("bags", _set("labels", "Bags")),
            "/api/rest/v1/attributes/color/options": ("black", _set("code", "black & white")),
        }
        if path not in edits:
            return response
        body = orjson.loads(response.content)
        code, edit = edits[path]
        for item in body["_embedded"]["items"]:
            if item["code"] == code:
                edit(item)
        return httpx.Response(200, content=orjson.dumps(body), headers=response.headers)

    app = build_app(sqlite_url, handler)
    report = pipeline.run_full_import(app, ["attributes", "categories"])
    assert report.exit_code == 1
    assert report.feeds["attributes"].quarantined == 2
    assert report.feeds["categories"].quarantined == 1
    assert rows(app, "attributes")["ean"]["status"] == "quarantined"
    assert "type" in rows(app, "attributes")["ean"]["last_error"]
    assert rows(app, "categories")["bags"]["status"] == "quarantined"
    assert "labels" in rows(app, "categories")["bags"]["last_error"]
    options = rows(app, "attribute_options")
    assert options["color/black & white"]["status"] == "quarantined"
    assert {r["status"] for c, r in options.items() if c != "color/black & white"} == {"new"}
    assert status_counts(app, "categories")["new"] == len(rows(app, "categories")) - 1
    app.close()


def test_an_option_that_does_not_exist_is_the_products_error_at_push(sqlite_url, pim, magento):
    victim = pim.catalog.uuid(3)
    handler = corrupting(pim, victim, _set_value("color", "ultraviolet"), None)
    app = build_app(sqlite_url, handler, magento)
    assert pipeline.run_full_import(app).exit_code == 0  # only the push can tell
    report = create(app)
    assert report.exit_code == 1
    assert report.errors == [
        {
            "feed": "products",
            "code": victim,
            "message": "waiting: option 'color/ultraviolet' is not in Magento yet",
        }
    ]
    assert status_counts(app, "products") == {"synced": PRODUCTS - 1, "error": 1}
    assert_synced_only_what_magento_holds(app, magento)
    app.close()


def test_an_attribute_of_an_unknown_type_is_staged_and_ignored(sqlite_url, pim, magento):
    hologram = {
        "code": "hologram",
        "type": "pim_catalog_hologram",
        "group": "marketing",
        "localizable": False,
        "scopable": False,
        "labels": {"en_US": "Hologram"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = pim(request)
        if request.url.path not in ("/api/rest/v1/attributes", PRODUCTS_PATH):
            return response
        body = orjson.loads(response.content)
        items = body["_embedded"]["items"]
        if request.url.path == PRODUCTS_PATH:
            for item in items:
                item["values"]["hologram"] = [{"locale": None, "scope": None, "data": {"x": 1}}]
        elif not body["_links"].get("next"):
            items.append(hologram)
        return httpx.Response(200, content=orjson.dumps(body), headers=response.headers)

    app = build_app(sqlite_url, handler, magento)
    assert pipeline.run_full_import(app).exit_code == 0
    assert rows(app, "attributes")["hologram"]["status"] == "new"
    report = create(app)
    assert (report.exit_code, report.failed) == (0, 0), report.errors
    assert report.feeds["attributes"].ignored >= 1
    assert "pim_hologram" not in magento.attributes
    assert status_counts(app, "products") == {"synced": PRODUCTS}
    assert_synced_only_what_magento_holds(app, magento)
    app.close()
