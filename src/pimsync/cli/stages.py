"""Stage commands: import:full, import:incremental, create, resync."""

from __future__ import annotations

from collections.abc import Callable

import click
import orjson

from pimsync import pipeline
from pimsync.app import App
from pimsync.cli.base import cli, fresh_option, json_option, pass_app, remember_report
from pimsync.config import FEEDS, PUSH_FEEDS
from pimsync.lock import StopFlag, stop_signals
from pimsync.pipeline.report import RunReport
from pimsync.render import (
    ImportProgress,
    print_dry_run,
    render_import_report,
    render_push_report,
)


@cli.command("import:full")
@click.option("--attributes", is_flag=True, help="Attributes, options, families, variants.")
@click.option("--categories", is_flag=True, help="The category trees.")
@click.option("--products", is_flag=True, help="Product models and products.")
@click.option("--assets", is_flag=True, help="Media file metadata.")
@fresh_option
@json_option
@pass_app
def import_full(
    app: App,
    attributes: bool,
    categories: bool,
    products: bool,
    assets: bool,
    fresh: bool,
    as_json: bool,
) -> None:
    """Fetch every item of the chosen feeds (default: all) into staging.

    Items that changed since the last push are marked needs_update; items the PIM no longer
    has are marked deleted_in_pim. Nothing is sent to Magento.

    \b
        pimsync import:full
        pimsync import:full --products --json
    """
    chosen = [
        feed
        for feed, wanted in zip(FEEDS, (attributes, categories, products, assets), strict=True)
        if wanted
    ]
    _import(pipeline.run_full_import, app, chosen, fresh, as_json)


@cli.command("import:incremental")
@click.option(
    "--feed",
    "feeds",
    multiple=True,
    type=click.Choice(FEEDS),
    help="Only this feed (repeatable; default: all).",
)
@fresh_option
@json_option
@pass_app
def import_incremental(app: App, feeds: tuple[str, ...], fresh: bool, as_json: bool) -> None:
    """Fetch what changed in the PIM since each feed's last import.

    \b
        pimsync import:incremental
        pimsync import:incremental --feed products --json
    """
    _import(pipeline.run_incremental_import, app, list(feeds), fresh, as_json)


@cli.command("create")
@click.option(
    "--feed",
    "feeds",
    multiple=True,
    type=click.Choice(PUSH_FEEDS),
    help="Only this feed (repeatable; default: all, in order).",
)
@click.option("--sku", "skus", multiple=True, help="Only these products (creates them if new).")
@click.option(
    "--dry-run", is_flag=True, help="Print what would be sent, item by item; change nothing."
)
@click.option("--limit", type=click.IntRange(1), help="Push at most N items per entity.")
@click.option("--no-reindex", is_flag=True, help="Do not run [sync] reindex_command afterwards.")
@click.option(
    "--no-deletions", is_flag=True, help="Do not export PIM deletions ([sync] deletions) this run."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes sharing products and variants (PostgreSQL staging).",
)
@fresh_option
@json_option
@pass_app
def create(
    app: App,
    feeds: tuple[str, ...],
    skus: tuple[str, ...],
    dry_run: bool,
    limit: int | None,
    no_reindex: bool,
    no_deletions: bool,
    workers: int,
    fresh: bool,
    as_json: bool,
) -> None:
    """Push every non-skipped item that needs an update to Magento, in feed order.

    New items are created when [sync] auto_create_new is true (the default) or when named
    with --sku; the others wait, and the summary says how many. PIM deletions are exported
    as [sync] deletions says, within [sync] deletion_threshold. A stopped push is resumed.

    \b
        pimsync create
        pimsync create --feed products --sku SKU-0000042 --dry-run
        pimsync create --workers 4
    """
    if workers > 1 and (dry_run or skus or limit):
        raise click.UsageError("--workers cannot be combined with --dry-run, --sku or --limit")
    options = pipeline.PushOptions(
        feeds=pipeline.order_push_feeds(feeds),
        skus=list(skus) or None,
        dry_run=dry_run,
        limit=limit,
        reindex=not no_reindex,
        dry_run_sink=print_dry_run,
        deletions=not no_deletions,
        fresh=fresh,
        workers=workers,
    )
    _push(app, "create", options, as_json)


@cli.command("resync")
@click.option("--feed", type=click.Choice(PUSH_FEEDS), help="The feed to push.")
@click.option(
    "--failed", is_flag=True, help="Only the items in error (of --feed, or of every feed)."
)
@click.option("--no-reindex", is_flag=True, help="Do not run [sync] reindex_command afterwards.")
@fresh_option
@json_option
@pass_app
def resync(
    app: App, feed: str | None, failed: bool, no_reindex: bool, fresh: bool, as_json: bool
) -> None:
    """Push every staged item of one feed again, whatever its hash (deletions never are);
    with --failed, push the items in error again.

    \b
        pimsync resync --feed categories
        pimsync resync --failed
    """
    if feed is None and not failed:
        raise click.UsageError("give --feed FEED, or --failed")
    options = pipeline.PushOptions(
        feeds=[feed] if feed else list(PUSH_FEEDS),
        force=not failed,
        failed_only=failed,
        reindex=not no_reindex,
        fresh=fresh,
    )
    _push(app, "resync", options, as_json)


def _import(
    run: Callable[..., RunReport], app: App, feeds: list[str], fresh: bool, as_json: bool
) -> None:
    with ImportProgress() as progress:
        report = run(app, feeds, observer=progress, fresh=fresh)
    remember_report(report.as_dict())
    render_import_report(report, as_json)
    click.get_current_context().exit(report.exit_code)


def _push(app: App, kind: str, options: pipeline.PushOptions, as_json: bool) -> None:
    report = pipeline.run_push(app, kind, options)
    if not options.dry_run:
        remember_report(report.as_dict())
    render_push_report(report, as_json)
    click.get_current_context().exit(report.exit_code)


@cli.command("worker")
@click.option("--run", "run_id", type=int, help="Work for this push run only, then exit.")
@click.option(
    "--run-from-stdin",
    is_flag=True,
    hidden=True,
    help="Read the run to work for from stdin (how `create --workers` starts its own).",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0),
    help="Exit after this many seconds with no push to work on (default: wait forever).",
)
@json_option
@pass_app
def worker(
    app: App, run_id: int | None, run_from_stdin: bool, idle_timeout: float | None, as_json: bool
) -> None:
    """Push products and variants for `create` runs of a PostgreSQL staging database.

    Start any number of them, on any machine that reaches the database and Magento; each
    joins the running `create --workers N` (N of 2 or more: a plain `create` pushes alone),
    claims batches of items and pushes them. SIGTERM or Ctrl-C ends a worker after its
    current batch.

    \b
        pimsync worker
        pimsync worker --idle-timeout 600
    """
    from pimsync.pipeline.workers import CoordinatorWatch, run_id_from_stdin, run_worker

    stop = StopFlag()
    # A local worker of `create --workers` (--run-from-stdin) leaves when that create is gone.
    orphaned: Callable[[], bool] = CoordinatorWatch() if run_from_stdin else lambda: False
    with stop_signals(stop):
        report = run_worker(
            app,
            run_id=run_id,
            await_run=run_id_from_stdin if run_from_stdin else None,
            idle_timeout=idle_timeout,
            should_stop=lambda: stop.stop_requested or orphaned(),
        )
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        for feed, counts in report.counts.items():
            click.echo(
                f"{feed}: created {counts.created:,}, updated {counts.updated:,}, "
                f"failed {counts.failed:,}"
            )
