"""Logging: human lines or one JSON object per line (for log shippers), on stderr.

The library logs through `logging.getLogger("pimsync...")`; only the CLI configures handlers.
Secrets never reach a log call, and as a second line of defence every record is masked for the
configured secret values before it is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

LOGGER = "pimsync"
MASK = "***"
# LogRecord attributes that are not extra fields given by the caller.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class SecretMask(logging.Filter):
    """Replaces any configured secret value in a record's message and fields."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.mask(record.getMessage())
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in _STANDARD and isinstance(value, str):
                    setattr(record, key, self.mask(value))
        return True

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message", ...extra fields} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(fmt: str, level: int, secrets: Iterable[str] = ()) -> None:
    """Send pimsync's log records to stderr in `fmt` ("text" or "json") from `level` up."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("pimsync: %(levelname)s %(message)s"))
    handler.addFilter(SecretMask(secrets))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def add_secrets(secrets: Iterable[str]) -> None:
    """Mask these values too (known once the configuration is loaded)."""
    for handler in logging.getLogger(LOGGER).handlers:
        for existing in handler.filters:
            if isinstance(existing, SecretMask):
                merged = set(existing.secrets) | {s for s in secrets if len(s) >= 4}
                existing.secrets = sorted(merged, key=len, reverse=True)


def child_options() -> list[str]:
    """The global options that make a pimsync process started by this one log as this one does.

    The workers `create --workers` starts write to its stderr: with `--log-format json` a line
    of text from one of them would break every JSON reader of that stream, and with `-v` their
    progress belongs with the coordinator's. `--debug` (which logs at DEBUG) goes along too.
    """
    logger = logging.getLogger(LOGGER)
    options: list[str] = []
    if any(isinstance(handler.formatter, JsonFormatter) for handler in logger.handlers):
        options += ["--log-format", "json"]
    if logger.level == logging.DEBUG:
        options.append("--debug")
    elif logging.NOTSET < logger.level <= logging.INFO:
        options.append("--verbose")
    return options
