"""The `pimsync` command line: a click group over the library, one module per family of commands.

`base` holds the group, its error handling and the shared options; importing the command modules
registers their commands on it.
"""

import gc

from pimsync.cli import check, control, inspect, stages, tools
from pimsync.cli.base import cli

__all__ = ["check", "cli", "control", "inspect", "main", "stages", "tools"]


def main() -> None:
    """The console script."""
    try:
        cli(prog_name="pimsync")
    finally:
        # The command is done (its output flushed, its files and connections closed): spare the
        # interpreter's last collection over every object its modules created, about 0.13 s of
        # each command's exit here, and on the critical path of `create --workers`, whose
        # coordinator waits for its workers to exit. Objects are still freed as their modules
        # go; only garbage in reference cycles is left to the operating system.
        gc.freeze()
