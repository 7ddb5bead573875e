"""The `pimsync` command group: parse options, build the app, call the library, render, exit.

Errors are handled in one place (`PimsyncGroup.invoke`): a `PimsyncError` prints
`Error: <message>` and a next step to stderr and exits with the error's own code; anything else
is a bug (exit 70), with a traceback only under `--debug`.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from datetime import datetime
from functools import update_wrapper
from pathlib import Path
from typing import Any, TypeVar

import click

from pimsync import __version__, logs
from pimsync.app import App
from pimsync.config import load_config
from pimsync.errors import ConfigError, InterruptedRunError, PimsyncError, internal_error
from pimsync.render import render_error
from pimsync.reports import RunSummary, utcnow, write_metrics, write_report

log = logging.getLogger("pimsync")

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


REPORT_KEY = "pimsync.report"
ERROR_KEY = "pimsync.error"


class PimsyncGroup(click.Group):
    """A click group that turns pimsync's exceptions into messages and exit codes, and writes
    `--report`/`--metrics` whatever the outcome."""

    def invoke(self, ctx: click.Context) -> Any:
        started = utcnow()
        code = 0
        try:
            return self._invoke(ctx)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
            raise
        except click.ClickException as exc:
            code = exc.exit_code
            ctx.meta[ERROR_KEY] = exc.format_message()
            raise
        except click.Abort:
            code = 1
            raise
        finally:
            _write_summaries(ctx, started, code)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except PimsyncError as exc:
            _fail(ctx, exc)
        except KeyboardInterrupt:
            _fail(ctx, InterruptedRunError("interrupted; work committed so far is kept"))
        except Exception as exc:
            if ctx.find_root().params.get("debug"):
                traceback.print_exc()
            _fail(ctx, internal_error(exc))


def _fail(ctx: click.Context, exc: PimsyncError) -> None:
    """The one place a failed command speaks: an `Error:` line (or, with --log-format json, one
    JSON record), then its exit code."""
    ctx.meta[ERROR_KEY] = exc.message
    if ctx.find_root().params.get("log_format") == "json":
        extra: dict[str, object] = {"exit_code": exc.exit_code, "hint": exc.hint}
        if isinstance(exc, ConfigError):
            extra["problems"] = exc.problems
        log.error(exc.message, extra=extra)
    else:
        render_error(exc)
    ctx.exit(exc.exit_code)


def _write_summaries(ctx: click.Context, started: datetime, code: int) -> None:
    report_path: Path | None = ctx.params.get("report_path")
    metrics_path: Path | None = ctx.params.get("metrics_path")
    if ctx.invoked_subcommand is None or not (report_path or metrics_path):
        return
    summary = RunSummary(
        command=ctx.invoked_subcommand,
        started_at=started,
        finished_at=utcnow(),
        exit_code=code,
        error=ctx.meta.get(ERROR_KEY),
        run=ctx.meta.get(REPORT_KEY),
    )
    for path, write in ((report_path, write_report), (metrics_path, write_metrics)):
        if path is None:
            continue
        try:
            write(path, summary)
        except OSError as exc:
            click.echo(f"Error: cannot write {path}: {exc.strerror}", err=True)


def remember_report(report: dict[str, Any]) -> None:
    """Hand a command's run report to `--report`/`--metrics` (written when the command ends)."""
    click.get_current_context().meta[REPORT_KEY] = report


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
            logs.add_secrets(
                secret.get_secret_value()
                for secret in (config.pim.secret, config.pim.password, config.magento.token)
                if secret is not None
            )
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


def fresh_option(command: F) -> F:
    return click.option(
        "--fresh",
        is_flag=True,
        help="Do not resume a stopped run of this kind; start over with today's configuration.",
    )(command)


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
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write a JSON summary of the run here (counts, errors, duration, exit code).",
)
@click.option(
    "--metrics",
    "metrics_path",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write the same figures as OpenMetrics text (node_exporter textfile collector).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines on stderr: human text, or one JSON object per line.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log run progress (info), not only problems.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, "-V", "--version", prog_name="pimsync")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    staging_url: str | None,
    report_path: Path | None,
    metrics_path: Path | None,
    log_format: str,
    verbose: bool,
    debug: bool,
) -> None:
    """Keep a Magento 2 / Adobe Commerce catalog in sync with a PIM.

    \b
    Stage 1, import:  pimsync import:full     then  pimsync import:incremental
    Stage 2, push:    pimsync create          or    pimsync resync --feed products
    """
    for option, path in (("--report", report_path), ("--metrics", metrics_path)):
        folder = path.resolve().parent if path is not None else None
        if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK)):
            # Checked now: a run must not go ahead and then fail to say how it went.
            raise click.BadParameter(f"{folder} is not a writable folder", param_hint=option)
    # Under cron only problems are logged; JSON logs are for shippers, which want the runs too.
    level = logging.INFO if verbose or log_format == "json" else logging.WARNING
    logs.configure(log_format, logging.DEBUG if debug else level)
    overrides: dict[str, Any] = {}
    if staging_url:
        overrides["staging"] = {"url": staging_url}
    ctx.obj = Settings(config_path, overrides, debug)
    ctx.call_on_close(lambda: ctx.obj._app.close() if ctx.obj._app else None)
