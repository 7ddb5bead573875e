"""The inspection library: payload diffs, run summaries and liveness, and the read-only queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from pimsync import inspection
from pimsync.inspection import RunInfo
from pimsync.payload_diff import FieldChange, diff_payloads, drift, flatten, same
from pimsync.staging.queries import StagingQueries
from pimsync.staging.repository import StagedItem
from pimsync.staging.tables import entity_tables

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)

# -- payload diffs ----------------------------------------------------------------------------


def test_flatten_keys_custom_attributes_by_code_and_nests_with_dots():
    body = {
        "sku": "A",
        "extension_attributes": {"website_ids": [1], "category_links": [{"category_id": "3"}]},
        "custom_attributes": [
            {"attribute_code": "pim_color", "value": "4"},
            {"attribute_code": "url_key", "value": "a"},
        ],
    }
    assert flatten(body) == {
        "sku": "A",
        "extension_attributes.website_ids": [1],
        "extension_attributes.category_links": [{"category_id": "3"}],
        "custom_attributes.pim_color": "4",
        "custom_attributes.url_key": "a",
    }


def test_diff_payloads_per_part_added_removed_changed():
    old = {
        "all": {
            "sku": "A",
            "name": "Old",
            "custom_attributes": [{"attribute_code": "c", "value": "1"}],
        },
        "stores": {"fr": {"sku": "A", "name": "Vieux"}},
        "media": ["x.jpg"],
    }
    new = {
        "all": {"sku": "A", "name": "New", "price": 5.0},
        "stores": {"de": {"sku": "A", "name": "Neu"}},
        "media": ["x.jpg"],
    }
    assert diff_payloads(old, new) == [
        FieldChange("all", "custom_attributes.c", "removed", "1", None),
        FieldChange("all", "name", "changed", "Old", "New"),
        FieldChange("all", "price", "added", None, 5.0),
        FieldChange("store:de", "name", "added", None, "Neu"),
        FieldChange("store:de", "sku", "added", None, "A"),
        FieldChange("store:fr", "name", "removed", "Vieux", None),
        FieldChange("store:fr", "sku", "removed", "A", None),
    ]
    assert diff_payloads(new, new) == []
    assert {c.change for c in diff_payloads(None, new)} == {"added"}


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        (12, "12.000000", True),
        ("4.6500", 4.65, True),
        ("0042", "42", False),  # codes, not numbers
        (True, "1", True),
        (False, 0, True),
        (True, "0", False),
        ("4", 4, True),
        ("a", "b", False),
        (None, None, True),
        ("a", None, False),
        ([1, 2], [2, 1], True),
        ([1, 2], [1, 2, 3], False),
        ({"category_id": "3"}, {"category_id": 3, "position": 0, "extension_attributes": {}}, True),
        ({"category_id": "3"}, {"position": 0}, False),
    ],
)
def test_same_compares_magento_values_by_meaning(ours, theirs, expected):
    assert same(ours, theirs) is expected


def test_drift_looks_only_at_the_fields_pimsync_sends():
    expected = {
        "sku": "A",
        "name": "Shirt",
        "custom_attributes": [{"attribute_code": "c", "value": "4"}],
    }
    held = {
        "sku": "A",
        "name": "Changed",
        "id": 7,
        "updated_at": "now",
        "custom_attributes": [
            {"attribute_code": "c", "value": "4"},
            {"attribute_code": "x", "value": "1"},
        ],
    }
    assert [(d.field, d.magento, d.pimsync) for d in drift("all", expected, held)] == [
        ("name", "Changed", "Shirt")
    ]


# -- runs -------------------------------------------------------------------------------------


def run_row(**values) -> dict[str, Any]:
    row = {
        "id": 7,
        "kind": "create",
        "status": "success",
        "started_at": NOW - timedelta(minutes=5),
        "finished_at": NOW,
        "feeds": '["products"]',
        "counts": "{}",
        "message": None,
        "host": "h",
        "pid": 1,
        "resumed_from": None,
    }
    return {**row, **values}


def test_summaries_read_both_shapes_of_counts():
    push = {
        "run_id": 7,
        "kind": "create",
        "feeds": {
            "products": {"created": 3, "updated": 2, "failed": 0, "seconds": 1.5},
            "variants": {"created": 1, "updated": 0, "failed": 1, "seconds": 0.1},
        },
    }
    run = RunInfo.from_row(run_row(counts=orjson.dumps(push).decode()), None, NOW, LEASE)
    assert run.summary == "4 created, 2 updated, 1 failed"
    assert run.duration_seconds == 300.0
    imported = {
        "products": {"fetched": 10, "new": 10, "changed": 0, "watermark": "x", "completed": True}
    }
    run = RunInfo.from_row(
        run_row(kind="import:full", counts=orjson.dumps(imported).decode()), None, NOW, LEASE
    )
    assert run.summary == "10 fetched, 10 new"
    assert RunInfo.from_row(run_row(counts="{}"), None, NOW, LEASE).summary == "nothing counted"


def lock_row(run_id: int | None, expires_at: datetime) -> dict[str, Any]:
    return {"run_id": run_id, "expires_at": expires_at.replace(tzinfo=None)}  # as SQLite answers


def test_an_in_progress_run_is_stale_only_when_its_lease_ran_out():
    row = run_row(status="in_progress", finished_at=None)
    alive = RunInfo.from_row(row, lock_row(7, NOW + timedelta(seconds=30)), NOW, LEASE)
    assert (alive.state, alive.stale, alive.duration_seconds) == ("In progress", False, None)
    dead = RunInfo.from_row(row, lock_row(7, NOW - timedelta(minutes=1)), NOW, LEASE)
    assert dead.stale and dead.no_heartbeat_since == NOW - timedelta(minutes=2)
    assert dead.state == "In progress (no heartbeat since 2026-05-01 11:58:00 UTC)"
    assert dead.as_dict()["no_heartbeat_since"] == "2026-05-01T11:58:00+00:00"
    other = RunInfo.from_row(row, lock_row(8, NOW + timedelta(seconds=30)), NOW, LEASE)
    assert other.state == "In progress (no heartbeat)"
    unknown = RunInfo.from_row(row, None, NOW, LEASE)
    assert unknown.state == "In progress"
    finished = RunInfo.from_row(run_row(), lock_row(7, NOW - timedelta(minutes=1)), NOW, LEASE)
    assert finished.state == "Success"


# -- queries ----------------------------------------------------------------------------------


def stage(repo, entity: str, *items: tuple[str, str | None, str | None, str | None]) -> None:
    repo.upsert_fetched(
        entity,
        [
            StagedItem(code, "{}", code.ljust(64, "0")[:64], identifier, parent, label)
            for code, identifier, parent, label in items
        ],
    )
    repo.commit()


def code_of(row: dict[str, Any] | None, key: str) -> Any:
    assert row is not None
    return row[key]


def test_search_is_case_insensitive_literal_and_in_id_order(repo):
    stage(
        repo,
        "products",
        ("u1", "SKU-100%", None, "Blue Shirt"),
        ("u2", "SKU-1001", None, "Red_Shirt"),
        ("u3", "SKU-2000", "model", "blue hat"),
        ("u4", "OTHER", None, "Plain"),
    )
    queries = StagingQueries(repo.connection)

    def codes(**filters) -> list[str]:
        return [row["code"] for row in queries.search_items("products", limit=10, **filters)]

    assert codes(text="BLUE") == ["u1", "u3"]
    assert codes(text="100%") == ["u1"]  # % is a character, not a wildcard
    assert codes(text="d_s") == ["u2"]  # and so is _
    assert codes(text="sku", has_parent=False) == ["u1", "u2"]
    assert codes(text="sku", has_parent=True) == ["u3"]
    assert codes(text="sku") == ["u1", "u2", "u3"]
    assert [r["code"] for r in queries.search_items("products", limit=2, text="sku")] == [
        "u1",
        "u2",
    ]
    products = entity_tables["products"]
    repo.connection.execute(update(products).where(products.c.code == "u2").values(skipped=True))
    repo.connection.execute(update(products).where(products.c.code == "u4").values(status="error"))
    repo.commit()
    assert codes(skipped=True) == ["u2"]
    assert codes(status="error") == ["u4"]
    counts = {
        (c.status, c.skipped, c.has_parent): c.count for c in queries.status_counts("products")
    }
    assert counts == {
        ("new", False, False): 1,
        ("new", True, False): 1,
        ("new", False, True): 1,
        ("error", False, False): 1,
    }
    assert code_of(queries.find_item("products", "SKU-1001"), "code") == "u2"
    assert code_of(queries.find_item("products", "u3"), "identifier") == "SKU-2000"
    assert queries.find_item("products", "nope") is None


def test_last_run_of_feed_reads_the_feed_list(repo):
    first = repo.begin_run("import:full", ["attributes", "products"], "f", "{}")
    second = repo.begin_run("create", ["products", "variants"], "f", "{}")
    repo.finish_run(second, "success", {})
    third = repo.begin_run("create", ["variants"], "f", "{}")
    queries = StagingQueries(repo.connection)
    assert code_of(queries.last_run_of_feed(["import:full"], "products"), "id") == first
    assert code_of(queries.last_run_of_feed(["create"], "products"), "id") == second
    assert code_of(queries.last_run_of_feed(["create"], "variants"), "id") == third
    assert queries.last_run_of_feed(["create"], "assets") is None
    assert code_of(queries.last_successful_push(), "id") == second
    assert queries.newest_run_id() == third


def test_search_items_says_when_more_match(app, repo):
    stage(repo, "categories", *[(f"c{i}", f"c{i}", None, f"Cat {i}") for i in range(5)])
    result = inspection.search_items(app, feed="categories", limit=3)
    assert [item.code for item in result.items] == ["c0", "c1", "c2"]
    assert result.truncated is True
    assert result.as_dict()["items"][0] == {
        "feed": "categories",
        "entity": "categories",
        "code": "c0",
        "identifier": "c0",
        "label": "Cat 0",
        "status": "new",
        "skipped": False,
        "last_error": None,
        "pushed_at": None,
    }
    assert inspection.search_items(app, feed="categories", limit=5).truncated is False
