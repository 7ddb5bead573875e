"""Inspection commands: status, items, show, log, runs.

All read-only: they take no run lock and write nothing to staging or Magento, so they are safe
to run beside an import or a push.
"""

from __future__ import annotations

import click

from pimsync import inspection
from pimsync.app import App
from pimsync.cli.base import cli, json_option, pass_app
from pimsync.config import PUSH_FEEDS
from pimsync.errors import UsageError
from pimsync.inspection_item import show_item
from pimsync.render_inspect import render_item, render_items, render_log, render_runs, render_status
from pimsync.staging.tables import ENTITIES, Status

feed_choice = click.Choice(PUSH_FEEDS)


@cli.command("status")
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show, per feed, the last import and push and the staged items by status.

    \b
        pimsync status
        pimsync status --json | jq '.feeds[] | {feed, items}'
    """
    render_status(inspection.status(app), as_json)


@cli.command("items")
@click.option("--feed", type=feed_choice, help="Only the items of this feed.")
@click.option(
    "--status",
    "item_status",
    type=click.Choice([s.value for s in Status]),
    help="Only this status.",
)
@click.option("--skipped", is_flag=True, help="Only the items flagged skipped.")
@click.option("--search", "text", help="Part of the code, SKU or name (case-insensitive).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print the items as CSV on stdout.")
@pass_app
def items(
    app: App,
    feed: str | None,
    item_status: str | None,
    skipped: bool,
    text: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Search the staged items by code, SKU or name.

    \b
        pimsync items --search SKU-00004
        pimsync items --feed products --status error --csv > errors.csv
    """
    if as_json and as_csv:
        raise UsageError("--json and --csv exclude each other")
    result = inspection.search_items(
        app, feed=feed, status=item_status, skipped=skipped, text=text, limit=limit
    )
    render_items(result, "json" if as_json else "csv" if as_csv else "table")


@cli.command("show")
@click.argument("code")
@click.option("--feed", type=feed_choice, help="Where to look, when the code is in several.")
@click.option("--entity", type=click.Choice(ENTITIES), help="The entity table to look in.")
@click.option("--live", is_flag=True, help="Also read the item from Magento and compare.")
@json_option
@pass_app
def show(
    app: App, code: str, feed: str | None, entity: str | None, live: bool, as_json: bool
) -> None:
    """Show one staged item by code or SKU: its PIM record, the payload it would push now,
    the payload last pushed and what changed, its last error and its history.

    \b
        pimsync show SKU-0000042
        pimsync show SKU-0000042 --live
        pimsync show color --feed attributes --json
    """
    render_item(show_item(app, code, feed=feed, entity=entity, live=live), as_json)


@cli.command("log")
@click.option("--run", "run_id", type=click.IntRange(1), help="The run (default: the newest).")
@click.option("--feed", type=feed_choice, help="Only the events of this feed.")
@click.option("--errors", is_flag=True, help="Only errors and quarantines.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1))
@json_option
@pass_app
def log(
    app: App, run_id: int | None, feed: str | None, errors: bool, limit: int, as_json: bool
) -> None:
    """Show the sync log events of a run.

    \b
        pimsync log --errors
        pimsync log --run 12 --feed products --json
    """
    result = inspection.run_log(app, run_id=run_id, feed=feed, errors_only=errors, limit=limit)
    render_log(result, as_json)


@cli.command("runs")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@json_option
@pass_app
def runs(app: App, limit: int, as_json: bool) -> None:
    """List the runs, newest first.

    \b
        pimsync runs --limit 5
    """
    render_runs(inspection.list_runs(app, limit), as_json)
