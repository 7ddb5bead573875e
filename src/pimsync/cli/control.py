"""Control commands: skip, unskip, stop."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from pimsync import control
from pimsync.app import App
from pimsync.cli.base import cli, json_option, pass_app
from pimsync.config import PUSH_FEEDS
from pimsync.errors import LockHeldError, UsageError


def _skip_command(name: str, skipped: bool, doc: str) -> None:
    @cli.command(name, help=doc)
    @click.argument("codes", nargs=-1)
    @click.option(
        "--from-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="Codes or SKUs, one per line ('-' for stdin is not supported; # comments ok).",
    )
    @click.option("--search", help="Every item whose code, SKU or name contains TEXT.")
    @click.option("--feed", type=click.Choice(PUSH_FEEDS), help="Only items of this feed.")
    @json_option
    @pass_app
    def command(
        app: App,
        codes: tuple[str, ...],
        from_file: Path | None,
        search: str | None,
        feed: str | None,
        as_json: bool,
    ) -> None:
        names = list(codes)
        if from_file is not None:
            try:
                names += control.read_codes(from_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read {from_file}: {exc}") from None
        result = control.set_skipped(app, skipped, codes=names, search=search, feed=feed)
        if as_json:
            click.echo(orjson.dumps(result.as_dict()).decode())
        else:
            verb = "skipped" if skipped else "unskipped"
            click.echo(f"{result.changed:,} item(s) {verb}")
            for code in result.not_found:
                click.echo(f"not found: {code}", err=True)
        click.get_current_context().exit(2 if result.not_found else 0)


_skip_command(
    "skip",
    True,
    """Exclude items from every push until unskipped; they are still imported and diffed.

    \b
        pimsync skip SKU-0000042 SKU-0000043
        pimsync skip --from-file discontinued.txt
        pimsync skip --search "sample" --feed products
    """,
)
_skip_command(
    "unskip",
    False,
    """Let skipped items be pushed again (by the next `create`, if they need an update).

    \b
        pimsync unskip SKU-0000042
    """,
)


@cli.command("stop")
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=0,
    show_default=True,
    help="Seconds to wait for the run to end (exit 3 if it has not).",
)
@json_option
@pass_app
def stop(app: App, wait: float, as_json: bool) -> None:
    """Ask the running import or push to stop after its current batch.

    The run is recorded as stopped; the next run of the same kind resumes where it stopped.

    \b
        pimsync stop
        pimsync stop --wait 120
    """
    asked = control.ask_to_stop(app)
    holder = asked.holder
    if not as_json:
        if holder is None:
            click.echo("no run in progress")
        else:
            click.echo(f"asked {holder.describe()} to stop after its current batch")
            if asked.looked_dead:
                click.echo("its lease has run out: it looks dead; the next run takes over")
    result = control.wait_for_stop(app, asked, wait) if wait and holder else asked
    if as_json:
        click.echo(orjson.dumps(result.as_dict()).decode())
    if holder is None or not wait:
        return
    if not result.stopped:
        raise LockHeldError(f"the run did not stop within {wait:g} s: {holder.describe()}")
    if not as_json:
        click.echo("it stopped")
