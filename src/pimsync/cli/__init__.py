"""The `pimsync` command line: a click group over the library, one module per family of commands.

`base` holds the group, its error handling and the shared options; importing the command modules
registers their commands on it.
"""

from pimsync.cli import check, control, inspect, stages, tools
from pimsync.cli.base import cli

__all__ = ["check", "cli", "control", "inspect", "main", "stages", "tools"]


def main() -> None:
    """The console script."""
    cli(prog_name="pimsync")
