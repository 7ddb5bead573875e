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

Phase changes travel by PostgreSQL notifications (`staging.wakeups`): a worker wakes as a phase
is published or the run ends, and the coordinator as a worker has settled its last claim, with
a bounded poll behind each wait. A worker keeps what it built for a run (the run's configuration,
its Magento connections, the push context) from one phase to the next.

SQLite has no row locks to skip and serves one machine: there `--workers` is declined with a
note and the push uses its in-process concurrency.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any, Protocol

import orjson

from pimsync import logs
from pimsync.app import App
from pimsync.errors import InterruptedRunError, PimsyncError, UsageError, internal_error
from pimsync.gc_tuning import PUSHING_THRESHOLD, gc_tuned_for_streaming
from pimsync.lock import StopFlag, gone_here, machine_key, stop_signals
from pimsync.magento.client import MagentoClient
from pimsync.pim.client import PimClient
from pimsync.pipeline.push_context import build_push_context, refresh_ids
from pimsync.pipeline.push_runner import FEED_ENTITIES, Runner
from pimsync.pipeline.report import FeedPush, PushReport
from pimsync.pipeline.resume import config_from_snapshot
from pimsync.staging.repository import StagingRepository
from pimsync.staging.wakeups import Listener, notify

log = logging.getLogger("pimsync.workers")

PHASE_KEY = "push_phase"
# The entities workers share; the rest is pushed by the coordinator alone.
SHARED_ENTITIES = ("product_models", "products")
# The push feeds with such entities: the ones worth starting workers for.
FEEDS_SHARED = tuple(
    feed
    for feed, entities in FEED_ENTITIES.items()
    if any(entity in SHARED_ENTITIES for entity, _ in entities)
)
CLAIM_LEASE_SECONDS = 300.0
# How long a wait for a phase change or a settled claim may last without a notification: what
# a lost notification costs, not the usual delay (a notification ends the wait at once).
POLL_SECONDS = 1.0
# The coordinator's wait for the others' last claims also covers a worker that died with rows
# claimed, whose lease runs out in the end; its own polling bounds that wait more tightly.
SETTLE_POLL_SECONDS = 0.2


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
        self._wakeups: Listener | None = None

    def shutdown(self) -> None:
        super().shutdown()
        if self._wakeups is not None:
            self._wakeups.close()
            self._wakeups = None

    def _wait_for_others(self) -> None:
        if self._wakeups is None:
            self._wakeups = Listener(self.repo.connection.engine)
        self._wakeups.wait(SETTLE_POLL_SECONDS)

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
        self._publish(phase)
        # Claim and push with the others until nothing is pending: rows claimed by a worker
        # that died come back when their lease runs out, or at once when it ran on this
        # machine, and are pushed here if need be. That is looked for once nothing else is
        # left to claim (few rows are pending then, so the query is cheap), once a second.
        next_look = 0.0
        while True:
            super()._push_entity(feed, entity, has_parent, counts)
            self.checkpoint()
            pending = self.repo.count_pending(
                entity, include_new=self._include_new(), has_parent=has_parent
            )
            self.repo.commit()
            if pending == 0:
                break
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + POLL_SECONDS
                if self._release_claims_of_the_dead(entity):
                    continue
            self._wait_for_others()
        self._count_from_log(feed, counts)

    def _release_claims_of_the_dead(self, entity: str) -> int:
        """Give back at once the rows claimed by processes of this machine that are gone: a
        `create` that was killed (this one took its run over) and its workers, or a local
        worker killed in this run. Those of other machines wait for their leases."""
        dead = [worker for worker in self.repo.claimers(entity) if claimer_gone(worker)]
        released = self.repo.release_claims(entity, dead)
        self.repo.commit()
        if released:
            log.warning(
                "gave back %d %s claimed by %s: the process is gone",
                released,
                entity,
                ", ".join(dead),
                extra={"run_id": self.report.run_id},
            )
        return released

    def _publish(self, phase: Phase) -> None:
        self.repo.set_state(PHASE_KEY, phase.dumps())
        notify(self.repo.connection)
        self.repo.commit()

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
            self._publish(done)


def worker_id() -> str:
    """host:pid:machine:nonce, at most 64 characters (a claim's column): the host name for the
    operator, the pid and `machine_key()` to tell whether the worker is gone (`claimer_gone`),
    and a nonce so that a pid used again is another worker."""
    host = socket.gethostname()[:32]
    return f"{host}:{os.getpid()}:{machine_key()}:{uuid.uuid4().hex[:8]}"


def claimer_gone(worker: str) -> bool:
    """Whether the process behind a `worker_id()` ran on this machine and has ended."""
    parts = worker.rsplit(":", 3)
    return len(parts) == 4 and parts[1].isdigit() and gone_here(parts[2], int(parts[1]))


class CoordinatorWatch:
    """For a local worker: whether the `create` that started it has ended (killed, say), which
    leaves the worker a child of another process. Said once in the log when first seen."""

    def __init__(self) -> None:
        self._parent = os.getppid()
        self._seen = False

    def __call__(self) -> bool:
        if os.getppid() == self._parent:
            return False
        if not self._seen:
            self._seen = True
            log.warning("worker leaves: the create that started it is gone")
        return True


class LocalWorkers:
    """The N - 1 workers `create --workers N` starts on this machine.

    They are started before the coordinator takes the run lock and reads Magento's stores and
    the staged context; each then waits for the run id, which `assign` sends once the run has
    begun. A coordinator that fails before that closes their channel, and they exit without
    working. Where it is safe, a worker is a fork of this process (`_ForkedWorker`): it has
    every module loaded already, so it is ready as the run begins. Measured here (10k-product
    catalog, 50 ms mock Magento), workers started as new interpreters joined the run 0.9-1.8 s
    after it began, their imports competing with the coordinator for the two cores; forked,
    0.3-0.5 s after. Elsewhere a worker is a new `pimsync worker` process (`_WorkerProcess`).
    Both log as this process does.
    """

    def __init__(self, app: App, count: int) -> None:
        self.workers: list[_LocalWorker]
        if _fork_is_safe(app):
            channels: list[Connection] = []  # each forked one closes the others' ends
            self.workers = [_ForkedWorker(app, channels) for _ in range(count)]
        else:
            self.workers = [_WorkerProcess(app) for _ in range(count)]

    def assign(self, run_id: int) -> None:
        """Tell every worker the run to work for (a worker that already died is skipped)."""
        for worker in self.workers:
            worker.assign(run_id)

    def stop(self) -> None:
        """Wait for the workers to end by themselves (they do once the run needs them no more,
        or at once when no run was assigned); a straggler is terminated."""
        for worker in self.workers:
            worker.close()
        deadline = time.monotonic() + 30
        for worker in self.workers:
            if not worker.wait(max(deadline - time.monotonic(), 0.1)):
                worker.terminate()

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _LocalWorker(Protocol):
    def assign(self, run_id: int) -> None: ...
    def close(self) -> None: ...
    def wait(self, timeout: float) -> bool: ...
    def terminate(self) -> None: ...


def _fork_is_safe(app: App) -> bool:
    """Fork only a process in which nothing runs but this thread and nothing is connected yet:
    the CLI before its run lock (whose heartbeat is a thread). A fork copies other threads'
    locks in whatever state they are, and a child must never touch the parent's connections.
    Linux only: macOS frameworks can crash in a forked child."""
    return (
        sys.platform == "linux"
        and "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and not app.engine_started
    )


class _ForkedWorker:
    """A worker forked from the coordinator before its run lock; the run id comes by a pipe."""

    def __init__(self, app: App, channels: list[Connection]) -> None:
        context = multiprocessing.get_context("fork")
        receiving, self._sending = context.Pipe(duplex=False)
        channels.append(self._sending)
        self._process = context.Process(target=_serve_forked, args=(app, receiving, channels))
        self._process.start()
        receiving.close()

    def assign(self, run_id: int) -> None:
        with suppress(OSError):  # it died; the others do its share
            self._sending.send(run_id)

    def close(self) -> None:
        self._sending.close()

    def wait(self, timeout: float) -> bool:
        self._process.join(timeout)
        return self._process.exitcode is not None

    def terminate(self) -> None:
        self._process.terminate()
        self._process.join(10)


def _serve_forked(app: App, receiving: Connection, sending: list[Connection]) -> None:
    """A forked worker: the run id from its pipe, then the run's phases (`run_worker`)."""
    for channel in sending:  # the coordinator's ends: only its own closing must end the wait
        channel.close()
    # Standard output is the coordinator's (its --json report): nothing of ours goes there.
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
    code = 0
    stop = StopFlag()
    orphaned = CoordinatorWatch()
    # The parent's App holds nothing open yet (_fork_is_safe); this one is the worker's own.
    own = replace(app)
    with stop_signals(stop):
        try:
            run_worker(
                own,
                await_run=lambda: _received_run(receiving),
                should_stop=lambda: stop.stop_requested or orphaned(),
            )
        except KeyboardInterrupt:  # a second Ctrl-C: the coordinator says it
            code = InterruptedRunError.exit_code
        except Exception as exc:  # one line, as the CLI says it (a bug's traceback with --debug)
            error = exc if isinstance(exc, PimsyncError) else internal_error(exc)
            traced = error is not exc and log.isEnabledFor(logging.DEBUG)
            extra = {"exit_code": error.exit_code}
            log.error("worker stopped: %s", error.message, extra=extra, exc_info=traced)
            code = error.exit_code
        finally:
            own.close()
    sys.exit(code)


def _received_run(receiving: Connection) -> int | None:
    try:
        return int(receiving.recv())
    except (EOFError, OSError):
        return None  # the coordinator failed before its run began, or is gone


class _WorkerProcess:
    """A worker started as a new `pimsync worker` process; the run id comes on its stdin."""

    def __init__(self, app: App) -> None:
        command = [sys.executable, "-m", "pimsync", *logs.child_options()]
        if app.config.source_path is not None:
            command += ["--config", str(app.config.source_path)]
        command += ["--staging-url", app.config.staging.url, "worker", "--run-from-stdin"]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    def assign(self, run_id: int) -> None:
        assert self._process.stdin is not None
        with suppress(OSError):  # BrokenPipeError: it died; the others do its share
            self._process.stdin.write(f"{run_id}\n".encode())
            self._process.stdin.close()

    def close(self) -> None:
        assert self._process.stdin is not None
        with suppress(OSError):
            self._process.stdin.close()

    def wait(self, timeout: float) -> bool:
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def terminate(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def run_id_from_stdin() -> int | None:
    """The run id a coordinator writes on a local worker's stdin; None when it closes it
    without one (it failed before its run began)."""
    line = sys.stdin.readline().strip()
    return int(line) if line.isdigit() else None


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
    await_run: Callable[[], int | None] | None = None,
    idle_timeout: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> WorkerReport:
    """Join the phases of push runs until told to stop.

    With `run_id`, work for that run only and return when it no longer needs workers (what
    `create --workers` starts); `await_run` gives that run id once the database and the
    listening connection are ready (None: no run, return at once). Without either, serve run
    after run; `idle_timeout` returns after that many seconds without a phase to work on.
    """
    require_postgresql(app, "pimsync worker")
    app.config.require("magento.base_url", "magento.token")
    report = WorkerReport(runs=[], counts={})
    with (
        gc_tuned_for_streaming(PUSHING_THRESHOLD, collect_first=False),  # as run_push does
        app.repository() as repo,
        Listener(app.engine()) as wakeups,
    ):
        if await_run is not None:
            run_id = await_run()
            if run_id is None:
                return report
        worker = _Worker(app, repo, wakeups, report, should_stop)
        try:
            if run_id is not None:
                worker.prepare(run_id)
            worker.serve(run_id, idle_timeout)
        finally:
            worker.leave()
    return report


class _Worker:
    """One worker's loop over the phases it joins, and the run it holds a JoinedRun for."""

    def __init__(
        self,
        app: App,
        repo: StagingRepository,
        wakeups: Listener,
        report: WorkerReport,
        should_stop: Callable[[], bool],
    ) -> None:
        self.app, self.repo, self.wakeups, self.report = app, repo, wakeups, report
        self.should_stop = should_stop
        self.me = worker_id()
        self.joined: JoinedRun | None = None

    def prepare(self, run_id: int) -> None:
        """Build what the run needs before the coordinator publishes its first phase."""
        if self.repo.run_status(run_id) == "in_progress":
            self.joined = JoinedRun.join(self.app, self.repo, run_id, self.me, self.should_stop)
        self.repo.commit()

    def leave(self) -> None:
        if self.joined is not None:
            self.joined.close()  # the run's clients and their connections
            self.joined = None

    def serve(self, run_id: int | None, idle_timeout: float | None) -> None:
        repo, should_stop = self.repo, self.should_stop
        idle_since = time.monotonic()
        while not should_stop():
            phase = Phase.loads(repo.state(PHASE_KEY))
            if phase is not None and run_id not in (None, phase.run_id):
                phase = None  # another run's: not ours to work on
            watched = run_id if run_id is not None else phase_run(phase)
            status = repo.run_status(watched) if watched is not None else None
            repo.commit()
            if run_id is not None and (
                status != "in_progress" or (phase is not None and phase.state == "done")
            ):
                return  # the run we work for needs no more workers (it may have had no phase)
            if self.joined is not None and (
                self.joined.run_id != watched or status != "in_progress"
            ):
                self.leave()  # its run is over
            if phase is None or phase.state != "running" or status != "in_progress":
                wait = POLL_SECONDS
                if idle_timeout is not None:
                    wait = min(wait, idle_since + idle_timeout - time.monotonic())
                    if wait <= 0:
                        return
                self.wakeups.wait(wait)
                continue
            if self.joined is None:
                self.joined = JoinedRun.join(
                    self.app, repo, phase.run_id, self.me, self.should_stop
                )
            _work_phase(self.joined, phase, self.report)
            idle_since = time.monotonic()
            # Wait for the coordinator to move on before claiming again.
            while not should_stop():
                current = Phase.loads(repo.state(PHASE_KEY))
                repo.commit()
                if current != phase:
                    break
                self.wakeups.wait(POLL_SECONDS)


def phase_run(phase: Phase | None) -> int | None:
    return phase.run_id if phase is not None else None


class JoinedRun:
    """What a worker keeps for one run from phase to phase: the run's configuration (its mapping,
    with this machine's own secrets), its Magento and PIM clients with their open connections,
    and the push context, built once instead of once per phase."""

    def __init__(self, run_id: int, runner: WorkerRunner, resources: ExitStack) -> None:
        self.run_id = run_id
        self.runner = runner
        self._resources = resources

    @classmethod
    def join(
        cls,
        app: App,
        repo: StagingRepository,
        run_id: int,
        me: str,
        should_stop: Callable[[], bool],
    ) -> JoinedRun:
        resources = ExitStack()
        try:
            saved = repo.get_run(run_id)
            config = app.config
            if saved and saved.get("config_snapshot"):
                config = config_from_snapshot(config, orjson.loads(saved["config_snapshot"]))
            resources.enter_context(app.using(config))
            client = resources.enter_context(app.magento_client())
            pim = resources.enter_context(app.pim_client_or_none())
            runner = _worker_runner(app, repo, client, pim, run_id, me, should_stop)
            resources.callback(runner.shutdown)
        except BaseException:
            resources.close()
            raise
        return cls(run_id, runner, resources)

    def close(self) -> None:
        self._resources.close()


def _work_phase(joined: JoinedRun, phase: Phase, report: WorkerReport) -> None:
    runner = joined.runner
    if phase.run_id not in report.runs:
        report.runs.append(phase.run_id)
    counts = report.counts.setdefault(phase.feed, FeedPush(phase.feed))
    log.info(
        "worker %s joins run %d: %s %s",
        runner.worker_id,
        phase.run_id,
        phase.feed,
        phase.entity,
        extra={"run_id": phase.run_id, "feed": phase.feed},
    )
    # What the previous phase created (as the coordinator does after each entity).
    refresh_ids(runner.repo, runner.context)
    runner.push_shared(phase, counts)
    # This worker's claims are settled: the coordinator, waiting for them, counts again.
    notify(runner.repo.connection)
    runner.repo.commit()


def _worker_runner(
    app: App,
    repo: StagingRepository,
    client: MagentoClient,
    pim: PimClient | None,
    run_id: int,
    me: str,
    should_stop: Callable[[], bool],
) -> WorkerRunner:
    from pimsync.pipeline.push import PushOptions

    config = app.config
    context = build_push_context(repo, client, config)
    options = PushOptions(feeds=list(FEEDS_SHARED), reindex=False)
    report = PushReport(run_id=run_id, kind="worker")
    return WorkerRunner(
        app, repo, client, pim, context, options, report,
        worker_id=me, coordinator=False, should_stop=should_stop,
    )  # fmt: skip


class WorkerRunner(ClaimingRunner):
    """The runner of a `pimsync worker`: one phase at a time, new items as the run decides.

    Before each claim it reads its own stop request (SIGTERM, Ctrl-C) besides its run's state,
    as the coordinator reads its lock: a worker stopped alone, by its service manager say,
    settles and marks the batch it holds and claims no more, instead of pushing on to the end
    of the phase; the run goes on without it, and no row waits for a lease to run out.
    """

    phase_include_new = True

    def __init__(self, *args: Any, should_stop: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.should_stop = should_stop

    def halted(self) -> bool:
        return self.should_stop() or super().halted()

    def _include_new(self) -> bool:
        return self.phase_include_new

    def push_shared(self, phase: Phase, counts: FeedPush) -> None:
        self.phase_include_new = phase.include_new
        super()._push_entity(phase.feed, phase.entity, phase.has_parent, counts)
