"""How the inspection commands look: rich tables on stdout, or JSON / CSV for machines.

Values from the PIM and from Magento are printed as they are: the console parses no markup, so
an error message such as "Invalid value [x]" is never eaten as a style tag.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
import orjson

from pimsync.inspection import (
    ITEM_COUNTERS,
    ItemsResult,
    LogResult,
    RunInfo,
    RunsResult,
    StatusReport,
)
from pimsync.inspection_item import ItemDetail
from pimsync.payload_diff import flatten, payload_parts

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# rich is imported where it draws: `--json` under cron never loads it (it weighs ~7 MB).
ERROR_WIDTH = 60  # last_error in the items table; whole in JSON and CSV
ITEM_FIELDS = (
    "feed",
    "entity",
    "code",
    "identifier",
    "label",
    "status",
    "skipped",
    "last_error",
    "pushed_at",
)


def _console(width: int = 120) -> Console:
    from rich.console import Console

    # sys.stdout at call time, so click's test runner captures it too. A fixed width, as in
    # render.py: the same layout in a terminal, a pipe and a cron mail.
    return Console(file=sys.stdout, width=width, markup=False, highlight=False, emoji=False)


def _table(
    title: str | None, *columns: str, right: tuple[str, ...] = (), whole: tuple[str, ...] = ()
) -> Table:
    """A table; `whole` columns are never wrapped (dates, kinds), the others fold as needed."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in right else "left",
            no_wrap=column in whole,
            overflow="fold",
        )
    return table


def print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


def shorten(text: str | None, width: int = ERROR_WIDTH) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- status -----------------------------------------------------------------------------------


def _run_cell(run: RunInfo | None) -> str:
    if run is None:
        return "never"
    end = f" → {when(run.finished_at)}" if run.finished_at else ""
    return f"{run.state} (run {run.id}, {run.kind})\n{when(run.started_at)}{end}"


def render_status(report: StatusReport, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    console = _console()
    runs = _table(
        f"pimsync status at {when(report.checked_at)} UTC", "feed", "last import", "last push"
    )
    for feed in report.feeds:
        runs.add_row(feed.feed, _run_cell(feed.last_import), _run_cell(feed.last_push))
    console.print(runs)
    counters = [name.replace("_", " ") for name in ITEM_COUNTERS]
    items = _table("staged items", "feed", *counters, right=tuple(counters))
    for feed in report.feeds:
        items.add_row(feed.feed, *(f"{feed.items.get(name, 0):,}" for name in ITEM_COUNTERS))
    console.print(items)
    for feed in report.feeds:
        if feed.media is not None:
            media = dict.fromkeys(("synced", "pending", "error"), 0) | feed.media
            listed = ", ".join(f"{count:,} {state}" for state, count in media.items())
            click.echo(
                f"{feed.feed}: product images {listed} (a media file is synced once a product "
                "holds it; one no product uses stays new)"
            )
    last = report.last_successful_push
    if last is None:
        click.echo("last successful push: none")
    else:
        click.echo(
            f"last successful push: run {last.id} ({last.kind}), finished "
            f"{when(last.finished_at)} UTC, {report.items_updated_by_last_push:,} item(s) "
            "created or updated"
        )
    lock = report.lock
    if lock is None:
        click.echo("lock: free")
    else:
        state = "expired" if lock["expired"] else "held"
        click.echo(
            f"lock: {state} by run {lock['run_id']} ({lock['kind']}) on {lock['host']}:"
            f"{lock['pid']}, lease until {lock['expires_at']}"
        )


# -- items ------------------------------------------------------------------------------------


def render_items(result: ItemsResult, fmt: str) -> None:
    """`fmt` is table, json or csv."""
    if fmt == "json":
        print_json(result.as_dict())
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(ITEM_FIELDS)
        for item in result.items:
            row = item.as_dict()
            writer.writerow([_csv(row[name]) for name in ITEM_FIELDS])
        click.echo(buffer.getvalue(), nl=False)
    else:
        table = _table(
            None,
            "feed",
            "entity",
            "code",
            "sku",
            "label",
            "status",
            "skipped",
            "last error",
            "pushed at",
            whole=("feed", "status", "pushed at"),
        )
        for item in result.items:
            table.add_row(
                item.feed,
                item.entity,
                item.code,
                item.identifier or "",
                item.label or "",
                item.status,
                "yes" if item.skipped else "",
                shorten(item.last_error),
                when(item.pushed_at),
            )
        _console(160).print(table)
        if not result.items:
            click.echo("no staged item matches", err=True)
    if result.truncated:
        click.echo(f"showing the first {result.limit}; more match (use --limit)", err=True)


# -- show -------------------------------------------------------------------------------------


def render_item(detail: ItemDetail, as_json: bool) -> None:
    if as_json:
        print_json(detail.as_dict())
        return
    console = _console()
    data = detail.as_dict()
    facts = _table(f"{detail.feed} / {detail.entity} {data['code']}", "field", "value")
    for name in (
        "code",
        "identifier",
        "label",
        "parent_code",
        "status",
        "skipped",
        "magento_id",
        "pim_updated",
        "imported_at",
        "pushed_at",
    ):
        facts.add_row(name, _value(data[name]))
    console.print(facts)
    _section(console, "staged PIM record")
    print_json(detail.record)
    _section(console, "would push now")
    if detail.would_push_note:
        click.echo(detail.would_push_note)
    if detail.would_push is not None:
        console.print(_payload_table(detail.would_push))
    _section(console, f"last pushed ({data['pushed_at'] or 'never'})")
    if detail.last_pushed is None:
        click.echo("never pushed")
    elif detail.last_pushed == detail.would_push:
        click.echo("the same as the would-push payload")
    else:
        console.print(_payload_table(detail.last_pushed))
    _section(console, "would push vs last pushed")
    if detail.would_push is None:
        click.echo("unavailable: there is no would-push payload")
    elif detail.last_pushed is None:
        click.echo("never pushed: every field is new")
    elif not detail.diff:
        click.echo("no difference: Magento was sent exactly this")
    else:
        diff = _table(None, "part", "field", "change", "last pushed → would push")
        for change in detail.diff:
            diff.add_row(
                change.part,
                change.field,
                change.change,
                f"{_value(change.old)} → {_value(change.new)}",
            )
        console.print(diff)
    _section(console, "last error")
    click.echo(data["last_error"] or "none")
    if detail.live is not None:
        _render_live(console, detail)
    _section(console, f"history (newest first, last {len(detail.history)})")
    if not detail.history:
        click.echo("no event logged")
    else:
        history = _table(None, "run", "at", "feed", "action", "message")
        for event in detail.history:
            history.add_row(
                str(event["run_id"]),
                event["at"],
                event["feed"],
                event["action"],
                event["message"] or "",
            )
        console.print(history)


def _payload_table(payload: dict[str, Any]) -> Table:
    """A payload as one row per field, part by part (the JSON output has it whole)."""
    table = _table(None, "part", "field", "value")
    for part, body in payload_parts(payload).items():
        for name, value in flatten(body).items():
            table.add_row(part, name, _value(value))
    return table


def _render_live(console: Console, detail: ItemDetail) -> None:
    live = detail.live
    assert live is not None
    _section(console, "Magento now (live) vs would push")
    if live.note:
        click.echo(live.note)
    for part in live.missing:
        click.echo(f"{part}: Magento does not have it")
    if live.compared and not live.drift:
        click.echo(f"{', '.join(live.compared)}: Magento holds what pimsync would push")
    if live.drift:
        table = _table(None, "part", "field", "Magento", "would push")
        for item in live.drift:
            table.add_row(item.part, item.field, _value(item.magento), _value(item.pimsync))
        console.print(table)


def _section(console: Console, title: str) -> None:
    console.rule(title, align="left")


# -- log and runs -----------------------------------------------------------------------------


def render_log(result: LogResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    run = result.run
    if run is None:
        click.echo("no run recorded yet", err=True)
        return
    title = f"run {run.id} ({run.kind}): {run.state}, started {when(run.started_at)} UTC"
    table = _table(title, "at", "feed", "entity", "code", "action", "message", whole=("at",))
    for event in result.events:
        table.add_row(
            when(event["at"]),
            event["feed"],
            event["entity"],
            event["code"],
            event["action"],
            event["message"] or "",
        )
    _console(160).print(table)
    if not result.events:
        click.echo("no event matches", err=True)
    if result.truncated:
        click.echo(f"showing the first {result.limit} events (use --limit)", err=True)


def render_runs(result: RunsResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    table = _table(
        None,
        "id",
        "kind",
        "status",
        "started",
        "finished",
        "duration",
        "feeds",
        "summary",
        "message",
        "host:pid",
        "resumed from",
        right=("id", "duration"),
        whole=("id", "kind", "status", "started", "finished", "duration"),
    )
    for run in result.runs:
        duration = run.duration_seconds
        table.add_row(
            str(run.id),
            run.kind,
            run.state,
            when(run.started_at),
            when(run.finished_at),
            "-" if duration is None else f"{duration:,.1f}s",
            ", ".join(run.feeds),
            run.summary,
            run.message or "",
            f"{run.host or '?'}:{run.pid or '?'}",
            str(run.resumed_from or ""),
        )
    _console(160).print(table)
    if not result.runs:
        click.echo("no run recorded yet", err=True)
