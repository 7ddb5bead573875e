"""The exceptions pimsync raises when a whole run must stop.

A rejected item is data (it lands in the staging table and the run report), never an exception.
Everything below is for the cases where the run cannot go on; each class carries the process exit
code the CLI uses, so the code that raises decides what the operator sees::

    PimsyncError (70)
    ├── UsageError (2)
    │   └── ConfigError (2)
    ├── LockHeldError (3)
    ├── RemoteError (4)
    │   ├── PimError (4)
    │   └── MagentoError (4)
    ├── StagingError (5)
    └── InterruptedRunError (130)

    HTTPStatusError (not a PimsyncError: the clients translate it)
    ├── RetryableHTTPError   429, 5xx: tenacity retries these
    └── FatalHTTPError       other 4xx: retrying cannot help
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the processes that prepare pages raise PimError and never load httpx
    import httpx


class PimsyncError(Exception):
    """Base class: a run stopped. `hint` tells the operator what to do next."""

    exit_code = 70

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(PimsyncError):
    """Bad command-line arguments."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration is invalid; `problems` lists every field error, one per line."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class LockHeldError(PimsyncError):
    """Another run holds the staging database."""

    exit_code = 3


class RemoteError(PimsyncError):
    """A remote system was unavailable or refused us, so the run was aborted."""

    exit_code = 4


class PimError(RemoteError):
    """The PIM could not be read."""


class MagentoError(RemoteError):
    """Magento could not be written to."""


class StagingError(PimsyncError):
    """The staging database is unreachable or its schema is wrong."""

    exit_code = 5


class InterruptedRunError(PimsyncError):
    """The operator interrupted the run; committed work is kept."""

    exit_code = 130


def internal_error(exc: Exception) -> PimsyncError:
    """A bug, said in one line (exit 70): what the CLI and a worker print instead of a traceback,
    which `--debug` shows as well."""
    return PimsyncError(
        f"internal error: {type(exc).__name__}: {exc}",
        hint="this is a bug; run again with --debug and report the traceback",
    )


class HTTPStatusError(Exception):
    """An HTTP answer that is not a success, classified by `classify_response`."""

    def __init__(self, response: httpx.Response, message: str) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.message = message


class RetryableHTTPError(HTTPStatusError):
    """429 or 5xx: the same request may succeed later."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait, when it said so."""
        value = self.response.headers.get("Retry-After")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return None


class FatalHTTPError(HTTPStatusError):
    """A 4xx other than 429: the request itself is wrong, retrying cannot help."""
