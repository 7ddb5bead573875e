from __future__ import annotations

import gc
from datetime import UTC, datetime

import orjson

from pimsync.staging.hashing import content_hash
from pimsync.staging.repository import StagedItem, StagingRepository
from pimsync.staging.tables import Status


def item(code: str, data: dict, parent: str | None = None) -> StagedItem:
    return StagedItem(
        code=code, data=orjson.dumps(data).decode(), hash=content_hash(data), parent_code=parent
    )


def mark_pushed(repo: StagingRepository, entity: str, code: str) -> None:
    from sqlalchemy import update

    from pimsync.staging.tables import entity_tables

    table = entity_tables[entity]
    row = repo.get(entity, code)
    assert row is not None
    repo.connection.execute(
        update(table)
        .where(table.c.code == code)
        .values(pushed_hash=row["hash"], status=Status.SYNCED)
    )
    repo.commit()


def test_needs_update_rule(repo: StagingRepository):
    counts = repo.upsert_fetched("products", [item("a", {"v": 1}), item("b", {"v": 1})])
    assert (counts.new, counts.changed, counts.unchanged) == (2, 0, 0)
    repo.commit()
    mark_pushed(repo, "products", "a")

    counts = repo.upsert_fetched("products", [item("a", {"v": 1}), item("b", {"v": 1})])
    assert (counts.new, counts.changed, counts.unchanged) == (0, 0, 2)
    assert repo.get("products", "a")["status"] == Status.SYNCED  # unchanged is never marked
    assert repo.get("products", "b")["status"] == Status.NEW

    counts = repo.upsert_fetched("products", [item("a", {"v": 2}), item("b", {"v": 2})])
    assert (counts.changed, sorted(counts.changed_codes)) == (2, ["a", "b"])
    assert repo.get("products", "a")["status"] == Status.NEEDS_UPDATE
    assert repo.get("products", "b")["status"] == Status.NEW  # never pushed: still new

    repo.upsert_fetched("products", [item("a", {"v": 1})])
    assert repo.get("products", "a")["status"] == Status.SYNCED  # changed back to what was pushed


def test_a_changed_item_rewrites_every_column_whichever_of_them_changed(repo: StagingRepository):
    # Indexed columns (identifier, parent, status) are written only when they change: a change
    # of content alone, of the parent, and of the identifier must each land.
    def staged(code: str, data: dict, parent: str | None, identifier: str) -> StagedItem:
        return StagedItem(
            code=code,
            data=orjson.dumps(data).decode(),
            hash=content_hash(data),
            identifier=identifier,
            parent_code=parent,
            label=str(data.get("v")),
        )

    first = [staged("a", {"v": 1}, "m1", "SKU-A"), staged("b", {"v": 1}, "m1", "SKU-B")]
    repo.upsert_fetched("products", first)
    repo.commit()
    mark_pushed(repo, "products", "b")
    later = [staged("a", {"v": 2}, "m1", "SKU-A"), staged("b", {"v": 2}, "m2", "SKU-B2")]
    counts = repo.upsert_fetched("products", later)
    repo.commit()

    assert counts.changed == 2
    a, b = repo.get("products", "a"), repo.get("products", "b")
    assert (a["data"], a["label"], a["parent_code"], a["identifier"], a["status"]) == (
        '{"v":2}',
        "2",
        "m1",
        "SKU-A",
        Status.NEW,
    )
    assert (b["data"], b["label"], b["parent_code"], b["identifier"], b["status"]) == (
        '{"v":2}',
        "2",
        "m2",
        "SKU-B2",
        Status.NEEDS_UPDATE,
    )
    assert a["hash"] == content_hash({"v": 2}) == b["hash"]


def test_unseen_rows_are_flagged_deleted_only_by_a_complete_listing(repo: StagingRepository):
    repo.upsert_fetched("categories", [item("a", {}), item("b", {}), item("c", {})])
    repo.commit()
    repo.begin_seen("categories")
    repo.upsert_fetched("categories", [item("a", {}), item("c", {})])
    assert repo.mark_unseen_deleted("categories") == ["b"]
    assert repo.get("categories", "b")["status"] == Status.DELETED_IN_PIM
    # A listing that did not complete flags nothing.
    repo.begin_seen("categories")
    repo.upsert_fetched("categories", [item("a", {})])
    repo.drop_seen("categories")
    assert repo.get("categories", "c")["status"] == Status.NEW
    # Coming back revives it.
    repo.upsert_fetched("categories", [item("b", {})])
    assert repo.get("categories", "b")["status"] == Status.NEW


def test_mark_needs_update_only_touches_synced_parents(repo: StagingRepository):
    repo.upsert_fetched("product_models", [item("m1", {}), item("m2", {})])
    repo.commit()
    mark_pushed(repo, "product_models", "m1")
    assert repo.mark_needs_update("product_models", ["m1", "m2", "missing"]) == ["m1"]
    assert repo.get("product_models", "m1")["status"] == Status.NEEDS_UPDATE
    assert repo.get("product_models", "m2")["status"] == Status.NEW


def test_quarantine_keeps_the_reason_and_a_fix_releases_it(repo: StagingRepository):
    repo.quarantine("products", "bad", b'{"uuid": 1}', "uuid: Input should be a valid UUID")
    row = repo.get("products", "bad")
    assert row["status"] == Status.QUARANTINED
    assert row["last_error"] == "uuid: Input should be a valid UUID"
    counts = repo.upsert_fetched("products", [item("bad", {"uuid": "fixed"})])
    assert counts.changed == 1
    assert repo.get("products", "bad")["status"] == Status.NEW


def test_watermarks_are_per_feed_and_newest_wins(repo: StagingRepository):
    assert repo.last_watermark("products") is None
    first = repo.begin_run("import:full", ["products"], "f", "{}")
    repo.record_watermark(first, "products", datetime(2026, 1, 1, tzinfo=UTC))
    repo.commit()
    second = repo.begin_run("import:incremental", ["products", "assets"], "f", "{}")
    repo.record_watermark(second, "assets", datetime(2026, 1, 2, tzinfo=UTC))
    repo.commit()
    assert repo.last_watermark("products") == datetime(2026, 1, 1, tzinfo=UTC)
    assert repo.last_watermark("assets") == datetime(2026, 1, 2, tzinfo=UTC)
    assert repo.last_watermark("categories") is None


def test_unknown_codes_are_the_ones_not_staged(repo: StagingRepository):
    repo.upsert_fetched("assets", [item(f"a/{i}.jpg", {"i": i}) for i in range(3)])
    wanted = {"a/0.jpg", "a/2.jpg", "b/9.jpg", *(f"c/{i}.jpg" for i in range(600))}
    assert repo.unknown_codes("assets", wanted) == wanted - {"a/0.jpg", "a/2.jpg"}
    assert repo.unknown_codes("assets", []) == set()


def test_a_batch_of_an_import_leaves_no_reference_cycles(repo: StagingRepository):
    # An import runs the cyclic GC rarely (gc_tuning), so what a batch's statements leave in
    # reference cycles stays in memory until then: statements built per batch held the batch's
    # codes that way. Whatever runs once per batch must be freed by reference counting alone.
    def batch(number: int) -> list[StagedItem]:
        return [item(f"p{number}-{i}", {"v": number}, parent=f"m{i % 7}") for i in range(50)]

    def write(number: int) -> None:
        items = batch(number)
        repo.upsert_fetched("product_models", [item(f"m{i}", {"v": number}) for i in range(7)])
        counts = repo.upsert_fetched("products", items)
        parents = repo.parents_of("products", counts.changed_codes)
        repo.mark_needs_update("product_models", parents)
        repo.commit()

    write(0)  # statements built and compiled once, kept for the next batches
    for code in [f"m{i}" for i in range(7)]:
        mark_pushed(repo, "product_models", code)
    write(1)
    gc.collect()
    gc.disable()
    try:
        write(2)
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable == 0
    assert repo.get("product_models", "m3")["status"] == Status.NEEDS_UPDATE


def test_an_import_stores_times_as_every_other_write_does(repo: StagingRepository):
    # Batch writes bypass Core's statement building; their values must still be stored in the
    # dialect's own form. A datetime left to the sqlite3 module was stored with a UTC offset
    # that Core's rows lack, and read back as an aware datetime beside naive ones.
    from sqlalchemy import select, update

    from pimsync.staging.tables import entity_tables

    table = entity_tables["products"]
    repo.upsert_fetched("products", [item("batch-new", {"v": 1}), item("core", {"v": 1})])
    repo.commit()
    repo.upsert_fetched("products", [item("batch-changed", {"v": 1})])
    repo.upsert_fetched("products", [item("batch-changed", {"v": 2})])  # an UPDATE
    stamp = datetime(2026, 12, 7, 13, 50, 45, 217240, tzinfo=UTC)
    repo.connection.execute(update(table).where(table.c.code == "core").values(imported_at=stamp))
    repo.commit()

    stored = dict(repo.connection.execute(select(table.c.code, table.c.imported_at)).all())
    assert {code: value.tzinfo is None for code, value in stored.items()} == {
        code: stored["core"].tzinfo is None for code in stored
    }
    if repo.connection.dialect.name == "sqlite":
        sql = "SELECT code, imported_at FROM products"
        texts = dict(repo.connection.exec_driver_sql(sql).all())
        assert texts["core"] == "2026-12-07 13:50:45.217240"
        assert all(len(text) == len(texts["core"]) for text in texts.values()), texts
