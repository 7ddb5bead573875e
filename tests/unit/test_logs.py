from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pimsync import logs


@pytest.fixture(autouse=True)
def restore_pimsync_logger() -> Iterator[None]:
    logger = logging.getLogger(logs.LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.parametrize(
    ("fmt", "level", "expected"),
    [
        ("text", logging.WARNING, []),
        ("text", logging.INFO, ["--verbose"]),
        ("json", logging.INFO, ["--log-format", "json", "--verbose"]),
        ("json", logging.DEBUG, ["--log-format", "json", "--debug"]),
    ],
)
def test_a_started_pimsync_logs_as_the_process_that_starts_it(
    fmt: str, level: int, expected: list[str]
):
    logs.configure(fmt, level)
    assert logs.child_options() == expected


def test_a_library_user_who_configured_nothing_passes_no_options():
    logger = logging.getLogger(logs.LOGGER)
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    assert logs.child_options() == []
