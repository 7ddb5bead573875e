"""Shared fixtures: a clean environment, a temporary staging database, a configured App."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimsync.app import App
from pimsync.config import Config, load_config
from pimsync.staging.repository import StagingRepository

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


@pytest.fixture
def staging_url(tmp_path: Path) -> str:
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
