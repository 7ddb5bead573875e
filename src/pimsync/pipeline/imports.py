"""Running an import: the run record around the feeds, and what happens when it stops early."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.exc import SQLAlchemyError

from pimsync.app import App
from pimsync.errors import InterruptedRunError, PimsyncError
from pimsync.gc_tuning import IMPORTING_THRESHOLD, gc_tuned_for_streaming
from pimsync.lock import RunLock, StopRequested
from pimsync.pipeline.fetch import ImportContext, ImportObserver, import_feeds, order_feeds
from pimsync.pipeline.preparers import PagePreparer
from pimsync.pipeline.report import RunReport
from pimsync.pipeline.resume import Resumption, snapshot, stopped_run
from pimsync.staging.repository import StagingRepository, staging_failure

log = logging.getLogger("pimsync.import")


def run_full_import(
    app: App,
    feeds: Iterable[str] = (),
    observer: ImportObserver | None = None,
    *,
    fresh: bool = False,
) -> RunReport:
    """`import:full`: read every item of the feeds, mark changes, flag what the PIM deleted."""
    return _run_import(app, "import:full", feeds, observer, fresh)


def run_incremental_import(
    app: App,
    feeds: Iterable[str] = (),
    observer: ImportObserver | None = None,
    *,
    fresh: bool = False,
) -> RunReport:
    """`import:incremental`: read what changed since each feed's watermark."""
    return _run_import(app, "import:incremental", feeds, observer, fresh)


def _run_import(
    app: App, kind: str, feeds: Iterable[str], observer: ImportObserver | None, fresh: bool
) -> RunReport:
    """Hold the lock, carry on a stopped run of the same kind (unless `fresh`), import."""
    feeds = order_feeds(feeds)
    app.config.require("pim.base_url")
    with app.exclusive(kind) as lock:
        with app.repository() as repo:
            resumption = None if fresh else stopped_run(repo, [kind], app.config)
        if resumption is None:
            return _import(app, kind, feeds, observer, lock, None)
        # Where it stopped: the feeds it had not completed (a feed completes with its
        # watermark), read again from their start with the configuration it began with.
        remaining = [f for f in order_feeds(resumption.feeds) if f not in resumption.watermarks]
        with app.using(resumption.config):
            return _import(app, kind, remaining, observer, lock, resumption)


def _import(
    app: App,
    kind: str,
    feeds: list[str],
    observer: ImportObserver | None,
    lock: RunLock,
    resumption: Resumption | None,
) -> RunReport:
    config = app.config
    with app.repository() as repo, app.pim_client() as client:
        try:
            run_id = repo.begin_run(
                kind,
                feeds,
                config.fingerprint(),
                snapshot(config),
                resumed_from=resumption.run_id if resumption else None,
            )
        except SQLAlchemyError as exc:
            raise staging_failure(exc) from None
        lock.attach_run(run_id)
        log.info(
            "%s run %d started: %s",
            kind,
            run_id,
            ", ".join(feeds) or "nothing left to do",
            extra={"run_id": run_id, "kind": kind, "feeds": feeds},
        )
        report = RunReport(run_id=run_id, kind=kind)
        if resumption is not None:
            report.resumed_from = resumption.run_id
            report.notes.append(resumption.note(kind))
        context = ImportContext(
            client=client,
            repo=repo,
            config=config,
            run_id=run_id,
            full=kind == "import:full",
            observer=observer or ImportObserver(),
            lock=lock,
            preparer=PagePreparer(config.staging.prepare_processes),
        )
        try:
            with gc_tuned_for_streaming(IMPORTING_THRESHOLD), context.preparer:
                import_feeds(context, feeds, report)
        except (KeyboardInterrupt, StopRequested) as exc:
            reason = lock.stop_reason or "Ctrl-C"
            report.status = "stopped"
            report.message = f"stopped ({reason}); the batches committed so far are kept"
            repo.rollback()
            repo.finish_run(run_id, report.status, report.counts(), report.message)
            log.info("%s run %d %s", kind, run_id, report.message, extra={"run_id": run_id})
            raise InterruptedRunError(
                f"{kind} stopped ({reason}); {_kept(report)}",
                hint=f"run `pimsync {kind}` again to resume where it stopped "
                "(`--fresh` starts over)",
            ) from (None if isinstance(exc, KeyboardInterrupt) else exc)
        except PimsyncError as exc:
            _fail(repo, report, exc.message)
            exc.message = f"{kind} stopped: {exc.message}"
            exc.hint = exc.hint or (
                f"{_kept(report)}; the watermark of an unfinished feed did not move, so "
                f"`pimsync {kind}` reads it again"
            )
            raise
        except SQLAlchemyError as exc:
            error = staging_failure(exc)
            _fail(repo, report, error.message)
            raise error from None
        report.status = "success"
        repo.finish_run(run_id, report.status, report.counts(), _summary(report))
        log.info(
            "%s run %d finished: %s",
            kind,
            run_id,
            "; ".join(
                f"{f.feed} fetched {f.fetched} new {f.new} changed {f.changed} "
                f"quarantined {f.quarantined} deleted {f.deleted_in_pim}"
                for f in report.feeds.values()
            ),
            extra={"run_id": run_id, "kind": kind, "status": report.status},
        )
        return report


def _fail(repo: StagingRepository, report: RunReport, message: str) -> None:
    report.status = "failed"
    report.message = message
    try:
        repo.rollback()
        repo.finish_run(report.run_id, report.status, report.counts(), message)
    except SQLAlchemyError:
        pass  # the database itself failed; the original error is what the operator needs


def _kept(report: RunReport) -> str:
    done = [feed for feed, counts in report.feeds.items() if counts.completed]
    completed = f"feeds completed: {', '.join(done)}" if done else "no feed completed"
    return f"{completed}; every batch staged before the stop is kept"


def _summary(report: RunReport) -> str | None:
    if report.quarantined:
        return f"{report.quarantined} record(s) quarantined"
    return None
