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

from pimsync import __version__
from pimsync.app import App
from pimsync.config import load_config
from pimsync.errors import InterruptedRunError, PimsyncError
from pimsync.render import (
    render_error,
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
