"""Bulk submit and wait: against FakeMagento, and the index mapping on hand-made answers."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from pimsync.config import MagentoConfig
from pimsync.magento import bulk
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected, is_lock_message
from pimsync.magento.models import BulkItem
from pimsync.testing.fake_magento import FakeMagento

SETTINGS = MagentoConfig(base_url="http://magento.test", token="magento-token")


@pytest.fixture
def fm():
    fake = FakeMagento(consumer=False)
    yield fake
    fake.close()


def make_client(handler, sleep=lambda _s: None) -> MagentoClient:
    return MagentoClient.from_config(SETTINGS, httpx.MockTransport(handler), sleep=sleep)


def item(sku: str, **fields) -> dict[str, Any]:
    body = {"sku": sku, "name": f"Product {sku}", "attribute_set_id": 4, "price": 10, **fields}
    return {"product": body}


def test_submit_then_wait_with_the_consumer_draining(fm):
    polls: list[float] = []

    def drain_on_sleep(seconds: float) -> None:
        polls.append(seconds)
        fm.drain()

    items = [item("A"), item("B"), item("C", name="Product A")]  # C collides on url_key
    with make_client(fm, drain_on_sleep) as c:
        submission = c.bulk_submit("all", "products", items)
        assert submission.accepted == [0, 1, 2]
        results = c.bulk_wait(submission.bulk_uuid, poll_interval=0.25)
    assert polls == [0.25]
    assert [(r.index, r.status) for r in results] == [
        (0, "complete"),
        (1, "complete"),
        (2, "failed"),
    ]
    assert results[2].message == "URL key for specified store already exists."
    assert sorted(fm.products) == ["A", "B"]


def test_submit_by_sku_with_background_consumer():
    with FakeMagento() as fake:
        fake.add_product(item("A")["product"])
        with make_client(fake) as c:
            submission = c.bulk_submit(
                "fr", "/V1/products/bySku", [{"sku": "A", "product": {"sku": "A", "name": "Fr"}}],
                method="PUT",
            )  # fmt: skip
            results = c.bulk_wait(submission.bulk_uuid, poll_interval=0.01, timeout=30)
        assert [r.status for r in results] == ["complete"]
        assert fake.product_overrides("A") == {"fr": {"name": "Fr"}}
        assert fake.request_count("PUT", "/async/bulk/V1/products/bySku", store="fr") == 1


def test_rejected_items_on_submit_and_in_the_results(fm):
    fm.reject_sku("B", message="Bad item %1", parameters=["B"], on_accept=True)
    with make_client(fm) as c:
        submission = c.bulk_submit("all", "products", [item("A"), item("B"), item("C")])
        assert submission.rejected == [BulkItem(index=1, status="rejected", message="Bad item B")]
        fm.drain()
        results = c.bulk_wait(submission.bulk_uuid)
    assert [(r.index, r.status, r.message) for r in results][1] == (1, "rejected", "Bad item B")
    assert [r.status for r in results] == ["complete", "rejected", "complete"]


def test_all_rejected_bulk_needs_no_polling(fm):
    fm.reject_sku("A", on_accept=True)
    with make_client(fm) as c:
        submission = c.bulk_submit("all", "products", [item("A")])
        before = fm.request_count()
        results = c.bulk_wait(submission.bulk_uuid)
    assert [r.status for r in results] == ["rejected"]
    assert fm.request_count() == before


def test_stuck_bulk_returns_open_results_after_the_timeout():
    sleeps: list[float] = []
    with FakeMagento(stick_bulk=True) as fake, make_client(fake, sleeps.append) as c:
        submission = c.bulk_submit("all", "products", [item("A"), item("B")])
        results = c.bulk_wait(submission.bulk_uuid, poll_interval=0.5, timeout=2)
    assert sum(sleeps) == pytest.approx(2.0)
    assert [(r.index, r.status) for r in results] == [(0, "open"), (1, "open")]
    assert results[0].message == "bulk operation still open after 2 s"


def test_whole_bulk_refused_is_item_rejected(fm):
    with make_client(fm) as c, pytest.raises(ItemRejected, match='"product" is required'):
        c.bulk_submit("all", "products", [{"sku": "A"}])


def test_results_map_by_request_index_not_list_order(fm):
    """Older versions number operations with global row ids and any list order."""
    fm.reject_sku("B", on_accept=True)

    def renumbered(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = fm(request)
        if request.url.path.endswith("/detailed-status"):
            body = orjson.loads(response.content)
            for op in body["operations_list"]:
                op["id"] += 5000
            body["operations_list"].reverse()
            return httpx.Response(200, json=body)
        return response

    items = [item("A"), item("B"), item("C"), item("D", name="Product A")]
    with make_client(renumbered) as c:
        submission = c.bulk_submit("all", "products", items)
        fm.drain()
        results = c.bulk_wait(submission.bulk_uuid)
    assert [(r.index, r.status) for r in results] == [
        (0, "complete"),
        (1, "rejected"),
        (2, "complete"),
        (3, "failed"),
    ]


def test_collect_results_marks_wrapped_deadlocks_retriable():
    def op(op_id: int, status: int, message: str) -> dict[str, Any]:
        return {"id": op_id, "status": status, "result_message": message}

    body = {
        "operations_list": [
            op(1, 3, "Database deadlock found when trying to get lock"),
            op(0, 2, "SQLSTATE[40001]: ... 1213 Deadlock found when trying to get lock"),
            op(2, 3, "URL key for specified store already exists."),
        ]
    }
    results = bulk.collect_results(body, None, 1.0, is_lock_message)
    assert [(r.index, r.status) for r in results] == [
        (0, "retriable"),
        (1, "retriable"),
        (2, "failed"),
    ]


def test_parse_submission_counts_unlisted_items_as_rejected():
    body = {"bulk_uuid": "u", "request_items": [{"id": 0, "status": "accepted"}], "errors": False}
    submission = bulk.parse_submission(body, 2)
    assert submission.accepted == [0]
    assert submission.rejected == [BulkItem(index=1, status="rejected", message="not acknowledged")]
    with pytest.raises(ValueError, match="bulk_uuid"):
        bulk.parse_submission({"message": "x"}, 1)
