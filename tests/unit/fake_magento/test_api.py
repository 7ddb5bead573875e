"""FakeMagento: auth, store scoping, product save semantics and validation, search, stores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimsync.testing.fake_magento import FakeMagento
from tests.unit.fake_magento.conftest import AUTH, custom, product

EMPTY = 'The "%1" attribute value is empty. Set the attribute and try again.'
BAD_SET = {
    "message": "Invalid product data: %1",
    "parameters": ["Invalid attribute set entity type"],
}
ACCESSOR = 'Property "%1" does not have accessor method "%2" in class "%3".'
INTERFACE = "Magento\\Catalog\\Api\\Data\\ProductInterface"
BAD_TYPE = 'The "%1" value\'s type is invalid. The "%2" type was expected. Verify and try again.'


# --- auth and routing ----------------------------------------------------------------------


def test_missing_or_wrong_token_gets_magentos_401_body(fm):
    with httpx.Client(transport=httpx.MockTransport(fm), base_url="http://m") as anonymous:
        r = anonymous.get("/rest/V1/products/A")
        assert r.status_code == 401
        assert r.json() == {
            "message": "The consumer isn't authorized to access %resources.",
            "parameters": {"resources": "Magento_Catalog::products"},
        }
        r = anonymous.get("/rest/V1/categories/2", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert r.json()["parameters"] == {"resources": "Magento_Catalog::categories"}


def test_revoked_token_gives_401_until_restored(fm, client):
    fm.revoke_token()
    assert client.get("/rest/V1/categories/2").status_code == 401
    fm.restore_token()
    assert client.get("/rest/V1/categories/2").status_code == 200


def test_admin_token_login(fm):
    with httpx.Client(transport=httpx.MockTransport(fm), base_url="http://m") as c:
        r = c.post(
            "/rest/V1/integration/admin/token",
            json={"username": "admin", "password": "magento123"},
        )
        assert r.status_code == 200
        token = r.json()
        assert token == fm.admin_token
        ok = c.get("/rest/V1/categories/2", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        bad = c.post(
            "/rest/V1/integration/admin/token", json={"username": "admin", "password": "x"}
        )
        assert bad.status_code == 401
        assert bad.json()["message"].startswith("The account sign-in was incorrect")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/rest/xx/V1/products/A"),  # unknown store code stays in the path
        ("GET", "/rest/admin/V1/products/A"),  # "admin" is not accepted, only "all"
        ("PATCH", "/rest/V1/products/A"),  # a wrong method is a route miss, not 405
        ("GET", "/rest/all/async/V1/products/A"),  # no async GET
        ("GET", "/rest/V1/nothing"),
    ],
)
def test_route_misses_are_404_with_magentos_message(client, method, path):
    r = client.request(method, path)
    assert r.status_code == 404
    assert r.json() == {"message": "Request does not match any route."}


def test_route_miss_wins_over_auth(fm):
    with httpx.Client(transport=httpx.MockTransport(fm), base_url="http://m") as c:
        assert c.get("/rest/xx/V1/products/A").status_code == 404


def test_index_php_prefix_and_encoded_slash_in_sku(client):
    assert client.post("/index.php/rest/all/V1/products", json=product("A/B")).status_code == 200
    r = client.get("/rest/all/V1/products/A%2FB")
    assert r.status_code == 200
    assert r.json()["sku"] == "A/B"


# --- store scope and fallback --------------------------------------------------------------


def test_plain_create_is_global_but_plain_update_lands_on_default_store(fm, client):
    assert client.post("/rest/V1/products", json=product("A", name="Base")).status_code == 200
    assert fm.product_overrides("A") == {}
    r = client.put("/rest/V1/products/A", json={"product": {"sku": "A", "name": "Renamed"}})
    assert r.status_code == 200
    # Issue #9186: a store-less update writes store-view values on the default store only.
    assert fm.product_overrides("A") == {"default": {"name": "Renamed"}}
    assert client.get("/rest/all/V1/products/A").json()["name"] == "Base"
    assert client.get("/rest/fr/V1/products/A").json()["name"] == "Base"
    assert client.get("/rest/V1/products/A").json()["name"] == "Renamed"
    assert client.get("/rest/default/V1/products/A").json()["name"] == "Renamed"


def test_store_write_keeps_use_default_value_for_what_it_did_not_send(fm, client):
    base = product(
        "A",
        name="Shirt",
        custom_attributes=[
            {"attribute_code": "description", "value": "Cotton"},
        ],
    )
    client.post("/rest/all/V1/products", json=base)
    client.put("/rest/fr/V1/products/A", json={"product": {"sku": "A", "name": "Chemise"}})
    assert fm.product_overrides("A") == {"fr": {"name": "Chemise"}}
    client.put(
        "/rest/all/V1/products/A",
        json={
            "product": {
                "sku": "A",
                "name": "Tee",
                "custom_attributes": [
                    {"attribute_code": "description", "value": "Linen"},
                ],
            }
        },
    )
    fr = client.get("/rest/fr/V1/products/A").json()
    assert fr["name"] == "Chemise"  # the override stays
    assert custom(fr, "description") == "Linen"  # the fallback follows the global value
    assert fm.product("A", "de")["name"] == "Tee"
    assert fm.product("A")["name"] == "Tee"


def test_global_and_website_attributes_through_a_store_view(fm, client):
    client.post("/rest/all/V1/products", json=product("A"))
    client.put("/rest/fr/V1/products/A", json={"product": {"sku": "A", "price": 12.5}})
    assert fm.product_overrides("A") == {}  # price is global: no store copy
    assert fm.product("A")["price"] == 12.5
    client.put("/rest/fr/V1/products/A", json={"product": {"sku": "A", "status": 2}})
    # status is website-scoped: every store view of the website gets the value.
    overrides = fm.product_overrides("A")
    assert {code: vals["status"] for code, vals in overrides.items()} == {
        "default": 2,
        "fr": 2,
        "de": 2,
    }
    assert fm.product("A")["status"] == 1


def test_create_through_a_store_view_sets_global_values_and_an_override(fm, client):
    r = client.post("/rest/fr/V1/products", json=product("A", name="Chemise"))
    assert r.status_code == 200
    assert r.json()["extension_attributes"]["website_ids"] == [1]
    assert fm.product("A")["name"] == "Chemise"
    assert fm.product_overrides("A") == {"fr": {"name": "Chemise"}}


def test_save_is_an_upsert_keyed_by_case_insensitive_sku(fm, client):
    first = client.post("/rest/all/V1/products", json=product("abc-1", price=5)).json()
    again = client.post("/rest/all/V1/products", json={"product": {"sku": " ABC-1 ", "price": 6}})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["price"] == 6
    assert again.json()["name"] == "Product abc-1"  # absent fields stay unchanged
    created = client.put("/rest/all/V1/products/NEW", json=product("NEW"))
    assert created.status_code == 200
    assert set(fm.products) == {"ABC-1", "NEW"}


def test_get_with_store_id_query_reads_that_store(client):
    client.post("/rest/all/V1/products", json=product("A", name="Shirt"))
    client.put("/rest/fr/V1/products/A", json={"product": {"sku": "A", "name": "Chemise"}})
    assert client.get("/rest/all/V1/products/A", params={"storeId": 2}).json()["name"] == "Chemise"


def test_create_defaults_and_value_shapes(fm, client):
    fm.add_attribute("features", frontend_input="multiselect", options=["a", "b"])
    ids = fm.attribute_options("features")
    payload = product(
        "A",
        name="Champ Tee Small!",
        weight="0.5",
        custom_attributes=[
            {"attribute_code": "special_price", "value": 19.99},
            {"attribute_code": "features", "value": [ids["a"], ids["b"]]},
            {"attribute_code": "tax_class_id", "value": 2},
        ],
    )
    view = client.post("/rest/all/V1/products", json=payload).json()
    assert (view["status"], view["visibility"], view["type_id"]) == (1, 4, "simple")
    assert view["weight"] == 0.5
    assert custom(view, "url_key") == "champ-tee-small"
    assert custom(view, "special_price") == "19.990000"
    assert custom(view, "features") == f"{ids['a']},{ids['b']}"
    assert custom(view, "tax_class_id") == "2"
    assert view["media_gallery_entries"] == []


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {},
            400,
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "product"},
            },
        ),
        (
            {"product": {"name": "x", "attribute_set_id": 4, "price": 1}},
            400,
            {"message": EMPTY, "parameters": ["SKU"]},
        ),
        (
            {"product": {"sku": "A", "attribute_set_id": 4, "price": 1}},
            400,
            {"message": EMPTY, "parameters": ["Product Name"]},
        ),
        (
            {"product": {"sku": "A", "name": "A", "attribute_set_id": 4}},
            400,
            {"message": EMPTY, "parameters": ["Price"]},
        ),
        ({"product": {"sku": "A", "name": "A", "price": 1}}, 400, BAD_SET),
        ({"product": {"sku": "A", "name": "A", "price": 1, "attribute_set_id": 3}}, 400, BAD_SET),
        (
            {
                "product": {
                    "sku": "A",
                    "name": "A",
                    "price": 1,
                    "attribute_set_id": 4,
                    "colour": "red",
                }
            },
            400,
            {"message": ACCESSOR, "parameters": ["Colour", "setColour", INTERFACE]},
        ),
        (
            {"product": {"sku": "A", "name": "A", "price": "cheap", "attribute_set_id": 4}},
            400,
            {"message": BAD_TYPE, "parameters": ["cheap", "float"]},
        ),
        (
            {"product": {"sku": "S" * 65, "name": "A", "price": 1, "attribute_set_id": 4}},
            400,
            {"message": "SKU length should be %1 characters maximum.", "parameters": [64]},
        ),
    ],
)
def test_product_validation_errors(fm, client, body, status, expected):
    r = client.post("/rest/all/V1/products", json=body)
    assert r.status_code == status
    assert r.json() == expected
    assert fm.products == {}


def test_configurable_needs_no_price(client):
    r = client.post(
        "/rest/all/V1/products",
        json={
            "product": {
                "sku": "P",
                "name": "Parent",
                "attribute_set_id": 4,
                "type_id": "configurable",
            }
        },
    )
    assert r.status_code == 200
    assert r.json()["price"] == 0


def test_custom_attributes_outside_the_set_are_dropped_silently(fm, client):
    fm.add_attribute("fabric", frontend_input="text", attribute_set_id=None)
    payload = product(
        "A",
        custom_attributes=[
            {"attribute_code": "fabric", "value": "wool"},
            {"attribute_code": "no_such_code", "value": "x"},
        ],
    )
    view = client.post("/rest/all/V1/products", json=payload).json()
    assert custom(view, "fabric") is None
    assert custom(view, "no_such_code") is None
    r = client.post(
        "/rest/V1/products/attribute-sets/attributes",
        json={
            "attributeSetId": 4,
            "attributeGroupId": 7,
            "attributeCode": "fabric",
            "sortOrder": 5,
        },
    )
    assert r.status_code == 200
    assert isinstance(r.json(), int)
    view = client.post("/rest/all/V1/products", json=payload).json()
    assert custom(view, "fabric") == "wool"


def test_unknown_option_ids_are_stored_unless_strict(fm, client):
    fm.add_attribute("size", options=["S", "M"])
    bogus = product("A", custom_attributes=[{"attribute_code": "size", "value": "99999"}])
    r = client.post("/rest/all/V1/products", json=bogus)
    assert r.status_code == 200  # Magento does not check option ids on save
    assert custom(r.json(), "size") == "99999"

    strict = FakeMagento(consumer=False, strict_options=True)
    strict.add_attribute("size", options=["S"])
    with httpx.Client(
        transport=httpx.MockTransport(strict), base_url="http://m", headers=AUTH
    ) as c:
        r = c.post("/rest/all/V1/products", json=bogus)
        assert r.status_code == 400
        assert r.json() == {
            "message": 'Invalid value of "%value" provided for the %fieldName field.',
            "parameters": {"value": "99999", "fieldName": "size"},
        }
        good = product(
            "A",
            custom_attributes=[
                {"attribute_code": "size", "value": str(strict.attribute_options("size")["S"])},
            ],
        )
        assert c.post("/rest/all/V1/products", json=good).status_code == 200


def test_unknown_category_link_fails_on_the_foreign_key(fm, client):
    payload = product(
        "A", extension_attributes={"category_links": [{"position": 0, "category_id": "999"}]}
    )
    r = client.post("/rest/all/V1/products", json=payload)
    assert r.status_code == 400
    assert r.json() == {"message": "The product was unable to be saved. Please try again."}
    cid = fm.add_category("Shoes")
    payload["product"]["extension_attributes"]["category_links"][0]["category_id"] = str(cid)
    view = client.post("/rest/all/V1/products", json=payload).json()
    assert view["extension_attributes"]["category_links"] == [
        {"position": 0, "category_id": str(cid)}
    ]
    assert custom(view, "category_ids") == [str(cid)]


def test_duplicate_url_key_within_a_store(fm, client):
    dup = {"message": "URL key for specified store already exists."}
    assert client.post("/rest/all/V1/products", json=product("A", name="Same")).status_code == 200
    r = client.post("/rest/all/V1/products", json=product("B", name="Same"))
    assert (r.status_code, r.json()) == (400, dup)
    assert "B" not in fm.products
    # Not Visible Individually: no URL rewrite, so no collision.
    assert (
        client.post(
            "/rest/all/V1/products", json=product("C", name="Same", visibility=1)
        ).status_code
        == 200
    )
    unique = product(
        "B", name="Same", custom_attributes=[{"attribute_code": "url_key", "value": "same-b"}]
    )
    assert client.post("/rest/all/V1/products", json=unique).status_code == 200
    # A store-view override can collide in that store only.
    fr_clash = {
        "product": {
            "sku": "B",
            "custom_attributes": [{"attribute_code": "url_key", "value": "same"}],
        }
    }
    r = client.put("/rest/fr/V1/products/B", json=fr_clash)
    assert (r.status_code, r.json()) == (400, dup)
    client.put(
        "/rest/fr/V1/products/A",
        json={
            "product": {
                "sku": "A",
                "custom_attributes": [{"attribute_code": "url_key", "value": "meme"}],
            }
        },
    )
    assert client.put("/rest/fr/V1/products/B", json=fr_clash).status_code == 200
    assert fm.url_rewrites("fr")["same.html"] == "product:B"
    assert fm.url_rewrites("default")["same.html"] == "product:A"


def test_product_and_category_share_the_url_space(fm, client):
    fm.add_category("Shoes")
    r = client.post("/rest/all/V1/products", json=product("A", name="Shoes"))
    assert r.json() == {"message": "URL key for specified store already exists."}


def test_delete_product(client):
    client.post("/rest/all/V1/products", json=product("A"))
    r = client.delete("/rest/all/V1/products/A")
    assert (r.status_code, r.json()) == (200, True)
    r = client.get("/rest/all/V1/products/A")
    assert r.status_code == 404
    assert r.json() == {
        "message": "The product that was requested doesn't exist. Verify the product and try again."
    }


def test_stock_item_in_save_and_legacy_stock_endpoints(client):
    payload = product("A", extension_attributes={"stock_item": {"qty": "10", "is_in_stock": True}})
    stock = client.post("/rest/all/V1/products", json=payload).json()["extension_attributes"][
        "stock_item"
    ]
    assert (stock["qty"], stock["is_in_stock"], stock["manage_stock"]) == (10, True, True)
    r = client.put(
        "/rest/V1/products/A/stockItems/1", json={"stockItem": {"qty": 3, "is_in_stock": False}}
    )
    assert (r.status_code, r.json()) == (200, stock["item_id"])
    got = client.get("/rest/V1/stockItems/A").json()
    assert (got["qty"], got["is_in_stock"]) == (3, False)


# --- search --------------------------------------------------------------------------------


def criteria(*groups: list[tuple[str, Any, str]], **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for g, filters in enumerate(groups):
        for f, (field, value, cond) in enumerate(filters):
            prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params[f"{prefix}[field]"] = field
            params[f"{prefix}[value]"] = value
            params[f"{prefix}[condition_type]"] = cond
    for key, value in extra.items():
        params[f"searchCriteria[{key}]"] = value
    return params


@pytest.fixture
def catalogue(client):
    for i in range(1, 8):
        client.post("/rest/all/V1/products", json=product(f"WSH{i:02d}", price=i * 10))
    client.post("/rest/all/V1/products", json=product("MT01", price=15))


def skus(response: httpx.Response) -> list[str]:
    return [item["sku"] for item in response.json()["items"]]


def test_search_filters_groups_and_conditions(client, catalogue):
    r = client.get("/rest/V1/products", params=criteria([("sku", "wsh0%", "like")], pageSize=100))
    assert r.json()["total_count"] == 7
    r = client.get("/rest/V1/products", params=criteria([("sku", "MT01,WSH02,NOPE", "in")]))
    assert sorted(skus(r)) == ["MT01", "WSH02"]
    # Filters in one group are ORed; groups are ANDed.
    r = client.get(
        "/rest/V1/products",
        params=criteria([("sku", "WSH01", "eq"), ("sku", "wsh05", "eq")], [("price", "30", "gt")]),
    )
    assert skus(r) == ["WSH05"]
    r = client.get("/rest/V1/products", params=criteria([("price", "20", "lteq")]))
    assert sorted(skus(r)) == ["MT01", "WSH01", "WSH02"]
    echo = r.json()["search_criteria"]
    assert echo["filter_groups"] == [
        {"filters": [{"field": "price", "value": "20", "condition_type": "lteq"}]}
    ]


def test_search_paging_clamps_past_the_last_page(client, catalogue):
    params = criteria([("sku", "WSH%", "like")], pageSize=3, currentPage=2)
    params["searchCriteria[sortOrders][0][field]"] = "price"
    params["searchCriteria[sortOrders][0][direction]"] = "DESC"
    r = client.get("/rest/V1/products", params=params)
    body = r.json()
    assert body["total_count"] == 7
    assert skus(r) == ["WSH04", "WSH03", "WSH02"]
    assert (body["search_criteria"]["page_size"], body["search_criteria"]["current_page"]) == (3, 2)
    params["searchCriteria[currentPage]"] = 9
    assert skus(client.get("/rest/V1/products", params=params)) == ["WSH01"]  # the last page again


def test_search_accepts_camel_case_and_rejects_unknown_fields(client, catalogue):
    r = client.get(
        "/rest/V1/products",
        params={
            "searchCriteria[filterGroups][0][filters][0][field]": "sku",
            "searchCriteria[filterGroups][0][filters][0][value]": "MT01",
            "searchCriteria[filterGroups][0][filters][0][conditionType]": "eq",
        },
    )
    assert skus(r) == ["MT01"]
    r = client.get("/rest/V1/products", params=criteria([("colour_code", "x", "eq")]))
    assert r.status_code == 400
    assert r.json() == {"message": "Invalid attribute name: %1", "parameters": ["colour_code"]}


def test_search_sees_store_values(client, catalogue):
    client.put("/rest/fr/V1/products/MT01", json={"product": {"sku": "MT01", "name": "Haut"}})
    r = client.get("/rest/fr/V1/products", params=criteria([("name", "Haut", "eq")]))
    assert skus(r) == ["MT01"]
    r = client.get("/rest/all/V1/products", params=criteria([("name", "Haut", "eq")]))
    assert r.json()["total_count"] == 0


# --- stores ------------------------------------------------------------------------------


def test_store_endpoints_list_admin_scope_and_configured_stores(client):
    views = client.get("/rest/V1/store/storeViews").json()
    assert [(v["id"], v["code"], v["website_id"]) for v in views] == [
        (0, "admin", 0),
        (1, "default", 1),
        (2, "fr", 1),
        (3, "de", 1),
    ]
    sites = client.get("/rest/V1/store/websites").json()
    assert [(w["id"], w["code"]) for w in sites] == [(0, "admin"), (1, "base")]
    configs = client.get(
        "/rest/V1/store/storeConfigs", params={"storeCodes[]": ["fr", "de"]}
    ).json()
    assert [(c["code"], c["locale"]) for c in configs] == [("fr", "fr_FR"), ("de", "de_DE")]
    assert configs[0]["base_url"] == "http://magento.test/"
    groups = client.get("/rest/V1/store/storeGroups").json()
    assert groups[1]["root_category_id"] == 2


def test_custom_store_topology():
    from pimsync.testing.fake_magento import StoreView

    fake = FakeMagento(
        consumer=False,
        stores=("default", StoreView("nl", website="benelux", locale="nl_NL")),
    )
    with httpx.Client(transport=httpx.MockTransport(fake), base_url="http://m", headers=AUTH) as c:
        views = c.get("/rest/V1/store/storeViews").json()
        assert [(v["code"], v["website_id"]) for v in views] == [
            ("admin", 0),
            ("default", 1),
            ("nl", 2),
        ]
        assert c.get("/rest/fr/V1/products/A").status_code == 404  # fr no longer exists
        r = c.post("/rest/nl/V1/products", json=product("A"))
        assert r.json()["extension_attributes"]["website_ids"] == [2]
        assert c.post("/rest/all/V1/products", json=product("B")).json()["extension_attributes"][
            "website_ids"
        ] == [1, 2]


# --- a model of the fallback rules -----------------------------------------------------------

STORE_FIELDS = {"name": "store", "price": "global", "status": "website"}
SCOPES = ["all", None, "default", "fr", "de"]  # None: plain /rest/V1 (the default store view)
STORE_IDS = {"default": "default", None: "default", "fr": "fr", "de": "de"}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(SCOPES),
            st.sampled_from(sorted(STORE_FIELDS)),
            st.integers(min_value=1, max_value=2),
        ),
        max_size=8,
    )
)
@settings(max_examples=40, deadline=None)
def test_updates_follow_the_fallback_model(writes):
    """Random updates through any scope; every store view reads what the rules predict."""
    fake = FakeMagento(consumer=False)
    fake.add_product({"sku": "A", "name": "n0", "attribute_set_id": 4, "price": 1, "status": 1})
    glob: dict[str, Any] = {"name": "n0", "price": 1, "status": 1}
    over: dict[str, dict[str, Any]] = {"default": {}, "fr": {}, "de": {}}
    with httpx.Client(transport=httpx.MockTransport(fake), base_url="http://m", headers=AUTH) as c:
        for scope, field, value in writes:
            sent = f"n{value}" if field == "name" else value
            prefix = "/rest/V1" if scope is None else f"/rest/{scope}/V1"
            r = c.put(f"{prefix}/products/A", json={"product": {"sku": "A", field: sent}})
            assert r.status_code == 200
            kind = STORE_FIELDS[field]
            if scope == "all" or kind == "global":
                glob[field] = sent
            elif kind == "website":
                for store in over:
                    over[store][field] = sent
            else:
                over[STORE_IDS[scope]][field] = sent
        for store, values in over.items():
            seen = fake.product("A", store)
            assert seen is not None
            assert {f: seen[f] for f in STORE_FIELDS} == {**glob, **values}
        admin = fake.product("A")
        assert admin is not None
        assert {f: admin[f] for f in STORE_FIELDS} == glob
