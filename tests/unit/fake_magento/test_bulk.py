"""FakeMagento: async bulk (accept, consume, status), fault injection and request statistics."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from pimsync.testing.fake_magento import (
    COMPLETE,
    NOT_RETRIABLY_FAILED,
    OPEN,
    RETRIABLY_FAILED,
    FakeMagento,
)
from tests.unit.fake_magento.conftest import AUTH, product

SUCCESS = "Service execution success Magento\\Catalog\\Model\\ProductRepository\\Interceptor::save"


def statuses(client: httpx.Client, bulk_uuid: str) -> dict[int, tuple[int, str | None]]:
    body = client.get(f"/rest/V1/bulk/{bulk_uuid}/status").json()
    return {op["id"]: (op["status"], op["result_message"]) for op in body["operations_list"]}


# --- bulk ----------------------------------------------------------------------------------


def test_bulk_end_to_end(fm, client):
    items = [product("A", name="Same"), product("B"), product("C", name="Same")]
    r = client.post("/rest/all/async/bulk/V1/products", json=items)
    assert r.status_code == 202
    accepted = r.json()
    assert accepted["errors"] is False
    assert [(i["id"], i["status"]) for i in accepted["request_items"]] == [
        (0, "accepted"),
        (1, "accepted"),
        (2, "accepted"),
    ]
    assert all(len(i["data_hash"]) == 64 for i in accepted["request_items"])
    uuid = accepted["bulk_uuid"]
    # Nothing is validated or saved before the consumer runs.
    assert fm.products == {}
    assert statuses(client, uuid) == {0: (OPEN, None), 1: (OPEN, None), 2: (OPEN, None)}
    assert client.get(f"/rest/V1/bulk/{uuid}/operation-status/{OPEN}").json() == 3

    assert fm.drain() == 3
    assert statuses(client, uuid) == {
        0: (COMPLETE, SUCCESS),
        1: (COMPLETE, SUCCESS),
        2: (NOT_RETRIABLY_FAILED, "URL key for specified store already exists."),
    }
    assert client.get(f"/rest/V1/bulk/{uuid}/operation-status/{COMPLETE}").json() == 2
    assert sorted(fm.products) == ["A", "B"]
    assert fm.writes_by_sku == {"A": 1, "B": 1, "C": 1}

    summary = client.get(f"/rest/V1/bulk/{uuid}/status").json()
    assert summary["bulk_id"] == uuid
    assert summary["operation_count"] == 3
    assert summary["description"] == (
        "Topic async.magento.catalog.api.productrepositoryinterface.save.post"
    )
    detailed = client.get(f"/rest/V1/bulk/{uuid}/detailed-status").json()["operations_list"]
    ok, failed = detailed[0], detailed[2]
    assert ok["topic_name"] == "async.magento.catalog.api.productrepositoryinterface.save.post"
    assert ok["serialized_data"] is None  # kept only for failures
    assert json.loads(ok["result_serialized_data"])["sku"] == "A"
    assert failed["error_code"] == 0
    assert failed["result_serialized_data"] is None
    meta = json.loads(json.loads(failed["serialized_data"])["meta_information"])
    assert meta == items[2]


def test_bulk_put_by_sku_in_a_store_scope(fm, client):
    fm.add_product({"sku": "A", "name": "Shirt", "attribute_set_id": 4, "price": 1})
    r = client.put(
        "/rest/fr/async/bulk/V1/products/bySku",
        json=[{"sku": "A", "product": {"sku": "A", "name": "Chemise"}}],
    )
    assert r.status_code == 202
    fm.drain()
    assert fm.product_overrides("A") == {"fr": {"name": "Chemise"}}
    desc = fm.bulk_status(r.json()["bulk_uuid"])["description"]
    assert desc == "Topic async.magento.catalog.api.productrepositoryinterface.save.put"


def test_bulk_child_links_and_async_single(fm, client):
    fm.add_attribute("size", options=["S"])
    size = fm.attribute_options("size")["S"]
    fm.add_product({"sku": "P", "name": "P", "attribute_set_id": 4, "type_id": "configurable"})
    fm.add_product(
        {
            "sku": "P-S",
            "name": "P-S",
            "attribute_set_id": 4,
            "price": 1,
            "visibility": 1,
            "custom_attributes": [{"attribute_code": "size", "value": size}],
        }
    )
    option = {
        "option": {
            "attribute_id": fm.attributes["size"]["attribute_id"],
            "label": "Size",
            "values": [{"value_index": size}],
        }
    }
    r = client.post("/rest/all/async/V1/configurable-products/P/options", json=option)
    assert r.status_code == 202
    assert [i["id"] for i in r.json()["request_items"]] == [0]
    r = client.post(
        "/rest/all/async/bulk/V1/configurable-products/bySku/child",
        json=[{"sku": "P", "childSku": "P-S"}, {"sku": "P", "childSku": "P-S"}],
    )
    fm.drain()
    assert fm.configurable_children("P") == ["P-S"]
    assert statuses(client, r.json()["bulk_uuid"])[1] == (
        NOT_RETRIABLY_FAILED,
        "The product is already attached.",
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "expected"),
    [
        (
            "POST",
            "/rest/all/async/bulk/V1/products",
            [{"sku": "A"}],
            400,
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "product"},
            },
        ),
        (
            "PUT",
            "/rest/all/async/bulk/V1/products/bySku",
            [{"product": {"sku": "A"}}],
            400,
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "sku"},
            },
        ),
        (
            "PUT",
            "/rest/all/async/bulk/V1/products/A",
            [product("A")],
            404,
            {"message": "Request does not match any route."},
        ),
        (
            "GET",
            "/rest/all/async/bulk/V1/products",
            None,
            404,
            {"message": "Request does not match any route."},
        ),
    ],
)
def test_bulk_requests_that_fail_before_scheduling(
    fm, client, method, path, body, status, expected
):
    r = client.request(method, path, json=body)
    assert (r.status_code, r.json()) == (status, expected)
    assert fm.bulk_uuids == []


def test_unknown_bulk_uuid(client):
    r = client.get("/rest/V1/bulk/nope/status")
    assert (r.status_code, r.json()) == (
        404,
        {"message": "Bulk uuid %bulkUuid not exist", "parameters": {"bulkUuid": "nope"}},
    )
    assert client.get("/rest/V1/bulk/nope/operation-status/4").json() == 0


def test_stuck_bulk_stays_open_until_released(fm, client):
    fm.stick_bulk = True
    uuid = client.post("/rest/all/async/bulk/V1/products", json=[product("A")]).json()["bulk_uuid"]
    assert fm.drain() == 0
    assert statuses(client, uuid) == {0: (OPEN, None)}
    assert fm.pending_operations() == 1
    fm.stick_bulk = False
    assert fm.drain() == 1
    assert statuses(client, uuid)[0][0] == COMPLETE


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_background_consumer_completes_bulks_and_respects_stick():
    with FakeMagento(stick_bulk=True) as fake:
        transport = httpx.MockTransport(fake)
        with httpx.Client(transport=transport, base_url="http://m", headers=AUTH) as c:
            items = [product(f"S{i}") for i in range(20)]
            uuid = c.post("/rest/all/async/bulk/V1/products", json=items).json()["bulk_uuid"]
            time.sleep(0.05)
            assert c.get(f"/rest/V1/bulk/{uuid}/operation-status/{OPEN}").json() == 20
            fake.stick_bulk = False
            assert wait_for(
                lambda: c.get(f"/rest/V1/bulk/{uuid}/operation-status/{COMPLETE}").json() == 20
            )
            assert fake.product_count() == 20


def test_rejected_sku_sync_bulk_and_at_accept(fm, client):
    fm.reject_sku("BAD", message='Attribute "%1" is broken.', parameters=["color"])
    r = client.post("/rest/all/V1/products", json=product("BAD"))
    assert (r.status_code, r.json()) == (
        400,
        {"message": 'Attribute "%1" is broken.', "parameters": ["color"]},
    )
    uuid = client.post(
        "/rest/all/async/bulk/V1/products", json=[product("OK"), product("bad")]
    ).json()["bulk_uuid"]
    fm.drain()
    assert statuses(client, uuid)[1] == (NOT_RETRIABLY_FAILED, 'Attribute "color" is broken.')

    fm.reject_sku("BAD", message="Cannot schedule.", on_accept=True)
    r = client.post("/rest/all/async/bulk/V1/products", json=[product("OK2"), product("BAD")])
    assert r.status_code == 202
    body = r.json()
    assert body["errors"] is True
    assert body["request_items"][1] == {
        "id": 1,
        "data_hash": None,
        "status": "rejected",
        "error_message": "Cannot schedule.",
        "error_code": 0,
    }
    fm.drain()
    assert list(statuses(client, body["bulk_uuid"])) == [0]  # only accepted items are operations


# --- faults --------------------------------------------------------------------------------


def test_deadlock_answers_like_the_repository_and_saves_nothing(fm, client):
    fm.deadlock_ratio = 1.0
    r = client.post("/rest/all/V1/products", json=product("A"))
    assert (r.status_code, r.json()) == (
        400,
        {"message": "Database deadlock found when trying to get lock"},
    )
    r = client.post("/rest/all/V1/categories", json={"category": {"name": "X"}})
    assert r.json()["message"] == "Could not save category: %1"
    assert "Deadlock" in r.json()["parameters"][0]
    assert client.get("/rest/all/V1/products/A").status_code == 404  # reads are unaffected
    assert fm.writes_by_sku == {}
    uuid = client.post("/rest/all/async/bulk/V1/products", json=[product("A")]).json()["bulk_uuid"]
    fm.drain()
    # Magento files the wrapped deadlock under status 3: retry on the message, not the status.
    assert statuses(client, uuid)[0] == (
        NOT_RETRIABLY_FAILED,
        "Database deadlock found when trying to get lock",
    )
    fm.deadlock_ratio = 0.0
    fm.faults.bulk_retry_ratio = 1.0
    uuid = client.post("/rest/all/async/bulk/V1/products", json=[product("A")]).json()["bulk_uuid"]
    fm.drain()
    detailed = client.get(f"/rest/V1/bulk/{uuid}/detailed-status").json()["operations_list"][0]
    assert (detailed["status"], detailed["error_code"]) == (RETRIABLY_FAILED, 40001)
    assert detailed["result_message"].startswith("SQLSTATE[40001]")


def test_fail_next_statuses_and_bodies(fm, client):
    fm.fail_next(2, 503, retry_after=2)
    for _ in range(2):
        r = client.get("/rest/V1/categories/2")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["Retry-After"] == "2"
    assert client.get("/rest/V1/categories/2").status_code == 200
    fm.fail_next(1, 500)
    r = client.get("/rest/V1/categories/2")
    assert r.status_code == 500
    assert r.json()["message"].startswith(
        "Internal Error. Details are available in Magento log file"
    )
    fm.fail_next(1, 429)
    assert client.get("/rest/V1/categories/2").json() == {
        "message": "Too Many Requests",
        "trace": None,
    }
    fm.fail_next(1, 400, message="Database lock wait timeout exceeded")
    assert client.post("/rest/all/V1/products", json=product("A")).json() == {
        "message": "Database lock wait timeout exceeded"
    }
    assert fm.products == {}


def test_dropped_connection_is_a_transport_error(fm, client):
    fm.drop_next()
    with pytest.raises(httpx.TransportError):
        client.get("/rest/V1/categories/2")
    assert client.get("/rest/V1/categories/2").status_code == 200


def test_error_ratio_is_seeded_and_reproducible():
    def run(seed: int) -> list[int]:
        fake = FakeMagento(consumer=False, seed=seed, error_ratio=0.5)
        with httpx.Client(
            transport=httpx.MockTransport(fake), base_url="http://m", headers=AUTH
        ) as c:
            return [c.get("/rest/V1/categories/2").status_code for _ in range(40)]

    first = run(7)
    assert first == run(7)
    assert 200 in first
    assert set(first) - {200} <= {500, 502, 503}
    assert len(set(first)) > 1


def test_error_body_with_200_saves_nothing(fm, client):
    fm.error_body_ratio = 1.0
    r = client.post("/rest/all/V1/products", json=product("A"))
    assert r.status_code == 200
    assert r.json() == {"message": "The product was unable to be saved. Please try again."}
    assert fm.products == {}


def test_latency_and_concurrent_saves_from_threads(fm):
    fm.latency = 0.01
    transport = httpx.MockTransport(fm)
    errors: list[int] = []

    def push(start: int) -> None:
        with httpx.Client(transport=transport, base_url="http://m", headers=AUTH) as c:
            for i in range(start, start + 10):
                r = c.post("/rest/all/V1/products", json=product(f"T{i}"))
                if r.status_code != 200:
                    errors.append(r.status_code)

    started = time.perf_counter()
    threads = [threading.Thread(target=push, args=(n * 10,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 0.01  # latency is applied (a loose lower bound)
    assert errors == []
    assert fm.product_count() == 40
    assert set(fm.writes_by_sku.values()) == {1}
    assert len({p["id"] for p in fm.products.values()}) == 40


def test_request_statistics(fm, client):
    client.post("/rest/all/V1/products", json=product("A"))
    client.put("/rest/fr/V1/products/A", json={"product": {"sku": "A", "name": "Fr"}})
    client.get("/rest/V1/products/A")
    client.get("/rest/xx/V1/products/A")
    assert fm.request_count() == 4
    assert fm.request_count("PUT") == 1
    assert fm.request_count(path="/V1/products/*") == 2
    assert fm.request_count("GET", store=None) == 2  # plain /rest/V1 and the unknown "xx"
    assert fm.request_count("GET", "/V1/*", store=None) == 1
    assert fm.request_count(store="fr") == 1
    assert fm.requests[1] == ("PUT", "/V1/products/A", "fr")
    assert fm.requests[3].path == "/xx/V1/products/A"  # an unknown store stays in the path
    assert fm.writes_by_sku == {"A": 2}
    fm.reset_stats()
    assert (fm.request_count(), fm.writes_by_sku, list(fm.requests)) == (0, {}, [])
    assert fm.internal_errors == []


def test_clear_faults(fm, client):
    fm.error_ratio = 1.0
    fm.revoke_token()
    fm.reject_sku("A")
    fm.fail_next(5)
    fm.clear_faults()
    assert client.post("/rest/all/V1/products", json=product("A")).status_code == 200


def test_dropped_connection_also_closes_the_loopback_servers_socket(monkeypatch, fm, client):
    """With ``pimsync.testing.server`` present, the error is its DropConnection *and* httpx's."""
    import sys
    import types

    class DropConnection(Exception):
        pass

    module = types.ModuleType("pimsync.testing.server")
    module.DropConnection = DropConnection  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pimsync.testing.server", module)
    fm.drop_next()
    with pytest.raises(DropConnection) as caught:
        client.get("/rest/V1/categories/2")
    assert isinstance(caught.value, httpx.TransportError)


def test_bulk_operation_search(fm, client):
    client.post("/rest/all/async/bulk/V1/products", json=[product("A"), product("B", name="")])
    fm.drain()
    params = {
        "searchCriteria[filter_groups][0][filters][0][field]": "status",
        "searchCriteria[filter_groups][0][filters][0][value]": str(NOT_RETRIABLY_FAILED),
    }
    found = client.get("/rest/V1/bulk", params=params).json()
    assert found["total_count"] == 1
    assert found["items"][0]["result_message"] == (
        'The "Product Name" attribute value is empty. Set the attribute and try again.'
    )
