"""Stage 2: push what staging says needs an update to Magento, feed by feed, in order.

Attributes (options, attribute sets), categories (parents first), products (simple products
and configurable parents), variants (children, linked to their parent), assets (images). The
staging table is the queue: rows are read in batches, pushed by `concurrency` worker threads
(or through Magento's async bulk API), and each row is marked synced or error as its batch
ends, so a push that stops keeps everything it did and the next one starts where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pimsync.app import App
from pimsync.config import PUSH_FEEDS, Config
from pimsync.errors import InterruptedRunError, MagentoError
from pimsync.gc_tuning import PUSHING_THRESHOLD, gc_tuned_for_streaming
from pimsync.lock import RunLock, StopRequested
from pimsync.magento.client import MagentoClient
from pimsync.pim.client import PimClient
from pimsync.pipeline.push_context import build_push_context
from pimsync.pipeline.push_deletions import pending_deletions
from pimsync.pipeline.push_items import (
    PushContext,
)
from pimsync.pipeline.push_runner import FEED_ENTITIES, MAPPING_STATE, Runner
from pimsync.pipeline.report import FeedPush, PushReport
from pimsync.pipeline.resume import Resumption, snapshot, stopped_run
from pimsync.staging.database import backend_name
from pimsync.staging.repository import StagingRepository
from pimsync.staging.tables import Status

if TYPE_CHECKING:
    from pimsync.pipeline.workers import LocalWorkers

log = logging.getLogger("pimsync.push")


@dataclass
class PushOptions:
    feeds: list[str]
    skus: list[str] | None = None
    dry_run: bool = False
    limit: int | None = None
    force: bool = False
    reindex: bool = True
    dry_run_sink: Any = None  # callable(dict) receiving each would-be request in a dry run
    failed_only: bool = False  # `resync --failed`: only the items in error, pushed again
    deletions: bool = True  # `create --no-deletions` skips exporting PIM deletions for one run
    fresh: bool = False  # do not carry on a stopped run
    # A resumed resync leaves out what the run it carries on already re-pushed.
    pushed_before: datetime | None = None
    workers: int = 1  # processes sharing the products and variants (PostgreSQL staging)

    def saved(self) -> dict[str, Any]:
        """What a stopped run must remember to be carried on."""
        return {
            "feeds": self.feeds,
            "skus": self.skus,
            "limit": self.limit,
            "force": self.force,
            "failed_only": self.failed_only,
            "deletions": self.deletions,
            "pushed_before": self.pushed_before.isoformat() if self.pushed_before else None,
        }

    def resumed(self, resumption: Resumption) -> PushOptions:
        """These options turned into the ones of the stopped run being carried on."""
        saved = resumption.options
        pushed_before = saved.get("pushed_before")
        return dataclasses.replace(
            self,
            feeds=list(saved.get("feeds") or resumption.feeds),
            skus=saved.get("skus"),
            limit=saved.get("limit"),
            force=bool(saved.get("force")),
            failed_only=bool(saved.get("failed_only")),
            deletions=bool(saved.get("deletions", True)),
            pushed_before=(
                datetime.fromisoformat(pushed_before) if pushed_before else resumption.started_at
            ),
        )


def order_push_feeds(feeds: Iterable[str]) -> list[str]:
    wanted = set(feeds) or set(PUSH_FEEDS)
    return [feed for feed in PUSH_FEEDS if feed in wanted]


def run_push(app: App, kind: str, options: PushOptions) -> PushReport:
    """`create` and `resync`: push pending items (all of a feed's items with `force`).

    A real push holds the run lock and carries on a stopped push of the same kind, with the
    options and configuration it started with, unless `options.fresh`. A dry run reads only.
    """
    app.config.require("magento.base_url", "magento.token")
    if options.dry_run:
        return _push(app, kind, options, None, None, None)
    # The workers start first: forked from this process before anything here runs a thread or
    # opens a connection (see LocalWorkers), and ready by the time the run begins. Leaving the
    # block waits for them, whichever way the push ended. They are forked with the start-up's
    # objects frozen, so no collection of theirs (or ours) writes to the pages they share.
    with (
        gc_tuned_for_streaming(PUSHING_THRESHOLD, collect_first=False),
        _local_workers(app, options) as workers,
        app.exclusive(kind) as lock,
    ):
        with app.repository() as repo:
            resumption = None if options.fresh else stopped_run(repo, [kind], app.config)
        if resumption is None:
            return _push(app, kind, options, lock, None, workers)
        with app.using(resumption.config):
            return _push(app, kind, options.resumed(resumption), lock, resumption, workers)


def _push(
    app: App,
    kind: str,
    options: PushOptions,
    lock: RunLock | None,
    resumption: Resumption | None,
    workers: LocalWorkers | None,
) -> PushReport:
    config = app.config
    report = PushReport(run_id=None, kind=kind, dry_run=options.dry_run)
    if resumption is not None:
        report.resumed_from = resumption.run_id
        report.notes.append(resumption.note(kind))

    def begin(repo: StagingRepository) -> int:
        run_id = repo.begin_run(
            kind,
            options.feeds,
            config.fingerprint(),
            snapshot(config),
            options=options.saved(),
            resumed_from=report.resumed_from,
        )
        if lock is not None:
            lock.attach_run(run_id)
        log.info(
            "%s run %d started: %s",
            kind,
            run_id,
            ", ".join(options.feeds),
            extra={"run_id": run_id, "kind": kind, "feeds": options.feeds},
        )
        return run_id

    if not options.force and not options.dry_run and nothing_to_push(app, config, options):
        # Nothing pending and the mapping unchanged: not a single request to Magento.
        with app.repository() as repo:
            report.run_id = begin(repo)
            report.feeds = {feed: FeedPush(feed) for feed in options.feeds}
            if not config.sync.auto_create_new:
                for feed in options.feeds:
                    report.feeds[feed].waiting_new = sum(
                        repo.count_waiting_new(entity, has_parent=has_parent)
                        for entity, has_parent in FEED_ENTITIES[feed]
                    )
            report.status = "success"
            repo.finish_run(report.run_id, report.status, report.as_dict(), "nothing to push")
        return report
    with (
        app.repository() as repo,
        app.magento_client() as client,
        app.pim_client_or_none() as pim,
    ):
        context = build_push_context(
            repo, client, config, force=options.force or options.failed_only
        )
        if not options.dry_run:
            report.run_id = begin(repo)
        runner = _runner(app, repo, client, pim, context, options, report, lock, workers)
        try:
            if not options.dry_run and not options.force and not options.failed_only:
                report.marked_by_mapping = runner.reconcile_mapping()
            for feed in options.feeds:
                runner.push_feed(feed)
        except BaseException as exc:
            runner.shutdown()
            with suppress(Exception):  # the run's own error is the one to report
                runner.finish_phases()
            if report.run_id is not None:
                repo.rollback()
                stopped = isinstance(exc, KeyboardInterrupt | StopRequested)
                status = "stopped" if stopped else "failed"
                repo.finish_run(report.run_id, status, report.as_dict(), str(exc)[:1000])
                log.info("%s run %d %s: %s", kind, report.run_id, status, exc)
            resume_hint = (
                f"items pushed before the stop are marked synced; the others still need an "
                f"update, so `pimsync {kind}` again resumes"
            )
            if isinstance(exc, StopRequested):
                raise InterruptedRunError(
                    f"push {exc.message}", hint=f"{resume_hint} (`--fresh` starts over)"
                ) from None
            if isinstance(exc, MagentoError):
                exc.message = f"push stopped: {exc.message}"
                exc.hint = resume_hint
            raise
        runner.shutdown()
        runner.finish_phases()
        report.status = "success"
        if not options.dry_run:
            repo.set_state(MAPPING_STATE, config.mapping.fingerprint())
            repo.finish_run(report.run_id or 0, report.status, report.as_dict())
            log.info(
                "%s run %s finished: %s",
                kind,
                report.run_id,
                "; ".join(
                    f"{f.feed} created {f.created} updated {f.updated} deleted {f.deleted} "
                    f"failed {f.failed}"
                    for f in report.feeds.values()
                ),
                extra={"run_id": report.run_id, "kind": kind, "status": report.status},
            )
            for note in report.notes:
                log.info(note, extra={"run_id": report.run_id})
            if options.reindex and config.sync.reindex_command:
                report.reindex = run_reindex(config.sync.reindex_command)
    return report


def _runner(
    app: App,
    repo: StagingRepository,
    client: MagentoClient,
    pim: PimClient | None,
    context: PushContext,
    options: PushOptions,
    report: PushReport,
    lock: RunLock | None,
    workers: LocalWorkers | None,
) -> Runner:
    """The run's Runner; with local workers (`_local_workers`), a coordinator of the phases."""
    several = options.workers > 1 and not options.dry_run
    if several and repo.connection.dialect.name != "postgresql":
        report.notes.append(
            f"--workers {options.workers} declined: SQLite serves one machine; this push uses "
            f"its {app.config.magento.concurrency} concurrent requests ([magento] concurrency)"
        )
    if workers is None:
        return Runner(app, repo, client, pim, context, options, report, lock)
    from pimsync.pipeline.workers import ClaimingRunner, worker_id

    runner = ClaimingRunner(
        app, repo, client, pim, context, options, report, lock,
        worker_id=worker_id(), coordinator=True,
    )  # fmt: skip
    assert report.run_id is not None
    workers.assign(report.run_id)
    return runner


def _local_workers(app: App, options: PushOptions) -> AbstractContextManager[LocalWorkers | None]:
    """The N - 1 worker processes of `--workers N`, started before the run lock so that their
    start-up overlaps the coordinator's own; none on SQLite, in a dry run, or for feeds that
    workers do not share (the push then runs in this process alone). Those a run never gets to
    assign (nothing to push, the lock held by another run) exit when the block ends."""
    from pimsync.pipeline.workers import FEEDS_SHARED, LocalWorkers

    shared = any(feed in FEEDS_SHARED for feed in options.feeds)
    if options.workers <= 1 or options.dry_run or not shared:
        return nullcontext(None)
    if backend_name(app.config.staging.url) != "postgresql":
        return nullcontext(None)
    return LocalWorkers(app, options.workers - 1)


def nothing_to_push(app: App, config: Config, options: PushOptions) -> bool:
    include_new = config.sync.auto_create_new or options.skus is not None
    statuses = [Status.ERROR] if options.failed_only else None
    with app.repository() as repo:
        if repo.state(MAPPING_STATE) not in (None, config.mapping.fingerprint()):
            return False
        for feed in options.feeds:
            if feed == "assets" and repo.pending_media(limit=1, only=options.skus):
                return False
            if (
                options.deletions
                and not options.failed_only
                and pending_deletions(repo, config, feed)
            ):
                return False
            for entity, has_parent in FEED_ENTITIES[feed]:
                only = options.skus if entity in ("products", "product_models") else None
                pending = repo.pending_for_push(
                    entity,
                    limit=1,
                    include_new=include_new,
                    only=only,
                    has_parent=has_parent,
                    statuses=statuses,
                )
                if pending:
                    return False
    return True


def run_reindex(command: list[str]) -> str:
    """Run the configured reindex command, without a shell; returns "ok" or "failed: ..."."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"failed: exit {done.returncode} {last[0][:200]}"
    return "ok"
