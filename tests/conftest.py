"""Shared fixtures: a clean environment, a temporary staging database, a configured App."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pimsync.app import App
from pimsync.config import Config, load_config
from pimsync.staging.repository import StagingRepository
from tests.postgres import postgres_server

PIM_ENV = {
    "PIMSYNC_PIM__BASE_URL": "http://pim.test",
    "PIMSYNC_PIM__CLIENT_ID": "pimsync",
    "PIMSYNC_PIM__SECRET": "pimsync-secret",
    "PIMSYNC_PIM__USERNAME": "pimsync",
    "PIMSYNC_PIM__PASSWORD": "pimsync-password",
}


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PIMSYNC_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.upper().startswith("PIMSYNC_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def postgres_root() -> Iterator[str]:
    """One real PostgreSQL server for the whole session, on 127.0.0.1."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_root: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_root.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield postgres_root.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def staging_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that stages data runs on both backends."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'staging.db'}"


def make_config(staging_url: str, **env: str) -> Config:
    return load_config(None, {**PIM_ENV, "PIMSYNC_STAGING__URL": staging_url, **env})


@pytest.fixture
def config(staging_url: str) -> Config:
    return make_config(staging_url)


@pytest.fixture
def app(config: Config) -> Iterator[App]:
    app = App(config, sleep=lambda _seconds: None)
    yield app
    app.close()


@pytest.fixture
def repo(app: App) -> Iterator[StagingRepository]:
    with app.repository() as repository:
        yield repository


CLOCK_AHEAD = timedelta(minutes=10)


class _ClockAhead(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + CLOCK_AHEAD


@pytest.fixture
def clock_ahead(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to run the rest of the test on a machine whose clock is ten minutes ahead of the
    others' (every clock pimsync reads: `datetime.now` and the staging `utcnow`)."""

    def run_ahead() -> None:
        ahead = lambda: datetime.now(UTC) + CLOCK_AHEAD  # noqa: E731
        monkeypatch.setattr("pimsync.lock.datetime", _ClockAhead)
        monkeypatch.setattr("pimsync.inspection.datetime", _ClockAhead)
        monkeypatch.setattr("pimsync.staging._base.utcnow", ahead)
        monkeypatch.setattr("pimsync.staging.push_queue.utcnow", ahead)

    return run_ahead
