"""The mock Akeneo PIM, driven through `httpx.MockTransport` as a client would use it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from pimsync.testing.catalog import Catalog, Meta, base_updated
from pimsync.testing.fake_pim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PASSWORD,
    DEFAULT_SECRET,
    DEFAULT_USERNAME,
    FakePim,
    Faults,
)

JSON = dict[str, Any]
API = "http://pim.test/api/rest/v1"
PRODUCTS = f"{API}/products-uuid"
NAME_EN = {"locale": "en_US", "scope": None}


def token_response(client: httpx.Client, **overrides: Any) -> httpx.Response:
    body = {"grant_type": "password", "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}
    auth = overrides.pop("auth", None) or (DEFAULT_CLIENT_ID, DEFAULT_SECRET)
    return client.post("/api/oauth/v1/token", json={**body, **overrides}, auth=auth)


@contextmanager
def connect(pim: FakePim) -> Iterator[httpx.Client]:
    """A client with a fresh bearer token, as the Akeneo client would hold one."""
    with httpx.Client(transport=httpx.MockTransport(pim), base_url="http://pim.test") as client:
        client.headers["Authorization"] = f"Bearer {token_response(client).json()['access_token']}"
        yield client


@pytest.fixture
def pim() -> FakePim:
    pim = FakePim(products=2000)
    pim.clock.freeze()
    return pim


@pytest.fixture
def client(pim: FakePim):
    with connect(pim) as client:
        yield client


def fetch_all(client: httpx.Client, url: str, **params: Any) -> tuple[list[JSON], list[JSON]]:
    """Follow `_links.next` to the end; return (items, pages)."""
    items: list[JSON] = []
    pages: list[JSON] = []
    response = client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        items += page["_embedded"]["items"]
        if "next" not in page["_links"]:
            return items, pages
        response = client.get(page["_links"]["next"]["href"])


def root_of(catalog: Catalog, model: str) -> str:
    record = catalog.model_record(model)
    assert record is not None
    return str(record["parent"] or model)


def search(**filters: list[JSON]) -> str:
    return json.dumps(filters)


def skus(items: list[JSON]) -> list[str]:
    return [item["values"]["sku"][0]["data"] for item in items]


# -- authentication ---------------------------------------------------------------------------


def test_token_with_json_or_form_body(pim: FakePim) -> None:
    with httpx.Client(transport=httpx.MockTransport(pim), base_url="http://pim.test") as client:
        answer = token_response(client)
        form = client.post(
            "/api/oauth/v1/token",
            data={"grant_type": "password", "username": "pimsync", "password": "pimsync-password"},
            auth=(DEFAULT_CLIENT_ID, DEFAULT_SECRET),
        )
    assert answer.status_code == form.status_code == 200
    body = answer.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "bearer" and body["scope"] is None
    assert body["access_token"] != body["refresh_token"] != form.json()["access_token"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"auth": ("pimsync", "wrong")},
            'Parameter "client_id" is missing or does not match any client, or secret is invalid',
        ),
        ({"password": "wrong"}, "No user found for the given username and password"),
        (
            {"grant_type": ""},
            'Parameter "grant_type", "username" or "password" is missing, empty or invalid',
        ),
        (
            {"grant_type": "refresh_token"},
            'Parameter "grant_type" or "refresh_token" is missing or empty',
        ),
    ],
)
def test_token_errors_are_akeneo_422s(
    pim: FakePim, overrides: dict[str, Any], message: str
) -> None:
    with httpx.Client(transport=httpx.MockTransport(pim), base_url="http://pim.test") as client:
        answer = token_response(client, **overrides)
    assert answer.status_code == 422
    assert answer.json() == {"code": 422, "message": message}


def test_missing_unknown_or_expired_token_is_401(pim: FakePim, client: httpx.Client) -> None:
    expected = {"code": 401, "message": "Authentication is required"}
    assert client.get(PRODUCTS).status_code == 200
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        answer = client.get(PRODUCTS, headers=headers)
        assert (answer.status_code, answer.json()) == (401, expected)
    pim.clock.advance(3599)
    assert client.get(f"{API}/channels").status_code == 200
    pim.clock.advance(1)
    answer = client.get(f"{API}/channels")
    assert (answer.status_code, answer.json()) == (401, expected)
    # The endpoint list needs no token.
    assert client.get(API, headers={"Authorization": ""}).status_code == 200


def test_refresh_gives_new_tokens_once(pim: FakePim) -> None:
    with httpx.Client(transport=httpx.MockTransport(pim), base_url="http://pim.test") as client:
        first = token_response(client).json()
        pim.clock.advance(4000)
        refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        again = client.post("/api/oauth/v1/token", json=refresh, auth=("pimsync", DEFAULT_SECRET))
        assert again.status_code == 200
        headers = {"Authorization": f"Bearer {again.json()['access_token']}"}
        assert client.get(PRODUCTS, headers=headers).status_code == 200
        reused = client.post("/api/oauth/v1/token", json=refresh, auth=("pimsync", DEFAULT_SECRET))
    assert reused.json() == {"code": 422, "message": "Refresh token is invalid or has expired"}


# -- pagination -------------------------------------------------------------------------------


def test_search_after_serves_every_product_once(pim: FakePim, client: httpx.Client) -> None:
    items, pages = fetch_all(
        client,
        PRODUCTS,
        pagination_type="search_after",
        limit=100,
        locales="fr_FR",
        attributes="sku,name",
    )
    catalog = pim.catalog
    assert [item["uuid"] for item in items] == [catalog.uuid(i) for i in range(2000)]
    assert {pim.times_served(i) for i in range(2000)} == {1}
    # Akeneo adds `next` whenever a page is full: the last one is empty and has none.
    assert [len(p["_embedded"]["items"]) for p in pages] == [100] * 20 + [0]
    for page in pages[:-1]:
        href = page["_links"]["next"]["href"]
        assert href.startswith(f"{PRODUCTS}?") and "search_after=" in href
        assert "locales=fr_FR" in href and "attributes=sku%2Cname" in href and "limit=100" in href
    assert {frozenset(item["values"]) for item in items} == {frozenset(("sku", "name"))}
    assert {e["locale"] for item in items for e in item["values"]["name"]} == {"fr_FR"}


def test_page_pagination_with_count_and_links(client: httpx.Client) -> None:
    items, pages = fetch_all(client, f"{API}/products", limit=100, with_count="true")
    assert skus(items) == [f"SKU-{i:07d}" for i in range(2000)]
    assert all("identifier" in item and "uuid" not in item for item in items)
    assert pages[0]["items_count"] == 2000 and pages[0]["current_page"] == 1
    second = pages[1]["_links"]
    assert second["previous"]["href"] == f"{API}/products?with_count=true&page=1&limit=100"
    assert second["next"]["href"] == f"{API}/products?with_count=true&page=3&limit=100"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 101}, "You cannot request more than 100 items."),
        ({"limit": 0}, '"0" is not a valid limit number.'),
        ({"page": "x"}, '"x" is not a valid page number.'),
        ({"pagination_type": "cursor"}, "Pagination type does not exist."),
        (
            {"page": 101, "limit": 100},
            "You have reached the maximum number of pages you can "
            'retrieve with the "page" pagination type. Please use the search after pagination type '
            "instead",
        ),
        (
            {"search_after": "!!!", "pagination_type": "search_after"},
            'Parameter "search_after" is not valid, "!!!" given.',
        ),
    ],
)
def test_pagination_errors(client: httpx.Client, params: dict[str, Any], message: str) -> None:
    answer = client.get(PRODUCTS, params=params)
    assert answer.status_code == 422
    assert answer.json()["message"] == message


def test_structure_lists_refuse_search_after(client: httpx.Client) -> None:
    answer = client.get(f"{API}/attributes", params={"pagination_type": "search_after"})
    assert answer.json() == {"code": 422, "message": "Pagination type is not supported."}
    assert client.get(f"{API}/products", params={"page": 100, "limit": 100}).status_code == 200


# -- the updated filter ---------------------------------------------------------------------------


def updated_after(value: str) -> str:
    return search(updated=[{"operator": ">", "value": value}])


def test_updated_filter_with_products_sharing_seconds(client: httpx.Client) -> None:
    # 500 products share each second: 0-499 at 00:00:00, 500-999 at 00:00:01, ...
    for limit in (100, 70):  # 70: pages end inside a second
        items, _ = fetch_all(
            client,
            PRODUCTS,
            pagination_type="search_after",
            limit=limit,
            search=updated_after("2026-01-01 00:00:01"),
        )
        assert skus(items) == [f"SKU-{i:07d}" for i in range(1000, 2000)]
    between = search(updated=[{"operator": "BETWEEN", "value": ["2026-01-01 00:00:01"] * 2}])
    items, _ = fetch_all(client, PRODUCTS, limit=100, search=between)
    assert skus(items) == [f"SKU-{i:07d}" for i in range(500, 1000)]
    before = search(updated=[{"operator": "<", "value": "2026-01-01 00:00:01"}])
    assert len(fetch_all(client, PRODUCTS, limit=100, search=before)[0]) == 500


def test_updated_filter_is_read_in_the_pim_time_zone() -> None:
    pim = FakePim(products=1000, timezone="Europe/Paris")
    with connect(pim) as client:
        first = client.get(f"{PRODUCTS}/{pim.catalog.uuid(0)}").json()
        assert first["updated"] == first["created"] == "2026-01-01T01:00:00+01:00"
        paris = fetch_all(client, PRODUCTS, limit=100, search=updated_after("2026-01-01 01:00:00"))
        utc = fetch_all(client, PRODUCTS, limit=100, search=updated_after("2026-01-01 00:00:00"))
    assert len(paris[0]) == 500 and len(utc[0]) == 1000


@pytest.mark.parametrize(
    ("filters", "status", "message"),
    [
        ("{not json", 400, "Search query parameter should be valid JSON."),
        ('"updated"', 422, 'Search query parameter has to be an array, "string" given.'),
        (
            search(updated=[{"operator": ">", "value": "2026-01-01T00:00:00"}]),
            422,
            'Property "updated" expects a string with the format "yyyy-mm-dd H:i:s" as data, '
            '"2026-01-01T00:00:00" given.',
        ),
        (
            search(updated=[{"operator": "LIKE", "value": "x"}]),
            422,
            'Filter on property "updated" is not supported or does not support operator "LIKE"',
        ),
        (
            search(brand=[{"operator": "=", "value": "x"}]),
            422,
            'Filter on property "brand" is not supported or does not support operator "="',
        ),
        (search(updated=[{"value": "x"}]), 422, 'Operator is missing for the property "updated".'),
    ],
)
def test_search_errors(client: httpx.Client, filters: str, status: int, message: str) -> None:
    answer = client.get(PRODUCTS, params={"search": filters})
    assert (answer.status_code, answer.json()) == (status, {"code": status, "message": message})


def test_variants_match_through_their_model(pim: FakePim, client: httpx.Client) -> None:
    catalog = pim.catalog
    metas = [catalog.product_meta(i) for i in range(2000)]
    variant = next(i for i, meta in enumerate(metas) if meta and meta.parent)
    root = root_of(catalog, str(catalog.generated(variant).parent))
    pim.clock.advance(60)
    pim.update_model(root, {"name": [{**NAME_EN, "data": "Renamed"}]})
    items, _ = fetch_all(client, PRODUCTS, limit=100, search=updated_after("2026-03-01 09:00:30"))
    expected = sorted(catalog.generated_variants(root))
    assert variant in expected and len(expected) >= 2
    assert [item["uuid"] for item in items] == [catalog.uuid(i) for i in expected]
    # Their own `updated` does not move; their inherited values do.
    assert {item["updated"] for item in items} == {pim.iso(base_updated(expected[0]))}
    assert {item["values"]["name"][0]["data"] for item in items} == {"Renamed"}
    models, _ = fetch_all(
        client, f"{API}/product-models", search=updated_after("2026-03-01 09:00:30")
    )
    assert models[0]["code"] == root and models[0]["updated"] == "2026-03-01T09:01:00+00:00"


def test_updated_filter_bisects_instead_of_scanning() -> None:
    pim = FakePim(products=1_000_000)
    calls = 0
    meta = pim.catalog.product_meta

    def counting(index: int) -> Meta | None:
        nonlocal calls
        calls += 1
        return meta(index)

    pim.catalog.product_meta = counting  # type: ignore[method-assign]
    last_second = datetime.fromtimestamp(base_updated(999_999) - 1, UTC)
    with connect(pim) as client:
        items, _ = fetch_all(
            client,
            PRODUCTS,
            pagination_type="search_after",
            limit=100,
            search=updated_after(last_second.strftime("%Y-%m-%d %H:%M:%S")),
        )
    assert skus(items) == [f"SKU-{i:07d}" for i in range(999_500, 1_000_000)]
    assert calls < 1000


def test_other_filters(pim: FakePim, client: httpx.Client) -> None:
    catalog = pim.catalog
    metas = [catalog.product_meta(i) for i in range(2000)]
    disabled = search(enabled=[{"operator": "=", "value": False}])
    assert len(fetch_all(client, PRODUCTS, limit=100, search=disabled)[0]) == sum(
        not m.enabled for m in metas if m
    )
    shoes = search(family=[{"operator": "IN", "value": ["shoes"]}])
    expected = [i for i, m in enumerate(metas) if m and m.family == "shoes"]
    assert skus(fetch_all(client, PRODUCTS, limit=100, search=shoes)[0]) == [
        f"SKU-{i:07d}" for i in expected
    ]
    simple = search(parent=[{"operator": "EMPTY"}])
    items = fetch_all(client, PRODUCTS, limit=100, search=simple)[0]
    assert len(items) == sum(m.parent is None for m in metas if m) > 1000  # about 70%
    uuids = [catalog.uuid(i) for i in (3, 1500, 42)]
    chosen = search(uuid=[{"operator": "IN", "value": uuids}])
    pim.reset_stats()
    assert skus(fetch_all(client, PRODUCTS, search=chosen)[0]) == [
        "SKU-0000003",
        "SKU-0000042",
        "SKU-0001500",
    ]
    assert pim.served_uuids() == set(uuids)


# -- writes -------------------------------------------------------------------------------------


def test_patch_then_get_shows_the_change(pim: FakePim, client: httpx.Client) -> None:
    uuid = pim.catalog.uuid(7)
    before = client.get(f"{PRODUCTS}/{uuid}").json()
    pim.clock.advance(90)
    patch = {"enabled": False, "values": {"name": [{**NAME_EN, "data": "Patched"}]}}
    answer = client.patch(f"{PRODUCTS}/{uuid}", json=patch)
    assert answer.status_code == 204 and answer.headers["Location"] == f"{PRODUCTS}/{uuid}"
    after = client.get(f"{PRODUCTS}/{uuid}").json()
    assert after["enabled"] is False and after["updated"] == "2026-03-01T09:01:30+00:00"
    assert after["updated"] > before["updated"] and after["created"] == before["created"]
    assert after["values"]["name"] == [
        {**NAME_EN, "data": "Patched"},
        *before["values"]["name"][1:],
    ]
    assert after["values"]["price"] == before["values"]["price"]
    items, _ = fetch_all(client, PRODUCTS, search=updated_after("2026-03-01 09:01:00"))
    assert [item["uuid"] for item in items] == [uuid]
    recent = search(updated=[{"operator": "SINCE LAST N DAYS", "value": 1}])
    assert [item["uuid"] for item in fetch_all(client, PRODUCTS, search=recent)[0]] == [uuid]
    assert pim.product(7) == {k: v for k, v in after.items()}


def test_write_validation(pim: FakePim, client: httpx.Client) -> None:
    uuid = pim.catalog.uuid(7)
    bad_option = {"values": {"color": [{"locale": None, "scope": None, "data": "tartan"}]}}
    assert client.patch(f"{PRODUCTS}/{uuid}", json=bad_option).json()["message"] == (
        "Validation failed."
    )
    unknown = client.patch(f"{PRODUCTS}/{uuid}", json={"colour": "red"}).json()["message"]
    assert unknown.startswith('Property "colour" does not exist.')
    no_json = client.patch(
        f"{PRODUCTS}/{uuid}", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert no_json.json() == {"code": 400, "message": "Invalid json message received"}
    assert client.patch(f"{PRODUCTS}/{uuid}", content=b"{}").status_code == 415


def test_create_and_delete(pim: FakePim, client: httpx.Client) -> None:
    body = {
        "family": "accessories",
        "values": {"sku": [{"locale": None, "scope": None, "data": "NEW-1"}]},
    }
    created = client.post(PRODUCTS, json=body)
    assert created.status_code == 201
    new = client.get(created.headers["Location"]).json()
    assert new["family"] == "accessories" and new["values"]["sku"][0]["data"] == "NEW-1"
    assert client.get(f"{API}/products/NEW-1").json()["identifier"] == "NEW-1"
    duplicate = client.post(PRODUCTS, json=body)
    assert duplicate.status_code == 422
    assert client.delete(f"{PRODUCTS}/{pim.catalog.uuid(3)}").status_code == 204
    assert client.get(f"{PRODUCTS}/{pim.catalog.uuid(3)}").status_code == 404
    items, _ = fetch_all(client, PRODUCTS, pagination_type="search_after", limit=100)
    assert len(items) == 2000 and items[-1]["uuid"] == new["uuid"]
    assert "SKU-0000003" not in skus(items)


def test_category_and_option_patches(pim: FakePim, client: httpx.Client) -> None:
    pim.clock.advance(5)
    label = {"labels": {"en_US": "Sales"}}
    assert client.patch(f"{API}/categories/outlet", json=label).status_code == 204
    changed = search(updated=[{"operator": ">", "value": "2026-03-01T09:00:00+00:00"}])
    items, _ = fetch_all(client, f"{API}/categories", search=changed)
    assert [(i["code"], i["labels"]["en_US"], i["labels"]["fr_FR"]) for i in items] == [
        ("outlet", "Sales", "Déstockage")
    ]
    option = client.patch(
        f"{API}/attributes/color/options/teal", json={"labels": {"en_US": "Teal"}}
    )
    assert option.status_code == 201
    assert client.get(f"{API}/attributes/color/options/teal").json()["sort_order"] == 13
    # An option change does not bump the attribute's `updated`.
    assert fetch_all(client, f"{API}/attributes", search=changed)[0] == []


# -- catalog structure and media ----------------------------------------------------------------


def test_structure_endpoints(client: httpx.Client) -> None:
    attributes, _ = fetch_all(client, f"{API}/attributes", limit=5)
    assert (
        len(attributes) == 13 and attributes[0]["_links"]["self"]["href"] == f"{API}/attributes/sku"
    )
    price = client.get(f"{API}/attributes/price").json()
    assert price["type"] == "pim_catalog_price_collection" and price["decimals_allowed"] is True
    assert set(price["labels"]) == {"en_US", "fr_FR", "de_DE"} and price["updated"].endswith(
        "+00:00"
    )
    colors, _ = fetch_all(client, f"{API}/attributes/color/options")
    assert len(colors) == 12 and colors[0]["labels"]["de_DE"] == "Schwarz"
    variants = client.get(f"{API}/families/shoes/variants").json()["_embedded"]["items"]
    assert [s["axes"] for s in variants[0]["variant_attribute_sets"]] == [["color"], ["size"]]
    roots = search(is_root=[{"operator": "=", "value": True}])
    assert [c["code"] for c in fetch_all(client, f"{API}/categories", search=roots)[0]] == [
        "master"
    ]
    children = search(parent=[{"operator": "=", "value": "women_shoes"}])
    assert len(fetch_all(client, f"{API}/categories", search=children)[0]) == 3
    channel = client.get(f"{API}/channels/ecommerce").json()
    assert channel["category_tree"] == "master" and channel["currencies"] == ["EUR", "USD"]
    enabled = search(enabled=[{"operator": "=", "value": True}])
    locales = fetch_all(client, f"{API}/locales", search=enabled)[0]
    assert sorted(x["code"] for x in locales) == ["de_DE", "en_US", "fr_FR"]
    assert client.get(f"{API}/families/nope").json() == {
        "code": 404,
        "message": 'Family "nope" does not exist.',
    }


def test_media_download(pim: FakePim, client: httpx.Client) -> None:
    product = next(
        item for item in fetch_all(client, PRODUCTS, limit=20)[0] if "picture" in item["values"]
    )
    picture = product["values"]["picture"][0]
    code, href = picture["data"], picture["_links"]["download"]["href"]
    assert href == f"{API}/media-files/{code}/download" and code.count("/") == 4
    download = client.get(href)
    assert download.status_code == 200 and download.headers["Content-Type"] == "image/jpeg"
    content = download.content
    assert content[:2] == b"\xff\xd8" and content[-2:] == b"\xff\xd9" and 200 < len(content) < 600
    assert hashlib.sha1(content).hexdigest() == code.split("/")[4].split("_")[0]
    info = client.get(f"{API}/media-files/{code}").json()
    assert info["size"] == len(content) and info["mime_type"] == "image/jpeg"
    files, _ = fetch_all(client, f"{API}/media-files", limit=100)
    assert code in {f["code"] for f in files} and len(files) == pim.catalog.media_count()
    assert client.get(f"{API}/media-files/a/b/c/d/nope.jpg/download").status_code == 404


# -- faults, clock and statistics -----------------------------------------------------------------


def test_fail_next_and_retry_after(pim: FakePim, client: httpx.Client) -> None:
    pim.fail_next(2, status=503)
    assert [client.get(f"{API}/channels").status_code for _ in range(3)] == [503, 503, 200]
    pim.fail_next(1, status=429)
    pim.fail_next(1, status=429, retry_after=7)
    assert [client.get(f"{API}/channels").headers["Retry-After"] for _ in range(2)] == ["1", "7"]
    pim.fail_next(1, status=500, path_prefix="/api/rest/v1/products")
    assert token_response(client).status_code == 200
    assert client.get(PRODUCTS).status_code == 500


def test_outage_mid_import(pim: FakePim, client: httpx.Client) -> None:
    pim.outage(after_requests=3)
    statuses = [client.get(PRODUCTS, params={"page": n}).status_code for n in range(1, 7)]
    assert statuses == [200, 200, 200, 503, 503, 503]
    assert token_response(client).status_code == 503
    pim.end_outage()
    assert client.get(PRODUCTS).status_code == 200


def test_dropped_connection_is_a_transport_error(pim: FakePim, client: httpx.Client) -> None:
    pim.drop_next(1)
    with pytest.raises(httpx.TransportError):
        client.get(PRODUCTS)
    assert client.get(PRODUCTS).status_code == 200


def test_random_faults_are_seeded(pim: FakePim) -> None:
    def run(faults: Faults) -> list[object]:
        fake = FakePim(products=50, faults=faults)
        outcomes: list[object] = []
        with httpx.Client(transport=httpx.MockTransport(fake), base_url="http://pim.test") as c:
            for _ in range(60):
                try:
                    answer = c.get(API)
                except httpx.TransportError:
                    outcomes.append("drop")
                    continue
                try:
                    answer.json()
                    outcomes.append(answer.status_code)
                except json.JSONDecodeError:
                    outcomes.append(answer.headers["Content-Type"])
        return outcomes

    faults = Faults(
        error_rate=0.2,
        rate_limit_rate=0.1,
        drop_rate=0.1,
        malformed_rate=0.1,
        html_error_rate=0.1,
        seed=4,
    )
    first = run(faults)
    assert first == run(faults) != run(Faults(error_rate=0.5, seed=5))
    assert {"drop", 429, 200, "application/json", "text/html"} <= set(first)
    assert {500, 502, 503} & set(first)


def test_date_header_comes_from_the_mock_clock(pim: FakePim, client: httpx.Client) -> None:
    pim.clock.set(datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC))
    for url in (PRODUCTS, f"{PRODUCTS}?limit=999", API):
        assert client.get(url).headers["Date"] == "Mon, 04 May 2026 03:02:01 GMT"
    pim.clock.advance(2.5)
    assert client.get(API).headers["Date"] == format_datetime(pim.clock.now(), usegmt=True)


def test_request_statistics_are_bounded() -> None:
    pim = FakePim(products=10, request_log=5)
    with connect(pim) as client:
        for n in range(8):
            client.get(f"{PRODUCTS}/{pim.catalog.uuid(n)}")
    assert len(pim.requests) == 5 and pim.request_count == 9
    assert pim.requests[-1].path == f"/api/rest/v1/products-uuid/{pim.catalog.uuid(7)}"
    assert pim.request_counts["GET /api/rest/v1/products-uuid/{code}"] == 8
    assert pim.items_served["products"] == 8 and len(pim.served_uuids()) == 8


# -- determinism and rendering ------------------------------------------------------------------


def test_same_seed_same_json() -> None:
    def page(seed: int) -> bytes:
        with connect(FakePim(products=500, seed=seed)) as client:
            return client.get(PRODUCTS, params={"limit": 100, "page": 2}).content

    assert page(3) == page(3) != page(4)
    # The order in which products are first generated does not matter.
    a, b = Catalog(3000, seed=1), Catalog(3000, seed=1)
    forward = [a.product_record(i) for i in range(0, 3000, 7)]
    backward = [b.product_record(i) for i in reversed(range(0, 3000, 7))][::-1]
    assert forward == backward


def test_fast_path_renders_the_same_bytes(pim: FakePim) -> None:
    for options in ({"links": True}, {"legacy": True, "links": True}):
        view = pim.view(**options)
        for index in range(1000):
            fast = pim.renderer.product_json(index, view)
            assert fast == orjson.dumps(pim.renderer.product(index, view)), index


def test_catalog_shape(pim: FakePim) -> None:
    catalog = pim.catalog
    metas = [catalog.product_meta(i) for i in range(2000)]
    variants = [m for m in metas if m and m.parent]
    assert 0.25 < len(variants) / 2000 < 0.35
    roots = {root_of(catalog, str(m.parent)) for m in variants}
    sizes = [len(catalog.generated_variants(code)) for code in roots]
    assert min(sizes) >= 2 and max(sizes) <= 6
    product = pim.product(next(i for i, m in enumerate(metas) if m and m.family == "shoes"))
    assert product["values"]["price"][0]["data"][0]["amount"].count(".") == 1
    assert product["values"]["weight"][0]["data"]["unit"] == "KILOGRAM"
    assert {e["scope"] for e in product["values"]["description"]} == {"ecommerce"}
    assert catalog.index_of_uuid(product["uuid"]) is not None
    assert pim.product(product["uuid"]) == product
