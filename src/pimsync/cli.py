"""The `pimsync` command group: parse options, build the app, call the library, render, exit.

Errors are handled in one place (`PimsyncGroup.invoke`): a `PimsyncError` prints
`Error: <message>` and a next step to stderr and exits with the error's own code; anything else
is a bug (exit 70), with a traceback only under `--debug`.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from functools import update_wrapper
from pathlib import Path
from typing import Any, TypeVar

import click

from pimsync import __version__, pipeline
from pimsync.app import App
from pimsync.config import FEEDS, PUSH_FEEDS, load_config
from pimsync.errors import ConfigError, InterruptedRunError, PimsyncError
from pimsync.render import (
    ImportProgress,
    print_dry_run,
    render_error,
    render_import_report,
    render_push_report,
)

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class PimsyncGroup(click.Group):
    """A click group that turns pimsync's exceptions into messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except PimsyncError as exc:
            render_error(exc)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            render_error(InterruptedRunError("interrupted; work committed so far is kept"))
            ctx.exit(InterruptedRunError.exit_code)
        except Exception as exc:
            if ctx.find_root().params.get("debug"):
                traceback.print_exc()
            render_error(
                PimsyncError(
                    f"internal error: {type(exc).__name__}: {exc}",
                    hint="this is a bug; run again with --debug and report the traceback",
                )
            )
            ctx.exit(PimsyncError.exit_code)


class Settings:
    """What the group options say; the App is built from it only when a command needs one."""

    def __init__(self, config_path: Path | None, overrides: dict[str, Any], debug: bool) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self.debug = debug
        self._app: App | None = None

    def app(self) -> App:
        if self._app is None:
            config = load_config(self.config_path, os.environ, self.overrides)
            self._app = App(config)
        return self._app


def pass_app(command: F) -> F:
    """Give a command the App, built (and its config validated) on first use."""

    @click.pass_context
    def wrapper(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        app = ctx.find_object(Settings)
        assert app is not None
        return ctx.invoke(command, app.app(), *args, **kwargs)

    return update_wrapper(wrapper, command)  # type: ignore[return-value]


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."
    )(command)


@click.group(cls=PimsyncGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="PIMSYNC_CONFIG",
    help="Config file (default: ./pimsync.toml, optional).",
)
@click.option("--staging-url", help="Staging database URL; overrides [staging] url.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, "-V", "--version", prog_name="pimsync")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, staging_url: str | None, debug: bool) -> None:
    """Keep a Magento 2 / Adobe Commerce catalog in sync with a PIM.

    \b
    Stage 1, import:  pimsync import:full     then  pimsync import:incremental
    Stage 2, push:    pimsync create          or    pimsync resync --feed products
    """
    overrides: dict[str, Any] = {}
    if staging_url:
        overrides["staging"] = {"url": staging_url}
    ctx.obj = Settings(config_path, overrides, debug)
    ctx.call_on_close(lambda: ctx.obj._app.close() if ctx.obj._app else None)


@cli.command("import:full")
@click.option("--attributes", is_flag=True, help="Attributes, options, families, variants.")
@click.option("--categories", is_flag=True, help="The category trees.")
@click.option("--products", is_flag=True, help="Product models and products.")
@click.option("--assets", is_flag=True, help="Media file metadata.")
@json_option
@pass_app
def import_full(
    app: App, attributes: bool, categories: bool, products: bool, assets: bool, as_json: bool
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
    with ImportProgress() as progress:
        report = pipeline.run_full_import(app, chosen, observer=progress)
    render_import_report(report, as_json)
    click.get_current_context().exit(report.exit_code)


@cli.command("import:incremental")
@click.option(
    "--feed",
    "feeds",
    multiple=True,
    type=click.Choice(FEEDS),
    help="Only this feed (repeatable; default: all).",
)
@json_option
@pass_app
def import_incremental(app: App, feeds: tuple[str, ...], as_json: bool) -> None:
    """Fetch what changed in the PIM since each feed's last import.

    \b
        pimsync import:incremental
        pimsync import:incremental --feed products --json
    """
    with ImportProgress() as progress:
        report = pipeline.run_incremental_import(app, feeds, observer=progress)
    render_import_report(report, as_json)
    click.get_current_context().exit(report.exit_code)


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
@json_option
@pass_app
def create(
    app: App,
    feeds: tuple[str, ...],
    skus: tuple[str, ...],
    dry_run: bool,
    limit: int | None,
    no_reindex: bool,
    as_json: bool,
) -> None:
    """Push every non-skipped item that needs an update to Magento, in feed order.

    New items are created when [sync] auto_create_new is true (the default) or when named
    with --sku; the others wait, and the summary says how many.

    \b
        pimsync create
        pimsync create --feed products --sku SKU-0000042 --dry-run
    """
    options = pipeline.PushOptions(
        feeds=pipeline.order_push_feeds(feeds),
        skus=list(skus) or None,
        dry_run=dry_run,
        limit=limit,
        reindex=not no_reindex,
        dry_run_sink=print_dry_run,
    )
    report = pipeline.run_push(app, "create", options)
    render_push_report(report, as_json)
    click.get_current_context().exit(report.exit_code)


@cli.command("resync")
@click.option("--feed", required=True, type=click.Choice(PUSH_FEEDS), help="The feed to push.")
@click.option("--no-reindex", is_flag=True, help="Do not run [sync] reindex_command afterwards.")
@json_option
@pass_app
def resync(app: App, feed: str, no_reindex: bool, as_json: bool) -> None:
    """Push every staged item of one feed again, whatever its hash (deletions never are).

    \b
        pimsync resync --feed categories
    """
    options = pipeline.PushOptions(feeds=[feed], force=True, reindex=not no_reindex)
    report = pipeline.run_push(app, "resync", options)
    render_push_report(report, as_json)
    click.get_current_context().exit(report.exit_code)


@cli.group("db", context_settings=CONTEXT_SETTINGS)
def db() -> None:
    """Manage the staging database."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply the staging schema migrations (done at the start of every command anyway).

    \b
        pimsync db upgrade
    """
    from pimsync.staging.database import current_revision

    engine = app.engine()
    click.echo(f"staging database at revision {current_revision(engine)}")


@cli.group("mock", context_settings=CONTEXT_SETTINGS)
def mock() -> None:
    """Serve the bundled fake PIM or Magento on 127.0.0.1 (for demos and smoke tests)."""


@mock.command("pim")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535))
@click.option("--products", default=5000, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to each answer.")
@click.option("--error-rate", default=0.0, show_default=True, help="Share of 5xx answers.")
def mock_pim(port: int, products: int, seed: int, latency: float, error_rate: float) -> None:
    """Serve an Akeneo-compatible PIM with a generated catalog.

    Credentials: client_id pimsync, secret pimsync-secret, username pimsync,
    password pimsync-password.

    \b
        pimsync mock pim --port 8081 --products 5000
    """
    from pimsync.testing.catalog import Catalog
    from pimsync.testing.fake_pim import FakePim, Faults
    from pimsync.testing.server import serve_forever

    if not 0 <= error_rate <= 1 or latency < 0:
        raise ConfigError("--error-rate must be within 0..1 and --latency at least 0")
    pim = FakePim(Catalog(products, seed=seed))
    pim.faults = Faults(latency=latency, error_rate=error_rate, seed=seed)
    serve_forever(pim, port=port, on_ready=lambda url: click.echo(f"mock PIM at {url}", err=True))


@mock.command("magento")
@click.option("--port", default=8082, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", default="magento-token", show_default=True)
@click.option("--latency", default=0.0, show_default=True, help="Seconds added to each answer.")
def mock_magento(port: int, token: str, latency: float) -> None:
    """Serve a Magento-compatible REST API (stores default, fr, de on website base).

    \b
        pimsync mock magento --port 8082
    """
    from pimsync.testing.fake_magento import FakeMagento
    from pimsync.testing.server import serve_forever

    if latency < 0:
        raise ConfigError("--latency must be at least 0")
    with FakeMagento(token=token, latency=latency) as magento:
        serve_forever(
            magento, port=port, on_ready=lambda url: click.echo(f"mock Magento at {url}", err=True)
        )


def main() -> None:
    """The console script."""
    cli(prog_name="pimsync")
