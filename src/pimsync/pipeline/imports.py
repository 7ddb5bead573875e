"""Running an import: the run record around the feeds, and what happens when it stops early."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import orjson
from sqlalchemy.exc import SQLAlchemyError

from pimsync.app import App
from pimsync.errors import InterruptedRunError, PimsyncError
from pimsync.pipeline.fetch import ImportContext, ImportObserver, import_feeds, order_feeds
from pimsync.pipeline.report import RunReport
from pimsync.staging.repository import StagingRepository, staging_failure


def run_full_import(
    app: App, feeds: Iterable[str] = (), observer: ImportObserver | None = None
) -> RunReport:
    """`import:full`: read every item of the feeds, mark changes, flag what the PIM deleted."""
    return _run_import(app, "import:full", feeds, observer)


def run_incremental_import(
    app: App, feeds: Iterable[str] = (), observer: ImportObserver | None = None
) -> RunReport:
    """`import:incremental`: read what changed since each feed's watermark."""
    return _run_import(app, "import:incremental", feeds, observer)


def _run_import(
    app: App, kind: str, feeds: Iterable[str], observer: ImportObserver | None
) -> RunReport:
    feeds = order_feeds(feeds)
    config = app.config
    config.require("pim.base_url")
    snapshot = orjson.dumps(
        config.model_dump(
            mode="json",
            exclude={"source_path": True, "pim": {"secret", "password"}, "magento": {"token"}},
        )
    ).decode()
    with app.repository() as repo, app.pim_client() as client:
        try:
            run_id = repo.begin_run(kind, feeds, config.fingerprint(), snapshot)
        except SQLAlchemyError as exc:
            raise staging_failure(exc) from None
        report = RunReport(run_id=run_id, kind=kind)
        context = ImportContext(
            client=client,
            repo=repo,
            config=config,
            run_id=run_id,
            full=kind == "import:full",
            observer=observer or ImportObserver(),
        )
        try:
            with gc_tuned_for_streaming():
                import_feeds(context, feeds, report)
        except KeyboardInterrupt:
            report.status = "stopped"
            report.message = "interrupted; the batches committed so far are kept"
            repo.finish_run(run_id, report.status, report.counts(), report.message)
            raise InterruptedRunError(
                f"import interrupted; {_kept(report)}",
                hint=f"run `pimsync {kind}` again to finish",
            ) from None
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
        return report


@contextmanager
def gc_tuned_for_streaming() -> Iterator[None]:
    """Run the cyclic GC less often while pages stream through.

    An import allocates millions of short-lived dicts; with the default thresholds the young
    generation is traversed every 700 allocations, and everything loaded at start-up with it.
    Freezing the start-up objects and collecting every 50,000 allocations cut the time per
    product by about a third in our measurements, and still collects the reference cycles
    httpx leaves per response (so memory stays flat). The old settings come back afterwards.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
