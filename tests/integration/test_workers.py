"""Several workers on one push: PostgreSQL claims, real processes, every change pushed once."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from pimsync import pipeline
from pimsync.app import App
from pimsync.errors import MagentoError, UsageError
from pimsync.lock import machine_key
from pimsync.pipeline import workers
from pimsync.pipeline.workers import run_worker
from pimsync.staging.prepare import StagedItem
from pimsync.staging.repository import StagingRepository
from pimsync.staging.tables import Status, entity_tables, sync_runs
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import serve
from tests.conftest import PIM_ENV, make_config
from tests.helpers import ended_pid

MAGENTO_TOKEN = "magento-token"


def push_env(staging_url: str, magento_url: str) -> dict[str, str]:
    return {
        **PIM_ENV,
        "PIMSYNC_STAGING__URL": staging_url,
        "PIMSYNC_MAGENTO__BASE_URL": magento_url,
        "PIMSYNC_MAGENTO__TOKEN": MAGENTO_TOKEN,
    }


def imported_app(staging_url: str, pim: FakePim | str, magento_url: str) -> App:
    """An App that imported the catalog: from a FakePim in-process, or from a PIM URL (then the
    staged image URLs point at it, so other processes can download them)."""
    env = {"PIMSYNC_MAGENTO__BASE_URL": magento_url, "PIMSYNC_MAGENTO__TOKEN": MAGENTO_TOKEN}
    if isinstance(pim, str):
        env["PIMSYNC_PIM__BASE_URL"] = pim
    config = make_config(staging_url, **env)
    transport = None if isinstance(pim, str) else httpx.MockTransport(pim)
    app = App(config, pim_transport=transport, sleep=lambda _s: None)
    pipeline.run_full_import(app)
    return app


def ready_for_products(staging_url: str, pim: FakePim, magento_url: str) -> App:
    """An App that imported the catalog and pushed its attributes and categories: what
    `create --feed products` needs."""
    app = imported_app(staging_url, pim, magento_url)
    before = pipeline.run_push(
        app, "create", pipeline.PushOptions(feeds=["attributes", "categories"])
    )
    assert before.exit_code == 0, before.errors
    return app


def pimsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pimsync", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def expected_writes(app: App) -> dict[str, int]:
    """Product saves per SKU that pushing each product once makes: its global part, then each
    store view part with content (what one uninterrupted single-process push sends)."""
    expected = {}
    with app.repository() as repo:
        for entity in ("product_models", "products"):
            table = entity_tables[entity]
            query = select(table.c.code, table.c.identifier, table.c.pushed_payload)
            for code, identifier, payload in repo.connection.execute(query):
                if payload is None:
                    continue
                parts = orjson.loads(payload)
                sku = parts["all"].get("sku") or identifier or code
                expected[sku] = 1 + sum(1 for store in parts["stores"].values() if store)
    return expected


@pytest.mark.postgres
def test_four_worker_processes_push_every_change_exactly_once(postgres_url: str, tmp_path: Path):
    pim = FakePim(products=5000)
    with FakeMagento() as magento, serve(magento) as url, serve(pim) as pim_url:
        app = imported_app(postgres_url, pim_url, url)
        env = {**push_env(postgres_url, url), "PIMSYNC_PIM__BASE_URL": pim_url}
        done = pimsync("--log-format", "json", "create", "--workers", "4", "--json", env=env)
        assert done.returncode == 0, done.stderr
        # The workers log to the coordinator's stderr as it does: JSON records only, their
        # progress (info) included.
        records = [orjson.loads(line) for line in done.stderr.splitlines()]
        joined = {r["message"].split()[1] for r in records if " joins run " in r["message"]}
        assert joined, records  # the coordinator never joins: these are its workers
        report = orjson.loads(done.stdout)
        assert report["status"] == "success"
        assert report["notes"] == []
        expected = expected_writes(app)
        assert len(expected) > 5000
        assert dict(magento.writes_by_sku) == expected
        products = report["feeds"]["products"]
        assert products["created"] + products["updated"] > 0 and products["failed"] == 0
        table = entity_tables["products"]
        with app.repository() as repo:
            rows = repo.connection.execute(
                select(table.c.status, table.c.claimed_by, table.c.pushed_at)
            ).all()
            claimants = repo.connection.execute(
                select(table.c.claimed_by).where(table.c.claimed_by.is_not(None))
            ).all()
        assert {row.status for row in rows} == {Status.SYNCED}
        assert claimants == []  # every claim was released with its outcome

        # Nothing left to push: the workers started before the run lock are never given a
        # run, and end with the command, without a request to Magento.
        requests = magento.request_count()
        marker = str(tmp_path / "nothing-to-push.json")  # in every process's argv, forks too
        again = pimsync("--report", marker, "create", "--workers", "4", "--json", env=env)
        assert again.returncode == 0, again.stderr
        assert orjson.loads(again.stdout)["status"] == "success"
        assert magento.request_count() == requests
        assert processes_running_with(marker) == []
        app.close()


def processes_running_with(argument: str) -> list[int]:
    """The pids of the processes that have `argument` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or it ended meanwhile
            continue
        if argument.encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.postgres
def test_a_worker_on_another_machine_joins_and_feed_order_holds(postgres_url: str):
    """A `pimsync worker` started separately joins the running create; no variant is saved
    before its configurable parent exists in Magento."""
    pim = FakePim(products=300)
    with FakeMagento(latency=0.002) as magento, serve(magento) as url:
        app = imported_app(postgres_url, pim, url)
        stop = threading.Event()
        joined: list[int] = []
        worked: list[str] = []

        def other_machine() -> None:
            worker_app = App(make_config(postgres_url, PIMSYNC_MAGENTO__BASE_URL=url,
                                         PIMSYNC_MAGENTO__TOKEN=MAGENTO_TOKEN))  # fmt: skip
            report = run_worker(worker_app, should_stop=stop.is_set)
            joined.extend(report.runs)
            worked.extend(report.counts)
            worker_app.close()

        thread = threading.Thread(target=other_machine)
        thread.start()
        try:
            report = pipeline.run_push(
                app,
                "create",
                pipeline.PushOptions(feeds=pipeline.order_push_feeds(()), workers=2),
            )
        finally:
            stop.set()
            thread.join(timeout=60)
        assert report.exit_code == 0, report.errors
        with app.repository() as repo:
            run_id = repo.connection.scalar(select(sync_runs.c.id).order_by(sync_runs.c.id.desc()))
        assert joined == [run_id]
        assert set(worked) >= {"products", "variants"}  # more than one phase of the run
        # The run's context is built once per process, not once per phase: the coordinator
        # and the worker each read Magento's store views a single time.
        assert magento.request_count("GET", "/V1/store/storeViews") == 2
        order = [r.path for r in magento.requests if r.method == "PUT" and "/products/" in r.path]
        parents = {
            child: parent
            for parent in magento.products
            for child in magento.configurable_children(parent)
        }
        first_seen = {}
        for index, path in enumerate(order):
            first_seen.setdefault(path.rsplit("/", 1)[-1], index)
        for child, parent in parents.items():
            assert first_seen[parent] < first_seen[child], (parent, child)
        app.close()


def test_workers_on_sqlite_are_declined_with_a_note(tmp_path: Path):
    pim = FakePim(products=20)
    with FakeMagento() as magento, serve(magento) as url:
        app = imported_app(f"sqlite:///{tmp_path / 'staging.db'}", pim, url)
        report = pipeline.run_push(
            app, "create", pipeline.PushOptions(feeds=pipeline.order_push_feeds(()), workers=4)
        )
        assert report.exit_code == 0
        assert any("SQLite serves one machine" in note for note in report.notes)
        with pytest.raises(UsageError, match="needs a PostgreSQL staging database"):
            run_worker(app, idle_timeout=0)
        app.close()


@pytest.mark.parametrize(
    ("error", "exit_code", "line"),
    [
        (RuntimeError("boom"), 70, "worker stopped: internal error: RuntimeError: boom"),
        (MagentoError("Magento refused the token"), 4, "worker stopped: Magento refused the token"),
    ],
    ids=["bug", "pimsync-error"],
)
def test_a_forked_worker_that_fails_says_why_in_one_line_and_exits_with_its_code(
    error: Exception,
    exit_code: int,
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """What the CLI says of a failed command, a worker forked by `create --workers` says in its
    log: the error in one line, no traceback (a bug's is for --debug), and the same exit code."""

    def failing_run_worker(app: App, **options: object) -> None:
        raise error

    monkeypatch.setattr(workers, "run_worker", failing_run_worker)
    log_file = tmp_path / "worker.log"
    handler = logging.FileHandler(log_file)  # a forked worker inherits it
    logger = logging.getLogger("pimsync.workers")
    logger.addHandler(handler)
    app = App(make_config(f"sqlite:///{tmp_path / 'staging.db'}"))
    try:
        worker = workers._ForkedWorker(app, [])
        worker.assign(1)
        worker.close()
        assert worker.wait(60)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert worker._process.exitcode == exit_code
    assert log_file.read_text().splitlines() == [line]


@pytest.mark.postgres
def test_a_local_worker_whose_coordinator_never_assigns_a_run_exits_without_working(
    postgres_url: str,
):
    """`create --workers` starts its workers before its run begins; a coordinator that fails
    before that closes their stdin, and they exit at once instead of waiting for work."""
    with FakeMagento() as magento, serve(magento) as url:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pimsync", "worker", "--run-from-stdin", "--json"],
            env={"PATH": os.environ.get("PATH", ""), **push_env(postgres_url, url)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = worker.communicate(b"", timeout=120)
        assert worker.returncode == 0, err
        assert orjson.loads(out) == {"runs": [], "feeds": {}}
        assert magento.request_count() == 0


@pytest.mark.postgres
def test_a_worker_for_a_run_that_ended_without_a_phase_returns(postgres_url: str):
    """A run that never had products to share (`create --feed attributes --workers 4` has no
    phase) lets its workers go as soon as it ends, rather than after the coordinator's grace."""
    pim = FakePim(products=20)
    with FakeMagento() as magento, serve(magento) as url:
        app = imported_app(postgres_url, pim, url)
        report = pipeline.run_push(app, "create", pipeline.PushOptions(feeds=["attributes"]))
        assert report.exit_code == 0 and report.run_id is not None
        bound = threading.Event()
        timer = threading.Timer(60, bound.set)  # the test's own bound, never reached if fixed
        timer.start()
        try:
            worker = run_worker(app, run_id=report.run_id, should_stop=bound.is_set)
        finally:
            timer.cancel()
        assert not bound.is_set()  # it returned because the run ended, not at the bound
        assert worker.runs == []
        app.close()


@pytest.mark.postgres
def test_a_stop_signal_to_create_and_its_workers_stops_the_run_and_a_rerun_resumes(
    postgres_url: str, tmp_path: Path
):
    """SIGTERM to the process group of `create --workers 3` (what a service manager sends):
    the coordinator and its workers stop after their batches, the run is `stopped` (exit 130)
    and no process is left; the next `create` finishes the push."""
    pim = FakePim(products=1000)
    with FakeMagento(latency=0.05) as magento, serve(magento) as url, serve(pim) as pim_url:
        app = imported_app(postgres_url, pim_url, url)
        env = {**push_env(postgres_url, url), "PIMSYNC_PIM__BASE_URL": pim_url}
        marker = str(tmp_path / "stopped.json")
        create = subprocess.Popen(
            [sys.executable, "-m", "pimsync", "--report", marker, "--log-format", "json",
             "create", "--workers", "3", "--json"],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert create.stdout is not None and create.stderr is not None
        lines: list[bytes] = []
        joined = threading.Event()

        def read_stderr() -> None:
            assert create.stderr is not None
            for line in create.stderr:
                lines.append(line)
                if b" joins run " in line:
                    joined.set()

        reader = threading.Thread(target=read_stderr)
        reader.start()
        try:
            # Stop it once a worker works on the products, well before their end.
            deadline = time.monotonic() + 120
            while not (joined.is_set() and magento.request_count("PUT", "/V1/products/*") >= 50):
                assert create.poll() is None and time.monotonic() < deadline, lines
                time.sleep(0.02)
            os.killpg(create.pid, signal.SIGTERM)
            create.wait(timeout=120)
        finally:
            if create.poll() is None:
                os.killpg(create.pid, signal.SIGKILL)
            reader.join(timeout=60)
            create.stdout.close()
            create.stderr.close()
        err = b"".join(lines)
        assert create.returncode == 130, err
        assert all(orjson.loads(line) for line in lines)  # the workers' lines too: JSON only
        assert processes_running_with(marker) == []
        with app.repository() as repo:
            status = repo.connection.scalar(
                select(sync_runs.c.status).order_by(sync_runs.c.id.desc())
            )
            pending = repo.count_pending("products", include_new=True, has_parent=None)
        assert status == "stopped"
        assert pending > 0  # stopped part-way, not run to its end

        done = pimsync("create", "--workers", "3", "--json", env=env)
        assert done.returncode == 0, done.stderr
        with app.repository() as repo:
            assert repo.count_pending("products", include_new=True, has_parent=None) == 0
        app.close()


@pytest.mark.postgres
def test_a_worker_asked_to_stop_claims_no_more_while_the_run_goes_on(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    """A worker asked to stop (SIGTERM from its service manager: `should_stop`) settles the
    batch it holds and claims no more, rather than pushing on to the end of the phase; the run
    goes on without it, and it leaves no claim behind to wait for its lease."""
    with FakeMagento(latency=0.02) as magento, serve(magento) as url:
        app = ready_for_products(postgres_url, FakePim(products=300), url)
        # One request at a time per process: the phase lasts well beyond the stop.
        env = {**push_env(postgres_url, url), "PIMSYNC_MAGENTO__CONCURRENCY": "1"}
        stop = threading.Event()
        claims: list[tuple[bool, str, int]] = []  # (asked to stop already, entity, rows)
        claim_pending = StagingRepository.claim_pending

        def recorded(repo: StagingRepository, entity: str, *args: Any, **kwargs: Any) -> list[Any]:
            rows = claim_pending(repo, entity, *args, **kwargs)
            claims.append((stop.is_set(), entity, len(rows)))
            return rows

        # This process's worker only: the coordinator and its own worker run elsewhere.
        monkeypatch.setattr(StagingRepository, "claim_pending", recorded)
        magento_settings = {k: v for k, v in env.items() if k.startswith("PIMSYNC_MAGENTO")}
        worker_app = App(make_config(postgres_url, **magento_settings))
        worked: list[int] = []
        worker = threading.Thread(
            target=lambda: worked.extend(run_worker(worker_app, should_stop=stop.is_set).runs)
        )
        worker.start()
        create = subprocess.Popen(
            [sys.executable, "-m", "pimsync", "create", "--feed", "products", "--workers", "2"],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 120
            # Stop it early in the simple products' phase, the longest of the run.
            while sum(1 for _, entity, rows in claims if entity == "products" and rows) < 3:
                assert time.monotonic() < deadline and create.poll() is None
                time.sleep(0.01)
            stop.set()
            worker.join(timeout=120)
            assert not worker.is_alive()
            assert [rows for asked, _, rows in claims if asked] == []  # none once asked to stop
            assert create.poll() is None  # the run goes on without it
            with app.repository() as repo:
                held = [w for w in repo.claimers("products") if f":{os.getpid()}:" in w]
            assert held == []  # what it claimed, it pushed and marked before leaving
            create.send_signal(signal.SIGTERM)
            _, err = create.communicate(timeout=120)
            assert create.returncode == 130, err
        finally:
            stop.set()
            if create.poll() is None:
                create.kill()
                create.wait()
            worker.join(timeout=60)
            worker_app.close()
        assert len(worked) == 1
        app.close()


def test_claims_of_a_process_gone_from_this_machine_are_known_as_such():
    gone = ended_pid()
    here, machine = socket.gethostname(), machine_key()
    assert workers.claimer_gone(f"{here}:{gone}:{machine}:0a1b2c3d")
    # Ended but not reaped yet (a killed local worker until its create waits for it).
    unreaped = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, unreaped.pid, os.WEXITED | os.WNOWAIT)
    assert workers.claimer_gone(f"{here}:{unreaped.pid}:{machine}:0a1b2c3d")
    unreaped.wait()
    assert not workers.claimer_gone(f"{here}:{os.getpid()}:{machine}:0a1b2c3d")  # this one
    # Another machine under the same host name (a container beside this one with the host's
    # network, a cloned VM): its pids are not ours to look up.
    assert not workers.claimer_gone(f"{here}:{gone}:0123456789ab:0a1b2c3d")
    assert not workers.claimer_gone(f"{here}:{gone}:0a1b2c3d")  # an older pimsync's id
    assert not workers.claimer_gone("not a worker id")


def test_a_worker_id_fits_its_column_whatever_the_host_name(monkeypatch: pytest.MonkeyPatch):
    machine, longest = machine_key(), "h" * 64  # HOST_NAME_MAX on Linux
    monkeypatch.setattr(workers.socket, "gethostname", lambda: longest)
    worker = workers.worker_id()
    width = entity_tables["products"].c.claimed_by.type.length
    assert width is not None and len(worker) <= width
    assert worker.startswith("h" * 32 + f":{os.getpid()}:{machine}:")
    assert not workers.claimer_gone(worker)  # this process


@pytest.mark.postgres
def test_a_killed_create_leaves_no_worker_behind_and_the_next_one_takes_back_its_claims(
    postgres_url: str, tmp_path: Path
):
    """SIGKILL to the coordinator alone (the OOM killer, say): its local workers leave after
    their batch instead of waiting for it forever, and the next `create` gives back at once
    the rows the dead coordinator had claimed rather than waiting 300 s for their lease."""
    with FakeMagento(latency=0.02) as magento, serve(magento) as url:
        app = ready_for_products(postgres_url, FakePim(products=300), url)
        env = {**push_env(postgres_url, url), "PIMSYNC_MAGENTO__CONCURRENCY": "1"}
        marker = str(tmp_path / "killed.json")  # in the argv of the create and its forks
        create = subprocess.Popen(
            [sys.executable, "-m", "pimsync", "-v", "--report", marker,
             "create", "--feed", "products", "--workers", "3"],
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        try:
            assert create.stderr is not None
            for line in create.stderr:  # its workers log there: wait for the simple products
                if b" joins run " in line and line.rstrip().endswith(b"products products"):
                    break
            else:
                raise AssertionError("no worker joined the products phase")
            pushed = magento.request_count("PUT", "/V1/products/*")
            deadline = time.monotonic() + 60
            while magento.request_count("PUT", "/V1/products/*") < pushed + 30:
                assert time.monotonic() < deadline and create.poll() is None
                time.sleep(0.01)
            create.kill()
            create.wait()
            while processes_running_with(marker):
                assert time.monotonic() < deadline + 60, "a worker outlived its create"
                time.sleep(0.1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(create.pid, signal.SIGKILL)
            create.stderr.close()
        with app.repository() as repo:
            assert repo.claimers("products")  # the dead coordinator's, with their lease
        faster = {**env, "PIMSYNC_MAGENTO__CONCURRENCY": "8"}
        done = pimsync("create", "--feed", "products", "--workers", "3", env=faster)
        assert done.returncode == 0, done.stderr
        assert re.search(r"gave back \d+ products claimed by \S+: the process is gone", done.stderr)
        with app.repository() as repo:
            assert repo.count_pending("products", include_new=True, has_parent=False) == 0
            assert repo.claimers("products") == []
        app.close()


@pytest.mark.postgres
def test_a_worker_whose_clock_runs_ahead_claims_no_live_claim_of_another(
    postgres_url: str, clock_ahead: Callable[[], None]
):
    app = App(make_config(postgres_url))
    with app.repository() as repo:
        items = [StagedItem(f"sku-{i}", "{}", f"{i:064d}") for i in range(6)]
        repo.upsert_fetched("products", items)
        repo.commit()
        first = repo.claim_pending("products", "worker-a", limit=4, lease_seconds=300)
        clock_ahead()  # by its own clock, the first worker's 300 s lease is over
        second = repo.claim_pending("products", "worker-b", limit=6, lease_seconds=300)
        assert [row["code"] for row in first] == ["sku-0", "sku-1", "sku-2", "sku-3"]
        assert [row["code"] for row in second] == ["sku-4", "sku-5"]
        assert sorted(repo.claimers("products")) == ["worker-a", "worker-b"]
    app.close()
