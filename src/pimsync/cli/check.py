"""The `check` command: validate the configuration and reach both ends, changing nothing."""

from __future__ import annotations

import click
import orjson

from pimsync.app import App
from pimsync.checks import CheckResult, exit_code, run_checks
from pimsync.cli.base import cli, json_option, pass_app


@cli.command("check")
@json_option
@pass_app
def check(app: App, as_json: bool) -> None:
    """Check the configuration, the staging database, the PIM and Magento; change nothing.

    One line per check, `ok` or `FAIL` with the reason and the setting to fix. Exits 0 when
    every check passes, else with the code of the first failed one (2 configuration or
    mapping, 5 staging, 4 PIM or Magento).

    \b
        pimsync check
        pimsync check --json
    """
    # run_checks never calls app.engine(), which would migrate the staging database.
    results = run_checks(app)
    render_checks(results, as_json)
    click.get_current_context().exit(exit_code(results))


def render_checks(results: list[CheckResult], as_json: bool) -> None:
    if as_json:
        body = [result.as_dict() for result in results]
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    for result in results:
        if result.ok:
            click.echo(f"ok    {result.name}: {result.detail}")
        else:
            fix = f" (fix: {result.setting})" if result.setting else ""
            click.echo(f"FAIL  {result.name}: {result.detail}{fix}")
