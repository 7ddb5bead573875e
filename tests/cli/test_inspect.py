"""The inspection commands (status, items, show, log, runs) on a catalog really imported from the
fake PIM and pushed to the fake Magento, both served on loopback."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import case, func, insert, select

from pimsync.app import App
from pimsync.cli import cli
from pimsync.staging.tables import entity_tables, product_media, sync_lock, sync_runs
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import serve
from tests.conftest import PIM_ENV, make_config

PRODUCTS = 60
REJECTION = "The product was unable to be saved. Please try again."


@dataclass
class Shop:
    pim: FakePim
    magento: FakeMagento
    env: dict[str, str]
    staging_url: str
    rejected: str  # the SKU Magento refused in the first push
    rejected_uuid: str


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def messages(stderr: str) -> list[str]:
    """stderr without the log records (`pimsync: LEVEL ...`) the group may also write there."""
    return [line for line in stderr.splitlines() if not line.startswith("pimsync: ")]


def as_json(args: list[str], env: dict[str, str]) -> Any:
    result = invoke([*args, "--json"], env)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def sku_of(pim: FakePim, index: int) -> str:
    return str(pim.product(index)["values"]["sku"][0]["data"])


def simple_products(pim: FakePim) -> list[int]:
    return [i for i in range(PRODUCTS) if not pim.product(i).get("parent")]


@pytest.fixture
def shop(staging_url: str) -> Iterator[Shop]:
    """import:full then create, with one product refused by Magento."""
    pim = FakePim(products=PRODUCTS)
    with FakeMagento() as magento, serve(pim) as pim_url, serve(magento) as magento_url:
        env = {
            **PIM_ENV,
            "PIMSYNC_PIM__BASE_URL": pim_url,
            "PIMSYNC_STAGING__URL": staging_url,
            "PIMSYNC_MAGENTO__BASE_URL": magento_url,
            "PIMSYNC_MAGENTO__TOKEN": "magento-token",
        }
        index = simple_products(pim)[0]
        rejected = sku_of(pim, index)
        magento.reject_sku(rejected, status=400, message=REJECTION)
        assert invoke(["import:full"], env).exit_code == 0
        assert invoke(["create", "--no-reindex"], env).exit_code == 1
        yield Shop(pim, magento, env, staging_url, rejected, pim.catalog.uuid(index))


def staging_app(shop: Shop) -> App:
    return App(make_config(shop.staging_url))


def table_counts(shop: Shop, entity: str, has_parent: bool | None) -> dict[str, int]:
    """What the staging table says, counted independently of pimsync's queries."""
    table = entity_tables[entity]
    app = staging_app(shop)
    try:
        with app.engine().connect() as connection:
            query = select(
                table.c.status,
                func.count(),
                func.sum(case((table.c.skipped.is_(True), 1), else_=0)),
            ).group_by(table.c.status)
            if has_parent is not None:
                parent = table.c.parent_code
                query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
            counts: dict[str, int] = {"total": 0, "skipped": 0}
            for status, count, skipped in connection.execute(query):
                counts[status] = int(count)
                counts["total"] += int(count)
                counts["skipped"] += int(skipped or 0)
            return counts
    finally:
        app.close()


def execute(shop: Shop, statement) -> None:
    app = staging_app(shop)
    try:
        with app.engine().begin() as connection:
            connection.execute(statement)
    finally:
        app.close()


# -- status -----------------------------------------------------------------------------------


def test_status_counts_match_the_staging_tables(shop: Shop):
    report = as_json(["status"], shop.env)
    assert set(report) == {"checked_at", "feeds", "last_successful_push", "lock"}
    feeds = {feed["feed"]: feed for feed in report["feeds"]}
    assert list(feeds) == ["attributes", "categories", "products", "variants", "assets"]
    expected: dict[str, list[tuple[str, bool | None]]] = {
        "categories": [("categories", None)],
        "products": [("product_models", None), ("products", False)],
        "variants": [("products", True)],
        "assets": [("assets", None)],
    }
    for feed, tables in expected.items():
        total: dict[str, int] = {}
        for entity, has_parent in tables:
            counts = table_counts(shop, entity, has_parent)
            for name, value in counts.items():
                total[name] = total.get(name, 0) + value
            assert {k: v for k, v in feeds[feed]["entities"][entity].items() if v} == {
                k: v for k, v in counts.items() if v
            }
        assert {k: v for k, v in feeds[feed]["items"].items() if v} == {
            k: v for k, v in total.items() if v
        }
    products = feeds["products"]["items"]
    assert products["error"] == 1
    assert products["synced"] == products["total"] - 1
    assert feeds["variants"]["items"]["synced"] == feeds["variants"]["items"]["total"] > 0
    assert feeds["variants"]["last_import"]["kind"] == "import:full"
    for feed in feeds.values():
        assert feed["last_import"]["state"] == "Success"
        assert feed["last_push"]["state"] == "Success"
        assert feed["last_push"]["kind"] == "create"
    app = staging_app(shop)
    with app.engine().connect() as connection:
        media: dict[str, int] = dict(
            connection.execute(
                select(product_media.c.status, func.count()).group_by(product_media.c.status)
            ).all()
        )
    app.close()
    assert feeds["assets"]["media"] == media and media["synced"] > 0
    push = report["last_successful_push"]
    feed_counts = push["run"]["counts"]["feeds"]
    assert push["items_updated"] == sum(c["created"] + c["updated"] for c in feed_counts.values())
    assert push["run"]["id"] == feeds["products"]["last_push"]["id"]
    assert report["lock"] is None


def test_status_table_and_a_skipped_item_counted_apart(shop: Shop):
    products = entity_tables["products"]
    execute(
        shop, products.update().where(products.c.code == shop.rejected_uuid).values(skipped=True)
    )
    result = invoke(["status"], shop.env)
    assert result.exit_code == 0
    assert "Success (run 2, create)" in result.stdout
    assert "last successful push: run 2 (create)" in result.stdout
    items = as_json(["status"], shop.env)["feeds"][2]["items"]
    assert items["skipped"] == 1 and items["error"] == 1  # the flag does not hide the status


def test_a_run_whose_lease_ran_out_shows_no_heartbeat(shop: Shop):
    now = datetime.now(UTC)
    execute(
        shop,
        insert(sync_runs).values(
            id=50,
            kind="import:incremental",
            feeds='["products"]',
            started_at=now - timedelta(hours=1),
            status="in_progress",
            counts="{}",
            watermarks="{}",
            config_fingerprint="x",
        ),
    )
    lock = {
        "name": "staging",
        "owner": "dead",
        "kind": "import:incremental",
        "host": "elsewhere",
        "pid": 4242,
        "run_id": 50,
        "acquired_at": now - timedelta(hours=1),
        "expires_at": now - timedelta(minutes=10),
    }
    execute(shop, insert(sync_lock).values(**lock))
    report = as_json(["status"], shop.env)
    last = report["feeds"][2]["last_import"]
    assert last["id"] == 50
    assert last["stale"] is True
    since = datetime.fromisoformat(last["no_heartbeat_since"])
    assert since == (now - timedelta(minutes=11)).replace(microsecond=0)  # the lease is 60 s
    assert last["state"] == f"In progress (no heartbeat since {since:%Y-%m-%d %H:%M:%S} UTC)"
    assert report["lock"]["expired"] is True
    assert "In progress (no heartbeat since" in invoke(["runs"], shop.env).stdout
    # A lease still running: the run is alive, and status reads beside it.
    execute(shop, sync_lock.update().values(expires_at=now + timedelta(minutes=1)))
    alive = as_json(["status"], shop.env)["feeds"][2]["last_import"]
    assert (alive["state"], alive["stale"]) == ("In progress", False)


# -- items ------------------------------------------------------------------------------------


def test_items_by_sku_name_status_and_feed(shop: Shop):
    sku = sku_of(shop.pim, simple_products(shop.pim)[1])
    everywhere = as_json(["items", "--search", sku.lower()], shop.env)
    assert {i["entity"] for i in everywhere["items"]} == {"products", "assets"}  # its image
    found = as_json(["items", "--search", sku.lower(), "--feed", "products"], shop.env)
    assert [(i["entity"], i["identifier"]) for i in found["items"]] == [("products", sku)]
    assert found["truncated"] is False
    name = found["items"][0]["label"]
    by_name = as_json(["items", "--search", name.upper(), "--feed", "products"], shop.env)
    assert sku in {item["identifier"] for item in by_name["items"]}
    assert all(name.lower() in item["label"].lower() for item in by_name["items"])
    errors = as_json(["items", "--status", "error"], shop.env)
    assert [(i["feed"], i["code"], i["last_error"]) for i in errors["items"]] == [
        ("products", shop.rejected_uuid, REJECTION)
    ]
    variants = as_json(["items", "--feed", "variants", "--limit", "3"], shop.env)
    assert variants["count"] == 3 and variants["truncated"] is True
    assert {item["feed"] for item in variants["items"]} == {"variants"}
    assert invoke(["items", "--search", "no-such-thing-here"], shop.env).stdout.count("SKU-") == 0


def test_items_table_and_csv(shop: Shop):
    table = invoke(["items", "--status", "error"], shop.env)
    assert table.exit_code == 0
    assert shop.rejected in table.stdout
    assert "The product was" in table.stdout
    result = invoke(["items", "--status", "error", "--csv"], shop.env)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["identifier"], r["status"], r["skipped"], r["last_error"]) for r in rows] == [
        (shop.rejected, "error", "false", REJECTION)
    ]
    both = invoke(["items", "--json", "--csv"], shop.env)
    assert both.exit_code == 2


# -- show -------------------------------------------------------------------------------------


def test_show_diffs_a_pim_change_against_the_last_push(shop: Shop):
    # One with an image: its upload is logged by SKU, and belongs to its history too.
    index = next(
        i for i in simple_products(shop.pim)[2:] if shop.pim.product(i)["values"].get("picture")
    )
    sku = sku_of(shop.pim, index)
    names = shop.pim.product(index)["values"]["name"]
    old = next(e["data"] for e in names if e["locale"] == "en_US")
    renamed = [{**e, "data": "Renamed jacket"} if e["locale"] == "en_US" else e for e in names]
    shop.pim.clock.advance(600)
    shop.pim.update_product(index, values={"name": renamed})
    assert invoke(["import:incremental"], shop.env).exit_code == 0
    detail = as_json(["show", sku], shop.env)
    assert (detail["entity"], detail["feed"], detail["status"]) == (
        "products",
        "products",
        "needs_update",
    )
    assert detail["would_push"]["all"]["name"] == "Renamed jacket"
    assert detail["last_pushed"]["all"]["name"] == old
    changes = {(c["part"], c["field"]): c for c in detail["diff"]}
    assert changes[("all", "name")] == {
        "part": "all",
        "field": "name",
        "change": "changed",
        "old": old,
        "new": "Renamed jacket",
    }
    assert ("all", "custom_attributes.url_key") in changes
    history = detail["history"]
    assert ("products", "created", 2) in {(h["feed"], h["action"], h["run_id"]) for h in history}
    assert ("assets", "uploaded", 2) in {(h["feed"], h["action"], h["run_id"]) for h in history}
    assert [h["id"] for h in history] == sorted((h["id"] for h in history), reverse=True)
    table = invoke(["show", sku], shop.env)
    assert table.exit_code == 0
    assert f"{old} → Renamed jacket" in table.stdout


def test_show_live_compares_what_magento_holds(shop: Shop):
    sku = sku_of(shop.pim, simple_products(shop.pim)[3])
    held = shop.magento.product(sku)
    assert held is not None
    original = held["name"]
    shop.magento.add_product({"sku": sku, "name": "Changed in Magento"})
    runs_before = len(as_json(["runs"], shop.env)["runs"])
    shop.magento.reset_stats()
    detail = as_json(["show", sku, "--live"], shop.env)
    live = detail["live"]
    assert live["drift"] == [
        {"part": "all", "field": "name", "magento": "Changed in Magento", "pimsync": original}
    ]
    assert live["compared"][0] == "all" and live["missing"] == []
    assert detail["diff"] == []  # staging and the last push agree; only Magento moved
    assert shop.magento.request_count() > 0
    assert shop.magento.request_count(method="GET") == shop.magento.request_count()
    assert len(as_json(["runs"], shop.env)["runs"]) == runs_before
    table = invoke(["show", sku, "--live"], shop.env)
    assert "Changed in Magento" in table.stdout


def test_show_without_a_reachable_magento(shop: Shop):
    sku = sku_of(shop.pim, simple_products(shop.pim)[3])
    down = {
        **shop.env,
        "PIMSYNC_MAGENTO__BASE_URL": "http://127.0.0.1:9",
        "PIMSYNC_MAGENTO__MAX_ATTEMPTS": "1",
    }
    detail = as_json(["show", sku], down)
    assert detail["would_push"] is None
    assert detail["would_push_note"].startswith("Magento is not reachable")
    assert detail["last_pushed"]["all"]["sku"] == sku
    live = invoke(["show", sku, "--live"], down)
    assert live.exit_code == 4
    assert live.stdout == ""
    [line] = messages(live.stderr)
    assert line.startswith("Error: show --live: Magento unavailable")
    unset = {k: v for k, v in shop.env.items() if not k.startswith("PIMSYNC_MAGENTO__")}
    assert as_json(["show", sku], unset)["would_push_note"].startswith("Magento is not configured")


def test_show_not_found_and_ambiguous_exit_2(shop: Shop):
    missing = invoke(["show", "NO-SUCH-SKU"], shop.env)
    assert missing.exit_code == 2
    assert messages(missing.stderr)[0] == "Error: no staged item with code or SKU 'NO-SUCH-SKU'"
    # "accessories" is both a family and a category in the fake catalog.
    ambiguous = invoke(["show", "accessories"], shop.env)
    assert ambiguous.exit_code == 2
    assert messages(ambiguous.stderr)[0] == (
        "Error: 'accessories' is staged in several places (attributes/families, "
        "categories/categories): choose one with --feed"
    )
    category = as_json(["show", "accessories", "--feed", "categories"], shop.env)
    assert category["entity"] == "categories"
    assert category["would_push"]["all"]["name"]


# -- log and runs -----------------------------------------------------------------------------


def test_log_errors_after_a_magento_rejection(shop: Shop):
    errors = as_json(["log", "--errors"], shop.env)
    assert errors["run"]["kind"] == "create"
    assert [(e["feed"], e["code"], e["action"], e["message"]) for e in errors["events"]] == [
        ("products", shop.rejected_uuid, "error", REJECTION)
    ]
    everything = as_json(["log", "--feed", "products", "--limit", "5"], shop.env)
    assert everything["count"] == 5 and everything["truncated"] is True
    assert {e["feed"] for e in everything["events"]} == {"products"}
    imported = as_json(["log", "--run", "1", "--errors"], shop.env)
    assert imported["run"]["kind"] == "import:full" and imported["events"] == []
    table = invoke(["log", "--errors"], shop.env)
    assert shop.rejected_uuid in table.stdout and REJECTION in table.stdout
    assert invoke(["log", "--run", "999"], shop.env).exit_code == 2


def test_runs_newest_first_with_a_limit(shop: Shop):
    assert invoke(["import:incremental"], shop.env).exit_code == 0
    runs = as_json(["runs"], shop.env)["runs"]
    assert [(r["id"], r["kind"]) for r in runs] == [
        (3, "import:incremental"),
        (2, "create"),
        (1, "import:full"),
    ]
    assert runs[1]["status"] == "success" and runs[1]["duration_seconds"] >= 0
    assert "created" in runs[1]["summary"] and "1 failed" in runs[1]["summary"]
    fetched = sum(feed["fetched"] for feed in runs[2]["counts"].values())
    assert runs[2]["summary"] == f"{fetched:,} fetched, {fetched:,} new"
    limited = as_json(["runs", "--limit", "2"], shop.env)["runs"]
    assert [r["id"] for r in limited] == [3, 2]
    table = invoke(["runs", "--limit", "1"], shop.env)
    assert "import:incremental" in table.stdout and "import:full" not in table.stdout


# -- a real process ---------------------------------------------------------------------------


def test_status_json_in_a_real_subprocess(tmp_path: Path):
    staging = f"sqlite:///{tmp_path / 'staging.db'}"
    with serve(FakePim(products=20)) as pim_url:
        env = {**PIM_ENV, "PIMSYNC_PIM__BASE_URL": pim_url, "PIMSYNC_STAGING__URL": staging}
        assert invoke(["import:full", "--categories"], env).exit_code == 0
    process_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")},
        "PIMSYNC_STAGING__URL": staging,
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pimsync"), "status", "--json"],
        env=process_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = orjson.loads(done.stdout)
    categories = next(f for f in report["feeds"] if f["feed"] == "categories")
    assert categories["items"]["total"] == categories["items"]["new"] == 31
    assert categories["last_import"]["state"] == "Success"
    assert categories["last_push"] is None
    products = next(f for f in report["feeds"] if f["feed"] == "products")
    assert products["last_import"] is None and products["items"]["total"] == 0
