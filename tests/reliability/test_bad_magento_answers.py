"""Magento answers that are not what its REST API promises, during a real push.

An answer that is unreadable where the whole run depends on it (the store list, the attribute
sets) stops the run with exit 4 and one line, before anything is written. An unreadable answer to
one item's request (a list where the saved product belongs, no id, an error served as 200) is
that item's error, with the reason; the run goes on and exits 1. Bulk operations that never
complete are the items' error once the push's wait budget is spent. In every case, nothing is
marked synced that Magento did not accept.

Related, and not repeated: the client's reading of single answers and of bulk statuses
(tests/unit/test_magento_client.py, tests/unit/test_magento_bulk.py), and a 2xx without an id
raised from inside the push (tests/integration/test_push.py::test_a_2xx_without_what_...).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from pimsync.errors import MagentoError
from pimsync.magento import bulk as magento_bulk
from pimsync.testing.fake_magento import FakeMagento
from tests.reliability.support import (
    assert_synced_only_what_magento_holds,
    build_app,
    create,
    rows,
    status_counts,
)

WRITES = ("POST", "PUT", "DELETE")
SETS = "/V1/products/attribute-sets/sets/list"
RUN_LEVEL: dict[str, tuple[str, Any]] = {
    "an error served as 200 for the store views": (
        "/V1/store/storeViews",
        {"message": "Service temporarily unavailable"},
    ),
    "an object where the store list belongs": ("/V1/store/storeViews", {"items": []}),
    "store views without ids": ("/V1/store/storeViews", [{"code": "default"}]),
    "websites as a bare string": ("/V1/store/websites", "base"),
    "a list where the attribute-set search belongs": (SETS, []),
    "attribute sets without names": (SETS, {"items": [{"attribute_set_id": 4}], "total_count": 1}),
}


@pytest.mark.parametrize("answer", RUN_LEVEL)
def test_an_unreadable_answer_the_run_depends_on_stops_it_before_any_write(
    staging, push_pim, magento, answer
):
    path, body = RUN_LEVEL[answer]
    magento.fail_next(1, 200, body=body, path=path)
    app = build_app(staging, push_pim, magento)
    with pytest.raises(MagentoError) as stopped:
        create(app)
    error = stopped.value
    assert error.exit_code == 4
    assert "\n" not in error.message
    assert f"Magento answered GET /rest/all{path} with something that is not" in error.message
    assert sum(magento.request_count(method) for method in WRITES) == 0
    for entity in ("attributes", "categories", "product_models", "products"):
        assert "synced" not in status_counts(app, entity), entity
    app.close()


SKU = "SKU-0000000"
ITEM_LEVEL: dict[str, tuple[str, str, Any, str]] = {
    # name: (entity, path glob, answer body, expected reason)
    "a list where the saved product belongs": (
        "products",
        f"/V1/products/{SKU}",
        [],
        "Magento answered without 'sku': []",
    ),
    "a saved product without its sku": (
        "products",
        f"/V1/products/{SKU}",
        {"id": 5},
        "Magento answered without 'sku'",
    ),
    "an error served as 200": (
        "products",
        f"/V1/products/{SKU}",
        {"message": "The product was unable to be saved. Please try again."},
        "The product was unable to be saved. Please try again.",
    ),
    "a created category without an id": (
        "categories",
        "/V1/categories",
        {"name": "Master catalog"},
        "Magento answered without 'id'",
    ),
    "an image entry id that is not an id": (
        "product_media",
        f"/V1/products/{SKU}/media",
        {"entry": 1},
        "where an id was expected",
    ),
}


@pytest.mark.parametrize("answer", ITEM_LEVEL)
def test_an_unreadable_answer_to_one_item_is_that_items_error(staging, push_pim, magento, answer):
    entity, path, body, reason = ITEM_LEVEL[answer]
    magento.fail_next(1, 200, body=body, path=path)
    app = build_app(staging, push_pim, magento)
    report = create(app)
    assert report.exit_code == 1
    assert report.failed >= 1
    assert reason in report.errors[0]["message"]
    if entity == "product_media":
        assert magento.media(SKU) == []
    else:
        failed = [row for row in rows(app, entity).values() if row["status"] == "error"]
        assert failed and reason in failed[0]["last_error"]
    if entity == "products":  # the one product failed; the run went on with the others
        states = {row["identifier"]: row["status"] for row in rows(app, "products").values()}
        assert states.pop(SKU) == "error"
        assert set(states.values()) == {"synced"}
        assert magento.product(SKU) is None
    assert_synced_only_what_magento_holds(app, magento)
    app.close()


@pytest.fixture
def minute_per_poll(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """A sleep under which every bulk poll interval lasts a minute, so the 600 s wait budget
    runs out after ten polls instead of three thousand."""
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(magento_bulk, "time", SimpleNamespace(monotonic=lambda: clock.now))

    def sleep(_seconds: float) -> None:
        clock.now += 60

    return sleep


def test_bulk_operations_stuck_open_are_the_items_error_after_the_wait_budget(
    staging, push_pim, minute_per_poll
):
    with FakeMagento(stick_bulk=True) as magento:
        app = build_app(staging, push_pim, magento, minute_per_poll, PIMSYNC_MAGENTO__MODE="bulk")
        report = create(app)
        assert report.exit_code == 1
        for entity in ("product_models", "products"):
            for code, row in rows(app, entity).items():
                if row["status"] == "synced":  # only what is not sent as such (sub models)
                    assert row["pushed_payload"] is None, code
                else:
                    assert row["status"] == "error", code
                    assert row["last_error"] == "bulk operation still open after 600 s"
        assert report.feeds["products"].failed and report.feeds["variants"].failed
        assert magento.product_count() == 0  # the consumer never ran them
        assert_synced_only_what_magento_holds(app, magento)
        app.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/V1/bulk/*/detailed-status", ["not", "an", "object"]),
        ("/V1/bulk/*/operation-status/4", "many"),
    ],
    ids=["detailed status as a list", "open count as a word"],
)
def test_an_unreadable_bulk_status_is_the_items_error(staging, push_pim, magento, path, body):
    magento.fail_next(1, 200, body=body, path=path)
    app = build_app(staging, push_pim, magento, PIMSYNC_MAGENTO__MODE="bulk")
    report = create(app)  # today: ItemRejected escapes run_push
    assert report.exit_code == 1
    assert any("unreadable bulk status" in e["message"] for e in report.errors)
    assert_synced_only_what_magento_holds(app, magento)
    app.close()
