"""Runs, the sync log and small key-value state: what outlives a run."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    func,
    insert,
    select,
    update,
)

from pimsync.errors import StagingError
from pimsync.staging._base import Connected, aware, utcnow
from pimsync.staging.tables import (
    sync_log,
    sync_runs,
    sync_state,
)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of the sync log."""

    feed: str
    entity: str
    code: str
    action: str
    message: str | None = None


class RunHistory(Connected):
    """`sync_runs`, `sync_log` and `sync_state`; mixed into StagingRepository."""

    def state(self, key: str) -> str | None:
        return self.connection.scalar(select(sync_state.c.value).where(sync_state.c.key == key))

    def set_state(self, key: str, value: str) -> None:
        if (
            self.connection.execute(
                update(sync_state).where(sync_state.c.key == key).values(value=value)
            ).rowcount
            == 0
        ):
            self.connection.execute(insert(sync_state).values(key=key, value=value))

    # -- runs and the sync log ---------------------------------------------------------------

    def begin_run(
        self,
        kind: str,
        feeds: Sequence[str],
        fingerprint: str,
        snapshot: str,
        *,
        options: Mapping[str, Any] | None = None,
        resumed_from: int | None = None,
    ) -> int:
        """Record a run as in progress and return its id (committed at once, so it is visible).

        `snapshot` (the configuration without secrets) and `options` (what the run was asked to
        do) are what a resumed run starts again from."""
        result = self.connection.execute(
            insert(sync_runs).values(
                kind=kind,
                feeds=orjson.dumps(list(feeds)).decode(),
                started_at=utcnow(),
                status="in_progress",
                counts="{}",
                watermarks="{}",
                config_fingerprint=fingerprint,
                config_snapshot=snapshot,
                host=socket.gethostname(),
                pid=os.getpid(),
                options=orjson.dumps(dict(options or {})).decode(),
                resumed_from=resumed_from,
            )
        )
        self.commit()
        run_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        if run_id is None:  # pragma: no cover - both backends return the key
            raise StagingError("the staging database did not return a run id")
        return int(run_id)

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        row = self.connection.execute(select(sync_runs).where(sync_runs.c.id == run_id)).first()
        return dict(row._mapping) if row else None

    def newest_run(self, kinds: Sequence[str]) -> dict[str, Any] | None:
        """The newest run of one of `kinds`, as a dict, or None."""
        query = (
            select(sync_runs)
            .where(sync_runs.c.kind.in_(list(kinds)))
            .order_by(sync_runs.c.id.desc())
            .limit(1)
        )
        row = self.connection.execute(query).first()
        if row is None:
            return None
        run = dict(row._mapping)
        run["started_at"] = aware(run["started_at"])
        return run

    def record_watermark(self, run_id: int, feed: str, value: datetime) -> None:
        """Store a feed's new watermark on its run; the caller commits with its last batch."""
        current = self.connection.scalar(
            select(sync_runs.c.watermarks).where(sync_runs.c.id == run_id)
        )
        watermarks = orjson.loads(current or "{}")
        watermarks[feed] = value.isoformat()
        self.connection.execute(
            update(sync_runs)
            .where(sync_runs.c.id == run_id)
            .values(watermarks=orjson.dumps(watermarks).decode())
        )

    def last_watermark(self, feed: str) -> datetime | None:
        """The newest watermark any import stored for `feed`."""
        query = (
            select(sync_runs.c.watermarks)
            .where(sync_runs.c.kind.in_(["import:full", "import:incremental"]))
            .order_by(sync_runs.c.id.desc())
        )
        for (watermarks,) in self.connection.execute(query):
            value = orjson.loads(watermarks or "{}").get(feed)
            if value:
                return datetime.fromisoformat(value)
        return None

    def feed_last_imported(self, feed: str) -> datetime | None:
        """When the newest import that completed `feed` started (local clock, like imported_at)."""
        query = (
            select(sync_runs.c.started_at, sync_runs.c.watermarks)
            .where(sync_runs.c.kind.in_(["import:full", "import:incremental"]))
            .order_by(sync_runs.c.id.desc())
        )
        for started_at, watermarks in self.connection.execute(query):
            if feed in orjson.loads(watermarks or "{}"):
                return aware(started_at)
        return None

    def finish_run(
        self, run_id: int, status: str, counts: dict[str, Any], message: str | None = None
    ) -> None:
        self.connection.execute(
            update(sync_runs)
            .where(sync_runs.c.id == run_id)
            .values(
                status=status,
                finished_at=utcnow(),
                counts=orjson.dumps(counts).decode(),
                message=message,
            )
        )
        self.commit()

    def log_events(self, run_id: int, events: Sequence[LogEvent]) -> None:
        if not events:
            return
        now = utcnow()
        self.connection.execute(
            insert(sync_log),
            [
                {
                    "run_id": run_id,
                    "at": now,
                    "feed": event.feed,
                    "entity": event.entity,
                    "code": event.code,
                    "action": event.action,
                    "message": event.message,
                }
                for event in events
            ],
        )

    def log(self, run_id: int) -> list[dict[str, Any]]:
        query = select(sync_log).where(sync_log.c.run_id == run_id).order_by(sync_log.c.id)
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def run_status(self, run_id: int) -> str | None:
        return self.connection.scalar(select(sync_runs.c.status).where(sync_runs.c.id == run_id))

    def outcome_counts(self, run_id: int, feed: str) -> dict[str, int]:
        """How many items of `feed` each action of the sync log counts in a run."""
        query = (
            select(sync_log.c.action, func.count())
            .where(sync_log.c.run_id == run_id, sync_log.c.feed == feed)
            .group_by(sync_log.c.action)
        )
        return {action: int(n) for action, n in self.connection.execute(query)}
