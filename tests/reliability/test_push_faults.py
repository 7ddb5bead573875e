"""Pushes under Magento faults, at the pipeline level: the catalog Magento ends with, and what
staging claims about it.

Faults are aimed at one kind of request (category creates, option adds, product saves, image
uploads, bulk submissions) with `FakeMagento.fail_next`/`garble_next`, before Magento handles
the request or after it (the write took effect, its answer was lost). A burst shorter than the
retries must leave Magento exactly as a fault-free push does (same ids: one worker, same order),
with nothing created twice; a fault that outlasts the retries must stop the run with exit 4 and
one line, mark synced only what Magento holds, and let the next push finish the job.

Not repeated here: the client's retries, Retry-After, 401, error bodies in a 200, HTML 200 and
lost answers on single calls (tests/unit/test_magento_client.py), bulk result mapping
(tests/unit/test_magento_bulk.py), a rejected SKU and a 401 during a push
(tests/integration/test_push.py). The matrix runs on SQLite (a copy of one imported staging
file); the stop-and-resume case also runs on PostgreSQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pimsync import pipeline
from pimsync.errors import MagentoError
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.reliability.support import (
    assert_each_product_created_once,
    assert_everything_synced,
    assert_synced_only_what_magento_holds,
    build_app,
    create,
    duplicates,
    last_run,
    magento_state,
    rows,
    status_counts,
)

ATTEMPTS = 5  # [magento] max_attempts, default
ONE_WORKER = {"PIMSYNC_MAGENTO__CONCURRENCY": "1"}

Fault = Callable[[FakeMagento, int, str], None]
FAULTS: dict[str, Fault] = {
    "5xx burst": lambda fm, n, path: fm.fail_next(n, 503, path=path),
    "429 storm": lambda fm, n, path: fm.fail_next(n, 429, retry_after=20, path=path),
    "timeouts": lambda fm, n, path: fm.garble_next(n, "timeout", path=path),
    "connection resets": lambda fm, n, path: fm.drop_next(n, path=path),
    "truncated JSON": lambda fm, n, path: fm.garble_next(n, "truncated", path=path),
    "HTML page with 200": lambda fm, n, path: fm.garble_next(n, "html", path=path),
    # The write took effect; only its answer is lost. Repeating a create blindly duplicates.
    "502 after the write": lambda fm, n, path: fm.fail_next(n, 502, path=path, after=True),
    "timeout after the write": lambda fm, n, path: fm.garble_next(
        n, "timeout", path=path, after=True
    ),
    "truncated after the write": lambda fm, n, path: fm.garble_next(
        n, "truncated", path=path, after=True
    ),
}
LOST_ANSWERS = [name for name in FAULTS if "after the write" in name]
SKU = "SKU-" + "[0-9]" * 7
TARGETS = {
    "category creates": "/V1/categories",
    "option adds": "/V1/products/attributes/*/options",
    "product saves": f"/V1/products/{SKU}",
    "image uploads": f"/V1/products/{SKU}/media",
    "bulk submissions": "/async/bulk/V1/products/bySku",
}


@pytest.fixture(scope="module")
def reference(
    imported: Path, push_pim: FakePim, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Magento after a fault-free push with one worker."""
    target = tmp_path_factory.mktemp("reference") / "staging.db"
    shutil.copy(imported, target)
    with FakeMagento() as fm:
        app = build_app(f"sqlite:///{target}", push_pim, fm, **ONE_WORKER)
        assert create(app).exit_code == 0
        app.close()
        return magento_state(fm)


TRANSIENT = [
    ("5xx burst", "product saves"),
    ("429 storm", "option adds"),
    ("timeouts", "category creates"),
    ("connection resets", "image uploads"),
    ("truncated JSON", "product saves"),
    ("HTML page with 200", "category creates"),
    ("502 after the write", "category creates"),
    ("502 after the write", "image uploads"),
    ("timeout after the write", "image uploads"),
    ("truncated after the write", "option adds"),
]


@pytest.mark.parametrize(("fault", "target"), TRANSIENT)
def test_a_burst_shorter_than_the_retries_leaves_magento_as_a_clean_push_does(
    staging, push_pim, magento, reference, fault, target
):
    sleeps: list[float] = []
    FAULTS[fault](magento, ATTEMPTS - 1, TARGETS[target])
    app = build_app(staging, push_pim, magento, sleeps, **ONE_WORKER)
    report = create(app)
    assert (report.exit_code, report.failed) == (0, 0), report.errors
    assert magento.faults.take_scripted(TARGETS[target]) is None, "the burst did not happen"
    assert duplicates(magento) == {}
    assert magento_state(magento) == reference
    assert_everything_synced(app)
    if fault == "429 storm":
        assert sleeps == [20.0] * (ATTEMPTS - 1)
    app.close()


def stop_then_resume(staging: str, pim: FakePim, fm: FakeMagento, fault: str, target: str):
    """Push into a fault that outlasts the retries, check the stop, then push again."""
    FAULTS[fault](fm, 1000, TARGETS[target])
    app = build_app(staging, pim, fm, **ONE_WORKER)
    with pytest.raises(MagentoError) as stopped:
        create(app)
    error = stopped.value
    assert error.exit_code == 4
    assert error.message.startswith("push stopped: Magento unavailable")
    assert "\n" not in error.message
    assert last_run(app)["status"] == "failed"
    assert_synced_only_what_magento_holds(app, fm)
    assert duplicates(fm) == {}
    fm.clear_faults()
    report = create(app)
    assert (report.exit_code, report.failed) == (0, 0), report.errors
    assert_everything_synced(app)
    assert_synced_only_what_magento_holds(app, fm)
    assert duplicates(fm) == {}
    app.close()


def assert_same_catalog_as(reference: dict[str, Any], fm: FakeMagento) -> None:
    """The same products, categories and images as the reference (ids may differ: a resumed
    push creates things in another order)."""
    state = magento_state(fm)
    assert set(state["products"]) == set(reference["products"])
    assert_each_product_created_once(fm)
    assert len(state["categories"]) == len(reference["categories"])
    for sku, product in reference["products"].items():
        assert len(state["products"][sku]["media"]) == len(product["media"]), sku


PERSISTENT = [
    ("5xx burst", "product saves"),
    ("429 storm", "product saves"),
    ("timeouts", "category creates"),
    ("connection resets", "option adds"),
    ("truncated JSON", "image uploads"),
    ("HTML page with 200", "product saves"),
]


@pytest.mark.parametrize(("fault", "target"), PERSISTENT)
def test_a_fault_outlasting_the_retries_stops_and_marks_only_what_magento_holds(
    staging, push_pim, magento, reference, fault, target
):
    stop_then_resume(staging, push_pim, magento, fault, target)
    assert_same_catalog_as(reference, magento)


LOST_EVERYWHERE = {
    "category creates": TARGETS["category creates"],  # the lookup (categories/list) works
    "category creates and lookups": "/V1/categories*",
    "option adds and lookups": TARGETS["option adds"],
    "image uploads and lookups": TARGETS["image uploads"],
}


@pytest.mark.parametrize(
    "target",
    [
        *[name for name in LOST_EVERYWHERE if not name.startswith("image")],
        "image uploads and lookups",
    ],
)
def test_creates_whose_every_answer_is_lost_are_never_repeated(
    staging, push_pim, magento, reference, target
):
    """Every answer lost after the write: pimsync looks for what it created before trying
    again. It finds it (the run goes on) or cannot look either (the run stops, and the next
    run must find it then); never twice, and never stuck on its own earlier write."""
    FAULTS["502 after the write"](magento, 1000, LOST_EVERYWHERE[target])
    app = build_app(staging, push_pim, magento, **ONE_WORKER)
    try:
        create(app)
    except MagentoError as stopped:
        assert stopped.exit_code == 4
    assert duplicates(magento) == {}
    assert_synced_only_what_magento_holds(app, magento)
    magento.clear_faults()
    report = create(app)
    assert (report.exit_code, report.failed) == (0, 0), report.errors
    assert duplicates(magento) == {}
    assert_everything_synced(app)
    assert_same_catalog_as(reference, magento)
    app.close()


def test_stop_and_resume_on_both_backends(staging_url, push_pim, magento):
    app = build_app(staging_url, push_pim)
    pipeline.run_full_import(app)
    app.close()
    stop_then_resume(staging_url, push_pim, magento, "502 after the write", "product saves")


@pytest.mark.parametrize(
    ("fault", "transient"),
    [("5xx burst", True), ("timeout after the write", True), ("connection resets", False)],
)
def test_bulk_submissions_under_faults(staging, push_pim, fault, transient):
    """Bulk mode: a lost 202 makes pimsync submit again; Magento then runs the same saves twice,
    which a PUT by SKU makes harmless (an update, never a second product). Magento's consumer
    runs whenever pimsync waits between polls, so no thread timing is involved."""
    bulk = {"PIMSYNC_MAGENTO__MODE": "bulk", **ONE_WORKER}
    with FakeMagento(consumer=False) as magento:

        def consume(_seconds: float) -> None:
            magento.drain()

        app = build_app(staging, push_pim, magento, consume, **bulk)
        if transient:
            FAULTS[fault](magento, ATTEMPTS - 1, TARGETS["bulk submissions"])
            report = create(app)
            assert (report.exit_code, report.failed) == (0, 0), report.errors
            assert_everything_synced(app)
            assert_synced_only_what_magento_holds(app, magento)
            models = [row for row in rows(app, "product_models").values() if not row["parent_code"]]
            products = sum(status_counts(app, "products").values())
            assert magento.product_count() == products + len(models)
            assert_each_product_created_once(magento)
            app.close()
            return
        FAULTS[fault](magento, 1000, TARGETS["bulk submissions"])
        with pytest.raises(MagentoError) as stopped:
            create(app)
        assert stopped.value.exit_code == 4
        assert_synced_only_what_magento_holds(app, magento)
        assert "synced" not in status_counts(app, "products")
        app.close()
