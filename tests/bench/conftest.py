"""The benchmark session writes bench/REPORT.md once every benchmark it ran has added its rows."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.bench import harness


@pytest.fixture(scope="session", autouse=True)
def bench_report() -> Iterator[None]:
    started, load = harness.utc_now(), os.getloadavg()[0]
    yield
    if harness.ROWS:
        harness.write_report(started, load)


@pytest.fixture(scope="session")
def bench_postgres(postgres_root: str) -> str:
    """The session's throwaway PostgreSQL server (tests/postgres.py), noted in the report."""
    harness.FACTS["PostgreSQL"] = (
        f"{harness.server_version(postgres_root)}, the throwaway server of tests/postgres.py "
        "(fsync=off, full_page_writes=off, other settings default) on the same 2 cores"
    )
    if os.environ.get("PGOPTIONS"):
        harness.FACTS["PGOPTIONS"] = f"`{os.environ['PGOPTIONS']}` for every pimsync"
    return postgres_root
