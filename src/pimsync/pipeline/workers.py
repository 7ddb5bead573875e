"""Several workers on one push, on several machines: PostgreSQL claims, phases in feed order.

`pimsync create --workers N` on a PostgreSQL staging database: the process that runs `create`
is the coordinator. It holds the run lock, pushes attributes, categories and assets itself (they
are small, and ordered within themselves), and for products and variants it publishes a *phase*
(`sync_state["push_phase"]`: run, feed, entity) that any number of workers join: the N - 1 it
starts on this machine and every `pimsync worker` started on other machines against the same
database. Everyone in a phase, the coordinator included, claims batches of pending rows with
`SELECT ... FOR UPDATE SKIP LOCKED` and a lease, pushes them and marks them; a worker that dies
gives its rows back when the lease runs out. The coordinator moves to the next phase only when
nothing of the current one is pending, so feed order holds across machines: no variant is sent
before its configurable parent, no product before the attributes and categories it uses.

SQLite has no row locks to skip and serves one machine: there `--workers` is declined with a
note and the push uses its in-process concurrency.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from pimsync.app import App
from pimsync.errors import UsageError
from pimsync.magento.client import MagentoClient
from pimsync.pim.client import PimClient
from pimsync.pipeline.push_context import build_catalog_context, load_context, refresh_ids
from pimsync.pipeline.push_items import PushContext
from pimsync.pipeline.push_runner import Runner
from pimsync.pipeline.report import FeedPush, PushReport
from pimsync.pipeline.resume import config_from_snapshot
from pimsync.staging.repository import StagingRepository

log = logging.getLogger("pimsync.workers")

PHASE_KEY = "push_phase"
# The entities workers share; the rest is pushed by the coordinator alone.
SHARED_ENTITIES = ("product_models", "products")
CLAIM_LEASE_SECONDS = 300.0
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Phase:
    """What the workers of a run push now."""

    run_id: int
    feed: str
    entity: str
    has_parent: bool | None
    include_new: bool
    state: str = "running"  # "running", or "done" when the run has nothing more for workers

    def dumps(self) -> str:
        return orjson.dumps(
            {
                "run_id": self.run_id,
                "feed": self.feed,
                "entity": self.entity,
                "has_parent": self.has_parent,
                "include_new": self.include_new,
                "state": self.state,
            }
        ).decode()

    @classmethod
    def loads(cls, text: str | None) -> Phase | None:
        if not text:
            return None
        data = orjson.loads(text)
        return cls(**data)


def require_postgresql(app: App, what: str) -> None:
    if app.engine().dialect.name != "postgresql":
        raise UsageError(
            f"{what} needs a PostgreSQL staging database: SQLite serves one machine",
            hint="use [magento] concurrency for parallel requests from this process",
        )


class ClaimingRunner(Runner):
    """A Runner whose products and variants come from claims, shared with other workers."""

    def __init__(self, *args: Any, worker_id: str, coordinator: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id
        self.coordinator = coordinator

    def _claim_size(self) -> int:
        return self.config.magento.concurrency * 4

    def _rows(
        self, entity: str, has_parent: bool | None, batch: int = 0, *, forced: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        if entity not in SHARED_ENTITIES:
            yield from super()._rows(entity, has_parent, batch, forced=forced)
            return
        while not self.halted():
            rows = self.repo.claim_pending(
                entity,
                self.worker_id,
                limit=batch or self._claim_size(),
                lease_seconds=CLAIM_LEASE_SECONDS,
                include_new=self._include_new(),
                has_parent=has_parent,
            )
            if not rows:
                return
            yield rows

    def halted(self) -> bool:
        """The coordinator checks its lock; a worker whether its run still goes on."""
        if self.coordinator:
            return self._halt() is not None
        run_id = self.report.run_id
        return run_id is None or self.repo.run_status(run_id) != "in_progress"

    def _push_entity(
        self, feed: str, entity: str, has_parent: bool | None, counts: FeedPush
    ) -> None:
        if entity not in SHARED_ENTITIES or not self.coordinator:
            super()._push_entity(feed, entity, has_parent, counts)
            return
        run_id = self.report.run_id
        assert run_id is not None
        phase = Phase(run_id, feed, entity, has_parent, self._include_new())
        self.repo.set_state(PHASE_KEY, phase.dumps())
        self.repo.commit()
        # Claim and push with the others until nothing is pending: rows claimed by a worker
        # that died come back when their lease runs out, and are pushed here if need be.
        while True:
            super()._push_entity(feed, entity, has_parent, counts)
            self.checkpoint()
            pending = self.repo.count_pending(
                entity, include_new=self._include_new(), has_parent=has_parent
            )
            self.repo.commit()
            if pending == 0:
                break
            time.sleep(POLL_SECONDS)
        self._count_from_log(feed, counts)

    def _count_from_log(self, feed: str, counts: FeedPush) -> None:
        """The feed's outcomes as every worker logged them, not only this process's."""
        assert self.report.run_id is not None
        actions = self.repo.outcome_counts(self.report.run_id, feed)
        counts.created = actions.get("created", 0)
        counts.updated = actions.get("updated", 0)
        counts.unchanged = actions.get("unchanged", 0)
        counts.ignored = actions.get("ignored", 0)
        counts.failed = actions.get("error", 0)

    def finish_phases(self) -> None:
        """Tell the workers this run has nothing more for them."""
        current = Phase.loads(self.repo.state(PHASE_KEY))
        if current is not None and current.run_id == self.report.run_id:
            done = Phase(current.run_id, current.feed, current.entity, current.has_parent,
                         current.include_new, state="done")  # fmt: skip
            self.repo.set_state(PHASE_KEY, done.dumps())
            self.repo.commit()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def start_local_workers(app: App, count: int, run_id: int) -> list[subprocess.Popen[bytes]]:
    """Start `count` `pimsync worker --run ID` processes with this process's configuration."""
    command = [sys.executable, "-m", "pimsync"]
    if app.config.source_path is not None:
        command += ["--config", str(app.config.source_path)]
    command += ["--staging-url", app.config.staging.url, "worker", "--run", str(run_id)]
    return [
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]


@dataclass
class WorkerReport:
    runs: list[int]
    counts: dict[str, FeedPush]

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "runs": self.runs,
            "feeds": {feed: asdict(counts) for feed, counts in self.counts.items()},
        }


def run_worker(
    app: App,
    *,
    run_id: int | None = None,
    idle_timeout: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> WorkerReport:
    """Join the phases of push runs until told to stop.

    With `run_id`, work for that run only and return when it no longer needs workers (what
    `create --workers` starts). Without, serve run after run; `idle_timeout` returns after that
    many seconds without a phase to work on.
    """
    require_postgresql(app, "pimsync worker")
    app.config.require("magento.base_url", "magento.token")
    me = worker_id()
    report = WorkerReport(runs=[], counts={})
    idle_since = time.monotonic()
    with app.repository() as repo:
        while not should_stop():
            phase = Phase.loads(repo.state(PHASE_KEY))
            status = repo.run_status(phase.run_id) if phase else None
            repo.commit()
            ours = phase is not None and (run_id is None or phase.run_id == run_id)
            if run_id is not None and ours and phase is not None:
                ended = status not in (None, "in_progress")
                if phase.state == "done" or ended:  # the run needs no more workers
                    break
            if not ours or phase is None or phase.state != "running" or status != "in_progress":
                if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                    break
                time.sleep(POLL_SECONDS)
                continue
            _work_phase(app, repo, phase, me, report)
            idle_since = time.monotonic()
            # Wait for the coordinator to move on before claiming again.
            while not should_stop():
                current = Phase.loads(repo.state(PHASE_KEY))
                repo.commit()
                if current != phase:
                    break
                time.sleep(POLL_SECONDS)
    return report


def _work_phase(
    app: App, repo: StagingRepository, phase: Phase, me: str, report: WorkerReport
) -> None:
    saved = repo.get_run(phase.run_id)
    config = app.config
    if saved and saved.get("config_snapshot"):
        # The run's configuration (its mapping), with this machine's own secrets.
        config = config_from_snapshot(config, orjson.loads(saved["config_snapshot"]))
    if phase.run_id not in report.runs:
        report.runs.append(phase.run_id)
    counts = report.counts.setdefault(phase.feed, FeedPush(phase.feed))
    log.info(
        "worker %s joins run %d: %s %s",
        me,
        phase.run_id,
        phase.feed,
        phase.entity,
        extra={"run_id": phase.run_id, "feed": phase.feed},
    )
    with app.using(config), app.magento_client() as client, app.pim_client_or_none() as pim:
        runner = _worker_runner(app, repo, client, pim, phase, me)
        try:
            runner.push_shared(phase, counts)
        finally:
            runner.shutdown()


def _worker_runner(
    app: App,
    repo: StagingRepository,
    client: MagentoClient,
    pim: PimClient | None,
    phase: Phase,
    me: str,
) -> WorkerRunner:
    from pimsync.pipeline.push import PushOptions

    config = app.config
    catalog = build_catalog_context(repo, client, config)
    context = PushContext(catalog)
    context.set_ids_by_name = client.attribute_sets()
    load_context(repo, context)
    refresh_ids(repo, context)
    options = PushOptions(feeds=[phase.feed], reindex=False)
    report = PushReport(run_id=phase.run_id, kind="worker")
    return WorkerRunner(
        app, repo, client, pim, context, options, report, worker_id=me, coordinator=False
    )


class WorkerRunner(ClaimingRunner):
    """The runner of a `pimsync worker`: one phase at a time, new items as the run decides."""

    phase_include_new = True

    def _include_new(self) -> bool:
        return self.phase_include_new

    def push_shared(self, phase: Phase, counts: FeedPush) -> None:
        self.phase_include_new = phase.include_new
        super()._push_entity(phase.feed, phase.entity, phase.has_parent, counts)
