"""MagentoClient against FakeMagento under httpx.MockTransport (and once on loopback)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from pimsync.config import MagentoConfig
from pimsync.errors import MagentoError
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected, classify_response, render_message
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.server import serve

TOKEN = "magento-token"
SETTINGS = MagentoConfig(base_url="http://magento.test", token=TOKEN)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def fm():
    fake = FakeMagento(consumer=False)
    yield fake
    fake.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(
    handler: Handler, sleeps: list[float] | None = None, settings: MagentoConfig = SETTINGS
) -> MagentoClient:
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return MagentoClient.from_config(settings, httpx.MockTransport(handler), sleep=record)


@pytest.fixture
def client(fm, sleeps):
    with make_client(fm, sleeps) as c:
        yield c


class Spy:
    """A handler that keeps every request, then lets `answer` (the fake, usually) answer it."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.answer(request)


def product(sku: str, **fields) -> dict[str, Any]:
    return {"sku": sku, "name": f"Product {sku}", "attribute_set_id": 4, "price": 10, **fields}


def media_entry(label: str = "Front", name: str = "front.png") -> dict[str, Any]:
    return {
        "media_type": "image",
        "label": label,
        "position": 1,
        "disabled": False,
        "types": ["image"],
        "content": {"base64_encoded_data": PNG, "type": "image/png", "name": name},
    }


# --- construction ------------------------------------------------------------------------------


def test_from_config_names_the_missing_setting():
    with pytest.raises(MagentoError, match=r"\[magento\] base_url") as missing_url:
        MagentoClient.from_config(MagentoConfig(token=TOKEN))
    assert missing_url.value.exit_code == 4
    with pytest.raises(MagentoError, match=r"\[magento\] token"):
        MagentoClient.from_config(MagentoConfig(base_url="http://magento.test"))


def test_bearer_header_and_store_scoped_urls(fm):
    spy = Spy(fm)
    with make_client(spy) as c:
        c.save_product(product("A"))
        c.get_product("A", store="fr")
    seen = spy.seen
    assert [r.headers["Authorization"] for r in seen] == [f"Bearer {TOKEN}"] * 2
    assert [r.url.path for r in seen] == ["/rest/all/V1/products/A", "/rest/fr/V1/products/A"]
    assert TOKEN not in repr(c)


@pytest.mark.parametrize(
    "base_url",
    ["http://magento.test/shop", "http://magento.test/shop/", "http://magento.test/shop/rest/V1"],
)
def test_paths_join_a_base_url_with_a_path_as_httpx_does(fm, base_url):
    """Sender joins paths to the base URL itself; a shop under a folder keeps its folder."""

    def unprefixed(request: httpx.Request) -> httpx.Response:
        url = str(request.url).replace("/shop", "", 1)
        answer: httpx.Response = fm(
            httpx.Request(request.method, url, headers=request.headers, content=request.content)
        )
        return answer

    spy = Spy(unprefixed)
    settings = SETTINGS.model_copy(update={"base_url": base_url})
    with make_client(spy, settings=settings) as c:
        c.save_product(product("AB/12 x?"))
        assert c.get_product("AB/12 x?", store="fr") is not None
        c.attribute_groups(4)
    seen = spy.seen
    assert seen[0].url.raw_path == b"/shop/rest/all/V1/products/AB%2F12%20x%3F"
    assert seen[0].url.host == "magento.test"
    assert seen[1].url.raw_path == b"/shop/rest/fr/V1/products/AB%2F12%20x%3F"
    assert seen[2].url.path == "/shop/rest/all/V1/products/attribute-sets/groups/list"
    assert seen[2].url.params["searchCriteria[filter_groups][0][filters][0][value]"] == "4"


def test_a_cookie_magento_sets_is_sent_back_and_none_is_invented(fm):
    """The jar skips answers without Set-Cookie (for speed) and still keeps what one sets."""

    def sets_a_cookie_once(request: httpx.Request) -> httpx.Response:
        answer: httpx.Response = fm(request)
        if len(spy.seen) == 2:
            answer.headers["Set-Cookie"] = "PHPSESSID=abc; Path=/"
        return answer

    spy = Spy(sets_a_cookie_once)
    with make_client(spy) as c:
        c.save_product(product("A"))
        c.save_product(product("B"))
        c.save_product(product("C"))
    assert [r.headers.get("Cookie") for r in spy.seen] == [None, None, "PHPSESSID=abc"]


def test_pool_allows_concurrency_connections():
    settings = SETTINGS.model_copy(update={"concurrency": 40})
    with MagentoClient.from_config(settings) as c:
        pool = c.http._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 40
        assert pool._max_keepalive_connections == 40


# --- stores and attribute sets ---------------------------------------------------------------


def test_store_views_and_websites_skip_admin(client):
    assert [(s.code, s.id, s.website_id) for s in client.store_views()] == [
        ("default", 1, 1),
        ("fr", 2, 1),
        ("de", 3, 1),
    ]
    assert [(w.code, w.id) for w in client.websites()] == [("base", 1)]


def test_attribute_sets_groups_and_assignment(fm, client):
    assert client.attribute_sets() == {"Default": 4}
    set_id = client.create_attribute_set("Shoes")
    assert client.attribute_sets() == {"Default": 4, "Shoes": set_id}
    # A second create of the same name (a retried run) answers the existing set.
    assert client.create_attribute_set("shoes") == set_id
    groups = client.attribute_groups(set_id)
    assert groups == fm.attribute_sets[set_id]["groups"]
    fm.add_attribute("shoe_size", options=["38"], attribute_set_id=None)
    client.assign_attribute(set_id, groups["Product Details"], "shoe_size", 10)
    client.assign_attribute(set_id, groups["Product Details"], "shoe_size", 10)
    assert "shoe_size" in fm.attribute_sets[set_id]["attribute_codes"]


def test_assign_attribute_already_assigned_answer_is_success(fm):
    def already(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/attribute-sets/attributes"):
            return httpx.Response(400, json={"message": "The attribute is already assigned."})
        answer: httpx.Response = fm(request)
        return answer

    with make_client(already) as c:
        c.assign_attribute(4, 7, "color")  # no exception
    with make_client(fm) as c, pytest.raises(ItemRejected, match="doesn't exist"):
        c.assign_attribute(4, 999_999, "color")


# --- attributes and options ------------------------------------------------------------------


def test_attribute_create_update_and_existing_create(fm, client):
    assert client.get_attribute("fabric") is None
    payload = {
        "attribute_code": "fabric",
        "frontend_input": "select",
        "default_frontend_label": "Fabric",
        "scope": "global",
        "is_required": False,
        "frontend_labels": [{"store_id": 2, "label": "Tissu"}],
    }
    created = client.save_attribute(payload, exists=False)
    assert created["attribute_code"] == "fabric"
    updated = client.save_attribute({**payload, "default_frontend_label": "Cloth"}, exists=True)
    assert updated["default_frontend_label"] == "Cloth"
    # exists=False for an attribute that is there (a stale cache) still updates it.
    client.save_attribute({**payload, "default_frontend_label": "Textile"}, exists=False)
    assert fm.attributes["fabric"]["default_frontend_label"] == "Textile"
    assert client.get_attribute("fabric")["attribute_id"] == created["attribute_id"]


@pytest.mark.parametrize("shape", ["id", "id_new_option", "true"])
def test_add_option_accepts_every_return_shape(shape):
    with FakeMagento(consumer=False, option_add_result=shape) as fake:
        fake.add_attribute("size", options=["S"])
        with make_client(fake) as c:
            option_id = c.add_option("size", {"label": "M", "sort_order": 2})
            assert option_id == fake.attribute_options("size")["M"]
            assert [o["label"] for o in c.attribute_options("size")] == ["S", "M"]


def test_add_option_existing_label_and_update(fm, client):
    fm.add_attribute("size", options=["S"])
    existing = fm.attribute_options("size")["S"]
    assert client.add_option("size", {"label": "s"}) == existing  # duplicate label: same option
    options = client.attribute_options("size")
    assert all(o["value"] != "" for o in options)  # the blank first option is dropped
    client.update_option("size", existing, {"label": "Small"})
    assert fm.attribute_options("size") == {"Small": existing}
    route_miss = httpx.Response(404, json={"message": "Request does not match any route."})
    with make_client(lambda _r: route_miss) as old, pytest.raises(ItemRejected, match=r"2\.4\.7"):
        old.update_option("size", existing, {"label": "Small"})  # Magento before 2.4.7
    with pytest.raises(ItemRejected, match="doesn't work with options") as rejected:
        client.add_option("description", {"label": "x"})
    assert rejected.value.status == 400


# --- categories ------------------------------------------------------------------------------


def test_categories_create_update_in_store_move_get(fm, client):
    shoes = client.create_category({"parent_id": 2, "name": "Shoes", "is_active": True})
    boots = client.create_category({"parent_id": 2, "name": "Boots"})
    assert fm.category(shoes["id"])["name"] == "Shoes"
    client.update_category(shoes["id"], {"name": "Chaussures"}, "fr")
    assert fm.category(shoes["id"])["name"] == "Shoes"  # the global value is untouched
    assert fm.category_overrides(shoes["id"])["fr"]["name"] == "Chaussures"
    client.move_category(boots["id"], shoes["id"])
    assert client.get_category(boots["id"])["parent_id"] == shoes["id"]
    assert client.get_category(shoes["id"], store="fr")["name"] == "Chaussures"
    assert client.get_category(99_999) is None


def test_create_category_after_a_lost_answer_does_not_duplicate(fm):
    lost = {"n": 0}

    def loses_first_answer(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = fm(request)
        if request.method == "POST" and request.url.path.endswith("/categories") and not lost["n"]:
            lost["n"] += 1
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        return response

    with make_client(loses_first_answer) as c:
        created = c.create_category({"parent_id": 2, "name": "Sale"})
    assert [k for k, v in fm.categories.items() if v["name"] == "Sale"] == [created["id"]]


# --- products --------------------------------------------------------------------------------


def test_save_product_scopes(fm, client):
    saved = client.save_product(product("A"))
    assert saved["sku"] == "A"
    client.save_product({"sku": "A", "name": "Produit A"}, store="fr")
    assert fm.product("A")["name"] == "Product A"  # `all` wrote the global value
    assert fm.product_overrides("A") == {"fr": {"name": "Produit A"}}
    client.save_product({"sku": "A", "name": "Product A2"})
    assert fm.product("A")["name"] == "Product A2"
    assert fm.product("A", store="fr")["name"] == "Produit A"
    assert fm.product_overrides("A") == {"fr": {"name": "Produit A"}}


def test_save_product_encodes_sku_and_sends_it_in_the_body(fm):
    spy = Spy(fm)
    with make_client(spy) as c:
        c.save_product(product("AB/12 x?"))
    seen = spy.seen
    assert seen[0].url.raw_path == b"/rest/all/V1/products/AB%2F12%20x%3F"
    assert orjson.loads(seen[0].content)["product"]["sku"] == "AB/12 x?"
    assert "AB/12 x?" in fm.products


def test_get_delete_disable_product(fm, client):
    assert client.get_product("missing") is None
    client.save_product(product("A"))
    client.disable_product("A")
    assert fm.product("A")["status"] == 2
    client.disable_product("never-synced")  # nothing to disable, nothing created
    assert "never-synced" not in fm.products
    client.delete_product("A")
    client.delete_product("A")  # already gone
    assert fm.products == {}


# --- configurable products -------------------------------------------------------------------


def configurable_family(fm: FakeMagento) -> tuple[int, int]:
    size = fm.add_attribute("size", options=["S", "M"])
    small = fm.attribute_options("size")["S"]
    fm.add_product(product("P", type_id="configurable", price=None))
    fm.add_product(product("P-S", custom_attributes=[{"attribute_code": "size", "value": small}]))
    return int(size["attribute_id"]), small


def test_configurable_option_and_children(fm, client):
    attribute_id, small = configurable_family(fm)
    option = {
        "attribute_id": str(attribute_id),
        "label": "Size",
        "position": 0,
        "values": [{"value_index": small}],
    }
    option_id = client.add_configurable_option("P", option)
    assert client.add_configurable_option("P", option) == option_id  # already there
    assert [o["id"] for o in client.configurable_options("P")] == [option_id]
    client.add_child("P", "P-S")
    client.add_child("P", "P-S")  # "The product is already attached." is success
    assert client.children("P") == ["P-S"]
    assert fm.configurable_children("P") == ["P-S"]
    with pytest.raises(ItemRejected, match="doesn't exist"):
        client.add_child("P", "nope")


# --- media -----------------------------------------------------------------------------------


def test_media_add_list_delete(fm, client):
    client.save_product(product("A"))
    entry_id = client.add_media("A", media_entry())
    assert [(e["id"], e["label"]) for e in client.media("A")] == [(entry_id, "Front")]
    client.delete_media("A", entry_id)
    client.delete_media("A", entry_id)  # already gone
    assert fm.media("A") == []


@pytest.mark.parametrize("failure", ["drop", "502"])
def test_add_media_after_a_lost_answer_checks_the_gallery(fm, failure):
    posts = {"n": 0}

    def saves_then_fails(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = fm(request)
        if request.method == "POST" and request.url.path.endswith("/media"):
            posts["n"] += 1
            if posts["n"] == 1:
                if failure == "drop":
                    raise httpx.ReadTimeout("timed out", request=request)
                return httpx.Response(502, text="<html>Bad Gateway</html>")
        return response

    fm.add_product(product("A"))
    fm.add_product(product("B"))
    with make_client(saves_then_fails) as c:
        entry_id = c.add_media("A", media_entry(label="Side", name="side.png"))
        posts["n"] = 0  # without a label, the file name (with Magento's suffix) identifies it
        other = c.add_media("B", media_entry(label="", name="side.png"))
    assert posts["n"] == 1
    assert [(e["id"], e["file"]) for e in fm.media("B")] == [(other, "/s/i/side_1.png")]
    assert posts["n"] == 1  # never posted twice
    assert [e["id"] for e in fm.media("A")] == [entry_id]


def test_add_media_retries_when_the_image_did_not_land(fm, sleeps):
    fm.add_product(product("A"))
    fm.fail_next(1, 503)  # refused before Magento saw it: the gallery is empty, so post again
    with make_client(fm, sleeps) as c:
        entry_id = c.add_media("A", media_entry())
    assert [e["id"] for e in fm.media("A")] == [entry_id]
    assert fm.request_count("POST", "/V1/products/A/media") == 2
    assert len(sleeps) == 1


# --- errors and retries ----------------------------------------------------------------------


def test_401_stops_the_run_without_leaking_the_token(fm, client):
    fm.revoke_token()
    with pytest.raises(MagentoError) as stopped:
        client.save_product(product("A"))
    message = str(stopped.value)
    assert stopped.value.exit_code == 4
    assert "Magento answered 401" in message
    assert "Magento_Catalog::products" in message  # the %resources parameter, rendered
    assert "check [magento] token" in message
    assert "enable_integration_as_bearer" in message
    assert TOKEN not in message and TOKEN not in repr(stopped.value)
    assert fm.request_count() == 1  # not retried


def test_unknown_route_or_store_names_base_url(client):
    with pytest.raises(MagentoError, match=r"check \[magento\] base_url") as stopped:
        client.get_product("A", store="nl")
    assert "Request does not match any route." in str(stopped.value)


def test_deadlock_is_retried_then_succeeds(fm, client, sleeps):
    fm.fail_next(2, 400, message="Database deadlock found when trying to get lock")
    client.save_product(product("A"))
    assert fm.writes_by_sku["A"] == 1
    assert len(sleeps) == 2 and all(0 < s <= 30 for s in sleeps)


def test_deadlock_from_the_fake_save_path_is_retried(fm, client):
    fm.deadlock_ratio = 0.5
    for i in range(20):
        client.save_product(product(f"D{i}"))
    assert fm.product_count() == 20


def test_validation_error_is_item_rejected_with_rendered_message(client):
    with pytest.raises(ItemRejected) as rejected:
        client.save_product({"sku": "A", "attribute_set_id": 4, "price": 1})
    assert rejected.value.status == 400
    assert rejected.value.message == (
        'The "Product Name" attribute value is empty. Set the attribute and try again.'
    )


def test_retry_after_is_honoured(fm, client, sleeps):
    fm.fail_next(1, 429, retry_after=7)
    client.save_product(product("A"))
    assert sleeps == [7.0]


def test_exhausted_retries_stop_the_run(fm, sleeps):
    fm.fail_next(3, 503)
    settings = SETTINGS.model_copy(update={"max_attempts": 3})  # [magento] max_attempts
    with make_client(fm, sleeps, settings) as c, pytest.raises(MagentoError) as stopped:
        c.save_product(product("A"))
    assert str(stopped.value).startswith("Magento unavailable: answered 503")
    assert "after 3 attempts" in str(stopped.value)
    assert len(sleeps) == 2


def test_error_body_in_a_200_is_not_success(fm, client):
    fm.error_body_ratio = 1.0
    with pytest.raises(ItemRejected, match="unable to be saved") as rejected:
        client.save_product(product("A"))
    assert rejected.value.status == 200
    assert fm.products == {}


def test_html_200_is_retried(fm, client):
    answered = {"n": 0}

    def maintenance_once(request: httpx.Request) -> httpx.Response:
        answered["n"] += 1
        if answered["n"] == 1:
            return httpx.Response(200, html="<html><body>Maintenance</body></html>")
        answer: httpx.Response = fm(request)
        return answer

    with make_client(maintenance_once) as c:
        assert c.save_product(product("A"))["sku"] == "A"


def test_classify_response_shapes():
    request = httpx.Request("PUT", "http://m.test/rest/all/V1/products/A")
    ok = httpx.Response(200, json={"sku": "A"}, request=request)
    assert classify_response(ok) == {"sku": "A"}
    assert classify_response(httpx.Response(200, json=True, request=request)) is True
    error_200 = httpx.Response(200, json={"message": "Could not save %1", "parameters": ["A"]})
    error_200.request = request
    with pytest.raises(ItemRejected, match="Could not save A"):
        classify_response(error_200)
    html_404 = httpx.Response(404, html="<html>Not Found</html>", request=request)
    with pytest.raises(MagentoError, match="base_url"):
        classify_response(html_404)
    too_big = httpx.Response(413, html="<html>Too Large</html>", request=request)
    with pytest.raises(ItemRejected, match="413 Request Entity Too Large"):
        classify_response(too_big)


# --- render_message --------------------------------------------------------------------------


def test_render_message_positional_and_named():
    assert (
        render_message({"message": "Invalid product data: %1", "parameters": ["bad set"]})
        == "Invalid product data: bad set"
    )
    named = {
        "message": "No such entity with %fieldName = %fieldValue",
        "parameters": {"fieldName": "id", "fieldValue": 99},
    }
    assert render_message(named) == "No such entity with id = 99"
    ten = {"message": "%1 and %10", "parameters": list("abcdefghij")}
    assert render_message(ten) == "a and j"  # %10 is not %1 followed by "0"
    assert render_message({"message": "flag %1 %2", "parameters": [True, None]}) == "flag 1 "
    nested = {
        "message": "One or more input exceptions have occurred.",
        "errors": [
            {"message": "Option label is not specified."},
            {"message": '"%fieldName" is required.', "parameters": {"fieldName": "values"}},
        ],
    }
    assert render_message(nested) == (
        "One or more input exceptions have occurred. "
        '[Option label is not specified.; "values" is required.]'
    )
    assert render_message({"message": "No parameters %1"}) == "No parameters %1"


# --- concurrency -----------------------------------------------------------------------------


def test_shared_client_from_threads(fm, client):
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: client.save_product(product(f"T{i}")), range(40)))
    assert fm.product_count() == 40
    assert client.for_worker() is client  # an injected transport is the only pool


def test_workers_have_their_own_pools_on_loopback():
    with FakeMagento(consumer=False) as fake, serve(fake) as url:
        settings = MagentoConfig(base_url=url, token=TOKEN, concurrency=4)
        root = MagentoClient.from_config(settings, sleep=lambda _s: None)
        workers = [root.for_worker() for _ in range(4)]
        assert len({id(w.http) for w in [root, *workers]}) == 5
        assert workers[0]._shared is root._shared  # locks and pending bulks are shared
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: workers[i % 4].save_product(product(f"W{i}")), range(20)))
        assert fake.product_count() == 20
        root.close()
        assert all(w.http.is_closed for w in workers)
