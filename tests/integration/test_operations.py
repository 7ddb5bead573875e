"""Operating pimsync: the run lock, stop and resume, skip, resync --failed, deletions.

In-process against the fakes, on SQLite and PostgreSQL. Real processes (overlapping cron runs,
SIGKILL, `pimsync stop`) are in tests/cli/test_operations_processes.py.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select, update

from pimsync import control, inspection, pipeline
from pimsync.app import App
from pimsync.errors import InterruptedRunError, LockHeldError
from pimsync.lock import RunLock, StopRequested, current_holder, machine_key, request_stop
from pimsync.pipeline.report import PushReport
from pimsync.staging.tables import Status, entity_tables, sync_lock, sync_runs
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.conftest import make_config
from tests.helpers import ended_pid

PRODUCTS = 60
MAGENTO_ENV = {
    "PIMSYNC_MAGENTO__BASE_URL": "http://magento.test",
    "PIMSYNC_MAGENTO__TOKEN": "magento-token",
}


@pytest.fixture
def pim() -> FakePim:
    return FakePim(products=PRODUCTS)


@pytest.fixture
def magento():
    with FakeMagento() as fake:
        yield fake


_opened: list[App] = []


def make_app(staging_url: str, pim: FakePim, magento_transport: httpx.BaseTransport, **env: str):
    config = make_config(staging_url, **MAGENTO_ENV, **env)
    app = App(
        config,
        pim_transport=httpx.MockTransport(pim),
        magento_transport=magento_transport,
        sleep=lambda _s: None,
    )
    _opened.append(app)
    return app


@pytest.fixture(autouse=True)
def _close_apps():
    yield
    while _opened:
        _opened.pop().close()


@pytest.fixture
def app(staging_url, pim, magento):
    app = make_app(staging_url, pim, httpx.MockTransport(magento))
    yield app
    app.close()


def create(app: App, **options) -> PushReport:
    options.setdefault("feeds", pipeline.order_push_feeds(()))
    return pipeline.run_push(app, "create", pipeline.PushOptions(**options))


def sku(pim: FakePim, index: int) -> str:
    return str(pim.product(index)["values"]["sku"][0]["data"])


def simple_indices(pim: FakePim) -> list[int]:
    return [i for i in range(PRODUCTS) if not pim.product(i).get("parent")]


def product_rows(app: App) -> dict[str, dict]:
    table = entity_tables["products"]
    with app.repository() as repo:
        rows = repo.connection.execute(select(table)).all()
    return {row.identifier: dict(row._mapping) for row in rows}


def runs(app: App) -> list[dict]:
    with app.repository() as repo:
        rows = repo.connection.execute(select(sync_runs).order_by(sync_runs.c.id)).all()
    return [dict(row._mapping) for row in rows]


def comparable(magento: FakeMagento, code: str) -> dict:
    """A product as Magento holds it, without what differs between two Magento instances
    (ids, timestamps): category links by category name."""
    product = magento.product(code)
    assert product is not None, code
    extension = product.get("extension_attributes", {})
    links = sorted(
        (link["position"], magento.category(int(link["category_id"]))["name"])
        for link in extension.get("category_links", [])
    )
    custom = {}
    for attribute in product.get("custom_attributes", []):
        code_, value = attribute["attribute_code"], attribute["value"]
        if code_ == "category_ids":  # ids differ between instances: names
            value = sorted(magento.category(int(v))["name"] for v in value)
        labels = {str(i): label for label, i in magento.attribute_options(code_).items()}
        if labels and isinstance(value, str):  # option ids differ between instances: labels
            value = sorted(labels.get(v, v) for v in value.split(","))
        custom[code_] = value
    media = sorted(
        (entry["position"], entry["label"], entry["media_type"], tuple(entry.get("types", [])))
        for entry in product.get("media_gallery_entries") or []
    )
    skip = {
        "id",
        "created_at",
        "updated_at",
        "extension_attributes",
        "custom_attributes",
        "media_gallery_entries",
    }
    skip.add("attribute_set_id")
    return {
        **{key: value for key, value in product.items() if key not in skip},
        "attribute_set": magento.attribute_sets[product["attribute_set_id"]]["attribute_set_name"],
        "custom_attributes": custom,
        "media": media,
        "category_links": links,
        "website_ids": extension.get("website_ids"),
    }


# -- the lock --------------------------------------------------------------------------------


def test_a_second_run_is_refused_naming_the_holder(app: App):
    holder = RunLock(app.engine(), "create")
    holder.acquire()
    try:
        with pytest.raises(LockHeldError) as refused:
            pipeline.run_full_import(app)
        assert "create" in refused.value.message
        assert f"pid {os.getpid()}" in refused.value.message
        assert refused.value.exit_code == 3
        assert runs(app) == []  # refused before anything was recorded
    finally:
        holder.release()
    assert current_holder(app.engine()) is None


def _plant_holder(
    app: App, *, host: str, pid: int, expires_in: float, machine: str | None = "another-box"
) -> None:
    now = datetime.now(UTC)
    with app.engine().begin() as connection:
        connection.execute(
            insert(sync_lock).values(
                name="staging",
                owner="someone-else",
                kind="import:full",
                host=host,
                pid=pid,
                machine=machine,
                acquired_at=now - timedelta(minutes=5),
                expires_at=now + timedelta(seconds=expires_in),
            )
        )


def test_a_live_lease_of_another_host_blocks_and_an_expired_one_does_not(app: App):
    _plant_holder(app, host="other-host", pid=4242, expires_in=300)
    with pytest.raises(LockHeldError, match="import:full on other-host pid 4242"):
        RunLock(app.engine(), "create").acquire()
    with app.engine().begin() as connection:
        connection.execute(
            update(sync_lock).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    taker = RunLock(app.engine(), "create")
    taker.acquire()  # the crashed run's lease ran out
    holder = current_holder(app.engine())
    assert holder is not None and holder.kind == "create" and holder.pid == os.getpid()
    taker.release()


def test_a_dead_holder_on_this_machine_is_taken_over_at_once(app: App):
    host, dead = socket.gethostname(), ended_pid()
    _plant_holder(app, host=host, pid=dead, expires_in=300, machine=machine_key())
    lock = RunLock(app.engine(), "create")
    lock.acquire()
    lock.release()


@pytest.mark.parametrize("machine", ["another-box", None], ids=["other machine", "unknown"])
def test_a_pid_under_this_host_name_but_of_another_machine_vouches_for_nothing(
    app: App, machine: str | None
):
    # A container beside this one with the host's network, or a clone of this machine: same
    # host name, its own pids. Its holder is alive as far as this process can know.
    host, dead = socket.gethostname(), ended_pid()
    _plant_holder(app, host=host, pid=dead, expires_in=300, machine=machine)
    with pytest.raises(LockHeldError, match=f"import:full on {host} pid {dead}"):
        RunLock(app.engine(), "create").acquire()


def test_a_crashed_run_left_in_progress_is_recorded_stopped_and_resumed(app: App):
    with app.repository() as repo:
        crashed = repo.begin_run("import:full", ["categories"], "x", "{}")
    report = pipeline.run_full_import(app)
    assert report.resumed_from == crashed
    assert list(report.feeds) == ["categories"]  # what the crashed run had to do
    assert runs(app)[0]["status"] == "stopped"
    assert "abandoned" in runs(app)[0]["message"]


def test_a_run_that_lost_its_lease_stops_at_its_next_checkpoint(app: App):
    lock = RunLock(app.engine(), "create", lease_seconds=60)
    lock.acquire()
    with app.engine().begin() as connection:  # presumed dead; another run took over
        connection.execute(update(sync_lock).values(owner="the-next-run"))
    lock.renew()
    with pytest.raises(LockHeldError, match="lost the staging lock"):
        lock.checkpoint()


def test_stop_request_reaches_the_holder_through_its_heartbeat(app: App):
    lock = RunLock(app.engine(), "create")
    lock.acquire()
    assert request_stop(app.engine()) is not None
    lock.checkpoint()  # nothing seen before the next beat
    lock.renew()
    with pytest.raises(StopRequested):
        lock.checkpoint()
    assert lock.stop_reason == "`pimsync stop`"
    lock.release()


# -- stop and resume -------------------------------------------------------------------------


class StopAfter(httpx.BaseTransport):
    """Sends SIGTERM to this process after `n` product saves, as `kill` from cron would."""

    def __init__(self, inner: httpx.BaseTransport, n: int) -> None:
        self.inner, self.n, self.saves = inner, n, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "PUT" and "/V1/products/" in request.url.path:
            self.saves += 1
            if self.saves == self.n:
                os.kill(os.getpid(), signal.SIGTERM)
        return response


def test_stop_then_resume_reaches_the_state_of_an_uninterrupted_run(staging_url, pim, tmp_path):
    with FakeMagento() as reference_magento, FakeMagento() as magento:
        reference = make_app(
            f"sqlite:///{tmp_path / 'reference.db'}", pim, httpx.MockTransport(reference_magento)
        )
        pipeline.run_full_import(reference)
        assert create(reference).exit_code == 0
        reference.close()

        stopping = StopAfter(httpx.MockTransport(magento), n=15)
        app = make_app(staging_url, pim, stopping, PIMSYNC_MAGENTO__CONCURRENCY="2")
        pipeline.run_full_import(app)
        with pytest.raises(InterruptedRunError, match="stopped on request"):
            create(app)
        stopped = runs(app)[-1]
        assert stopped["status"] == "stopped" and stopped["kind"] == "create"
        pending = [r for r in product_rows(app).values() if r["status"] != Status.SYNCED]
        assert pending, "the stop came before the end"
        assert current_holder(app.engine()) is None

        report = create(app)
        assert report.exit_code == 0
        assert report.resumed_from == stopped["id"]
        assert runs(app)[-1]["resumed_from"] == stopped["id"]
        assert all(r["status"] == Status.SYNCED for r in product_rows(app).values())
        # Same catalog in Magento, and no SKU saved more often than by the uninterrupted run.
        for index in range(PRODUCTS):
            code = sku(pim, index)
            assert comparable(magento, code) == comparable(reference_magento, code), code
        assert magento.writes_by_sku == reference_magento.writes_by_sku
        app.close()


def test_a_resumed_run_uses_the_configuration_it_started_with(staging_url, pim, magento):
    stopping = StopAfter(httpx.MockTransport(magento), n=5)
    app = make_app(staging_url, pim, stopping, PIMSYNC_MAGENTO__CONCURRENCY="1")
    pipeline.run_full_import(app)
    with pytest.raises(InterruptedRunError):
        create(app)
    app.close()
    # The operator edits the mapping meanwhile: the stopped run finishes with the old one.
    edited = make_app(
        staging_url, pim, httpx.MockTransport(magento), PIMSYNC_MAPPING__ATTRIBUTE_PREFIX="new_"
    )
    report = create(edited)
    assert report.resumed_from is not None
    assert any("configuration changed" in note for note in report.notes)
    assert not any(code.startswith("new_") for code in magento.attributes)
    assert '"attribute_prefix":"pim_"' in runs(edited)[-1]["config_snapshot"]
    # --fresh takes today's configuration.
    fresh = create(edited, fresh=True)
    assert fresh.resumed_from is None
    assert '"attribute_prefix":"new_"' in runs(edited)[-1]["config_snapshot"]
    edited.close()


def test_a_stopped_import_resumes_with_the_feeds_it_had_not_completed(staging_url, pim, magento):
    class StopOnModels(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.MockTransport(pim)
            self.armed = True

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if self.armed and "/product-models" in request.url.path:
                self.armed = False
                os.kill(os.getpid(), signal.SIGTERM)
            return self.inner.handle_request(request)

    app = make_app(staging_url, pim, httpx.MockTransport(magento), PIMSYNC_STAGING__BATCH_SIZE="5")
    app.pim_transport = StopOnModels()
    with pytest.raises(InterruptedRunError, match="feeds completed: attributes, categories"):
        pipeline.run_full_import(app)
    assert runs(app)[-1]["status"] == "stopped"
    assert product_rows(app) == {}  # stopped after the first batch of models
    report = pipeline.run_full_import(app)
    assert report.resumed_from == runs(app)[-2]["id"]
    assert list(report.feeds) == ["products", "assets"]
    products = report.feeds["products"]
    assert products.fetched == products.new + products.unchanged > PRODUCTS
    assert len(product_rows(app)) == PRODUCTS
    again = pipeline.run_full_import(app)  # the last run succeeded: a new one, every feed
    assert again.resumed_from is None
    assert list(again.feeds) == ["attributes", "categories", "products", "assets"]
    app.close()


# -- skip, resync --failed, rule 04 ----------------------------------------------------------


def test_skipped_items_are_imported_but_never_pushed_until_unskipped(app, pim, magento):
    pipeline.run_full_import(app)
    index = simple_indices(pim)[0]
    code = sku(pim, index)
    result = control.set_skipped(app, True, codes=[code, "NO-SUCH-SKU"])
    assert result.changed == 1 and result.not_found == ["NO-SUCH-SKU"]
    assert create(app).exit_code == 0
    assert magento.product(code) is None
    assert product_rows(app)[code]["status"] == Status.NEW  # status stays true
    assert create(app, force=True, feeds=["products"]).exit_code == 0  # resync skips it too
    assert magento.product(code) is None
    control.set_skipped(app, False, codes=[code])
    assert create(app).exit_code == 0
    assert magento.product(code) is not None


def test_skip_by_search_matches_code_sku_or_name(app, pim):
    pipeline.run_full_import(app)
    code = sku(pim, 3)
    result = control.set_skipped(app, True, search=code.lower(), feed="products")
    assert result.changed >= 1
    assert product_rows(app)[code]["skipped"] is True


def test_resync_failed_pushes_only_the_items_in_error(app, pim, magento):
    pipeline.run_full_import(app)
    code = sku(pim, simple_indices(pim)[0])
    magento.reject_sku(code)
    first = create(app)
    assert first.exit_code == 1 and product_rows(app)[code]["status"] == Status.ERROR
    magento.clear_faults()
    magento.reset_stats()
    before = magento.writes_by_sku
    report = pipeline.run_push(
        app,
        "resync",
        pipeline.PushOptions(feeds=list(pipeline.order_push_feeds(())), failed_only=True),
    )
    assert report.exit_code == 0
    assert product_rows(app)[code]["status"] == Status.SYNCED
    after = magento.writes_by_sku
    assert {s for s in after if after[s] != before.get(s, 0)} == {code}


def test_items_that_become_pending_during_a_push_are_pushed_before_it_ends(
    staging_url, pim, magento
):
    unskipped: list[str] = []

    class UnskipMidway(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.MockTransport(magento)

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self.inner.handle_request(request)
            if not unskipped and "/V1/products/" in request.url.path:
                unskipped.extend(first_three)
                control.set_skipped(app, False, codes=first_three)  # rows behind the cursor
            return response

    app = make_app(staging_url, pim, UnskipMidway(), PIMSYNC_MAGENTO__CONCURRENCY="1")
    pipeline.run_full_import(app)
    first_three = [sku(pim, i) for i in simple_indices(pim)[:3]]
    control.set_skipped(app, True, codes=first_three)
    report = create(app)
    assert report.exit_code == 0 and unskipped
    for code in first_three:
        assert magento.product(code) is not None, code
    app.close()


# -- deletions -------------------------------------------------------------------------------


def _delete_in_pim(app: App, pim: FakePim, indices: list[int]) -> list[str]:
    codes = [sku(pim, i) for i in indices]
    for index in indices:
        pim.delete_product(index)
    pipeline.run_full_import(app, ["products"])
    return codes


@pytest.mark.parametrize("mode", ["disable", "delete"])
def test_products_deleted_in_the_pim_are_disabled_or_deleted(staging_url, pim, magento, mode):
    app = make_app(
        staging_url,
        pim,
        httpx.MockTransport(magento),
        PIMSYNC_SYNC__DELETIONS__PRODUCTS=mode,
        PIMSYNC_SYNC__DELETION_THRESHOLD="0.1",
    )
    pipeline.run_full_import(app)
    assert create(app).exit_code == 0
    [code] = _delete_in_pim(app, pim, simple_indices(pim)[:1])
    assert create(app, force=True, feeds=["products"]).feeds["products"].deleted == 0
    assert magento.product(code)["status"] == 1  # a forced resync never exports deletions
    report = create(app)
    assert report.exit_code == 0
    assert report.feeds["products"].deleted == 1
    stored = magento.product(code)
    if mode == "delete":
        assert stored is None
    else:
        assert stored is not None and stored["status"] == 2
    row = product_rows(app)[code]
    assert row["status"] == Status.DELETED_IN_PIM and row["pushed_hash"] is None
    assert create(app).feeds["products"].deleted == 0  # exported once
    app.close()


def test_deletions_over_the_threshold_are_refused_and_kept(staging_url, pim, magento):
    app = make_app(
        staging_url, pim, httpx.MockTransport(magento), PIMSYNC_SYNC__DELETIONS__PRODUCTS="delete"
    )
    pipeline.run_full_import(app)
    assert create(app).exit_code == 0
    codes = _delete_in_pim(app, pim, simple_indices(pim)[:5])
    report = create(app)
    assert report.exit_code == 1
    assert report.feeds["products"].deletions_refused == 5
    assert any("deletion(s) refused" in note for note in report.notes)
    assert all(magento.product(code) is not None for code in codes)
    skipped = create(app, deletions=False)
    assert skipped.exit_code == 0 and skipped.feeds["products"].deletions_refused == 0


def test_ignore_is_the_default(app, pim, magento):
    pipeline.run_full_import(app)
    create(app)
    [code] = _delete_in_pim(app, pim, simple_indices(pim)[:1])
    assert create(app).exit_code == 0
    assert magento.product(code) is not None


def test_the_lock_table_is_empty_after_every_run(app: App):
    pipeline.run_full_import(app)
    create(app)
    with app.engine().connect() as connection:
        assert connection.execute(select(sync_lock)).all() == []
    with app.repository() as repo:
        assert repo.connection.scalar(select(sync_runs.c.status).order_by(sync_runs.c.id.desc()))


@pytest.mark.postgres
def test_a_machine_whose_clock_runs_ahead_leaves_a_live_lease_alone(
    postgres_url: str, clock_ahead: Callable[[], None]
):
    # Leases are stamped and compared with the PostgreSQL server's clock, the one clock every
    # machine shares: by its own clock this machine would find the holder's lease long over.
    with _lock_held_on(postgres_url, "import:full") as (app, holder):
        clock_ahead()
        with pytest.raises(LockHeldError, match="another run holds the staging database"):
            RunLock(app.engine(), "create").acquire()
        holder.renew()
        holder.checkpoint()  # the lease is still the holder's


@pytest.mark.postgres
def test_status_runs_and_stop_on_a_machine_whose_clock_runs_ahead_see_a_live_run(
    postgres_url: str, clock_ahead: Callable[[], None]
):
    # What `status`, `runs`, `log` and `stop` say of a run's lease is read by the server's
    # clock too: by its own, this machine would say the live run's heartbeat stopped.
    with _lock_held_on(postgres_url, "create") as (app, holder):
        with app.repository() as repo:
            run_id = repo.begin_run("create", ["products"], "fingerprint", "{}")
        holder.attach_run(run_id)
        clock_ahead()
        report = inspection.status(app)
        assert report.lock is not None and report.lock["run_id"] == run_id
        assert report.lock["expired"] is False
        [run] = [run for run in inspection.list_runs(app).runs if run.id == run_id]
        assert not run.stale and run.state == "In progress"
        logged = inspection.run_log(app, run_id=run_id).run
        assert logged is not None and not logged.stale
        asked = control.ask_to_stop(app)
        assert asked.holder is not None and not asked.looked_dead
        with pytest.raises(StopRequested):  # and the stop still reaches the run
            holder.renew()
            holder.checkpoint()


@contextmanager
def _lock_held_on(postgres_url: str, kind: str) -> Iterator[tuple[App, RunLock]]:
    """The run lock of a PostgreSQL staging database, held (renewed by hand, no heartbeat)."""
    app = App(make_config(postgres_url))
    holder = RunLock(app.engine(), kind)
    holder.acquire()
    try:
        yield app, holder
    finally:
        holder.release()
        app.close()
