"""How results look: tables or JSON on stdout, progress and errors on stderr."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click
import orjson

from pimsync.errors import ConfigError, PimsyncError
from pimsync.pipeline.fetch import ImportObserver
from pimsync.pipeline.report import IMPORT_COUNTERS, FeedReport, PushReport, RunReport

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.table import Table

# rich is imported where it draws: a cron run with --json never loads it (it weighs ~7 MB).


def _table(title: str) -> Table:
    from rich.table import Table

    return Table(title=title)


def _print(table: Table) -> None:
    from rich.console import Console

    # sys.stdout at call time, so click's test runner captures the table too.
    Console(file=sys.stdout, width=120).print(table)


def render_error(exc: PimsyncError) -> None:
    """`Error: <message>`, then one line per problem, then what to do next; all on stderr."""
    click.echo(f"Error: {exc.message}", err=True)
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
    if exc.hint:
        click.echo(exc.hint, err=True)


def render_import_report(report: RunReport, as_json: bool) -> None:
    """The per-feed summary of an import: a table, or the report as JSON."""
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    table = _table(f"{report.kind} (run {report.run_id}): {report.status}")
    table.add_column("feed")
    table.add_column("mode")
    for counter in IMPORT_COUNTERS:
        table.add_column(counter.replace("_", " "), justify="right")
    table.add_column("seconds", justify="right")
    for feed in report.feeds.values():
        counts = [f"{getattr(feed, counter):,}" for counter in IMPORT_COUNTERS]
        table.add_row(feed.feed, feed.mode, *counts, f"{feed.seconds:.1f}")
    _print(table)
    notes = list(report.notes)
    notes += [f"{feed.feed}: {feed.note}" for feed in report.feeds.values() if feed.note]
    marked = sum(feed.dependents_marked for feed in report.feeds.values())
    if marked:
        notes.append(f"{marked} configurable parent(s) marked needs_update by variant changes")
    if report.quarantined:
        notes.append(
            f"{report.quarantined} record(s) failed validation and were quarantined; "
            "they are kept in staging with the reason and never pushed"
        )
    for note in notes:
        click.echo(note)


class ImportProgress(ImportObserver):
    """A rich progress display on stderr when it is a terminal; silent under cron and in CI."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ImportProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=None),
                TextColumn("{task.completed:,} items"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def feed_started(self, feed: str, mode: str) -> None:
        if self._progress is not None:
            self._tasks[feed] = self._progress.add_task(f"{feed} ({mode})", total=None)

    def staged(self, feed: str, entity: str, count: int) -> None:
        if self._progress is not None and feed in self._tasks:
            self._progress.update(self._tasks[feed], advance=count, description=f"{feed}: {entity}")

    def feed_finished(self, report: FeedReport) -> None:
        if self._progress is not None and report.feed in self._tasks:
            self._progress.update(self._tasks[report.feed], description=f"{report.feed}: done")


def print_dry_run(request: dict[str, Any]) -> None:
    """One line of JSON per item a dry run would send."""
    click.echo(orjson.dumps(request, option=orjson.OPT_SORT_KEYS).decode())


def render_push_report(report: PushReport, as_json: bool) -> None:
    """The per-feed summary of a push, its first errors, and what waits."""
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    if report.dry_run:
        click.echo("dry run: nothing was sent and staging is unchanged", err=True)
        return
    table = _table(f"{report.kind} (run {report.run_id}): {report.status}")
    for column in ("feed", "created", "updated", "unchanged", "deleted", "failed", "seconds"):
        table.add_column(column, justify="left" if column == "feed" else "right")
    for feed in report.feeds.values():
        table.add_row(
            feed.feed,
            f"{feed.created:,}",
            f"{feed.updated:,}",
            f"{feed.unchanged:,}",
            f"{feed.deleted:,}",
            f"{feed.failed:,}",
            f"{feed.seconds:.1f}",
        )
    _print(table)
    for note in report.notes:
        click.echo(note)
    waiting = sum(feed.waiting_new for feed in report.feeds.values())
    if waiting:
        click.echo(
            f"{waiting:,} new item(s) wait: auto_create_new is off; "
            "create them with `pimsync create --sku CODE`"
        )
    if report.marked_by_mapping:
        click.echo(f"{report.marked_by_mapping:,} item(s) re-pushed because the mapping changed")
    for error in report.errors:
        click.echo(f"error: {error['feed']} {error['code']}: {error['message']}")
    if report.failed > len(report.errors):
        click.echo(f"... and {report.failed - len(report.errors)} more errors")
    if report.reindex:
        click.echo(f"reindex: {report.reindex}")
