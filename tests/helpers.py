"""Test helpers shared by the integration and CLI tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
from sqlalchemy import func, select, update

from pimsync.app import App
from pimsync.staging.tables import Status, entity_tables
from pimsync.testing.fake_pim import FakePim


def pim_app(config, pim: FakePim | Callable[[httpx.Request], httpx.Response]) -> App:
    """An App whose PIM client talks to `pim` in-process, with no retry sleeps."""
    return App(config, pim_transport=httpx.MockTransport(pim), sleep=lambda _s: None)


def mark_all_synced(app: App) -> None:
    """What a successful push of everything does to staging: pushed hash = hash, synced."""
    with app.repository() as repo:
        for table in entity_tables.values():
            repo.connection.execute(
                update(table)
                .where(table.c.status.in_([Status.NEW, Status.NEEDS_UPDATE]))
                .values(pushed_hash=table.c.hash, status=Status.SYNCED)
            )
        repo.commit()


def statuses(app: App, entity: str) -> dict[str, str]:
    table = entity_tables[entity]
    with app.repository() as repo:
        return dict(repo.connection.execute(select(table.c.code, table.c.status)).all())


def count(app: App, entity: str) -> int:
    table = entity_tables[entity]
    with app.repository() as repo:
        return int(repo.connection.scalar(select(func.count()).select_from(table)) or 0)


def staged_record(app: App, entity: str, code: str) -> dict:
    with app.repository() as repo:
        row = repo.get(entity, code)
    assert row is not None, f"{entity} {code} is not staged"
    return orjson.loads(row["data"])


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (Linux: a zombie, waiting for its parent, is gone)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ended_pid() -> int:
    """The pid of a process that has ended, and been reaped."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid
