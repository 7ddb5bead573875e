"""What the inspection commands report: feed status, staged items, one item, the log, runs.

Read-only by design: nothing here takes the run lock, commits to staging or writes to Magento,
so an operator can look while an import or a push runs. Each function takes the `App` and
returns a dataclass whose `as_dict()` is the command's `--json` output; the shapes are part of
the command line's contract (README, "pimsync status" and the following sections).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pimsync.app import App
from pimsync.config import PUSH_FEEDS
from pimsync.errors import UsageError
from pimsync.pipeline.push_runner import FEED_ENTITIES
from pimsync.staging.queries import IMPORT_KINDS, PUSH_KINDS, StagingQueries, aware
from pimsync.staging.tables import ENTITIES, Status

# The import feed that stages each push feed's rows (variants are products in the PIM).
IMPORT_FEED = {feed: "products" if feed == "variants" else feed for feed in PUSH_FEEDS}
# The tables `status` counts per push feed: those the push sends, and the assets table.
STATUS_TABLES: dict[str, list[tuple[str, bool | None]]] = {
    **FEED_ENTITIES,
    "assets": [("assets", None)],
}
# The tables `items` and `show` search per feed: the staged ones too (family variants are
# never pushed as such; they become a configurable's axes).
ITEM_TABLES: dict[str, list[tuple[str, bool | None]]] = {
    **STATUS_TABLES,
    "attributes": [*FEED_ENTITIES["attributes"], ("family_variants", None)],
}
ITEM_COUNTERS = (
    "total",
    Status.SYNCED.value,
    Status.NEEDS_UPDATE.value,
    Status.NEW.value,
    "skipped",  # a flag beside the status, counted apart
    Status.ERROR.value,
    Status.QUARANTINED.value,
    Status.DELETED_IN_PIM.value,
)
ITEM_FIELDS = ("code", "identifier", "label", "status", "last_error", "pushed_at")
ERROR_ACTIONS = ("error", "quarantined")
STATE_LABELS = {
    "success": "Success",
    "failed": "Failed",
    "in_progress": "In progress",
    "stopped": "Stopped",
}


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second."""
    if value is None:
        return None
    return aware(value).astimezone(UTC).isoformat(timespec="seconds")


def feed_of(entity: str, parent_code: str | None) -> str:
    """The push feed a staged row belongs to."""
    if entity == "products":
        return "variants" if parent_code else "products"
    if entity == "product_models":
        return "products"
    if entity == "assets":
        return "assets"
    return "categories" if entity == "categories" else "attributes"


def lease_of(app: App) -> timedelta:
    """The run lock's lease: a holder renews it well before it ends, so the last heartbeat
    of a lease that ran out was about one lease before its end."""
    return timedelta(seconds=app.config.sync.lock_lease_seconds)


@contextmanager
def open_queries(app: App) -> Iterator[StagingQueries]:
    """A connection that only reads; closing it rolls back whatever SELECTs began."""
    with app.engine().connect() as connection:
        yield StagingQueries(connection)


# -- runs -------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    """One row of `sync_runs`, with whether an in-progress run still shows signs of life."""

    id: int
    kind: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    feeds: list[str]
    counts: dict[str, Any]
    message: str | None
    host: str | None
    pid: int | None
    resumed_from: int | None
    stale: bool = False
    no_heartbeat_since: datetime | None = None

    @classmethod
    def from_row(
        cls, row: Mapping[str, Any], lock: Mapping[str, Any] | None, now: datetime, lease: timedelta
    ) -> RunInfo:
        """`lock` is the `sync_lock` row; `lease` its length, which gives the last heartbeat."""
        run = cls(
            id=int(row["id"]),
            kind=str(row["kind"]),
            status=str(row["status"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            feeds=list(orjson.loads(row["feeds"] or "[]")),
            counts=dict(orjson.loads(row["counts"] or "{}")),
            message=row["message"],
            host=row["host"],
            pid=row["pid"],
            resumed_from=row.get("resumed_from"),
        )
        if run.status == "in_progress" and lock is not None:
            expires = aware(lock["expires_at"])
            if lock["run_id"] == run.id and expires is not None and expires < now:
                run.stale, run.no_heartbeat_since = True, expires - lease
            elif lock["run_id"] not in (None, run.id) and expires is not None and expires >= now:
                run.stale = True  # another run holds the live lock: this one is not running
        return run

    @property
    def state(self) -> str:
        label = STATE_LABELS.get(self.status, self.status)
        if not self.stale:
            return label
        if self.no_heartbeat_since is None:
            return f"{label} (no heartbeat)"
        return f"{label} (no heartbeat since {self.no_heartbeat_since:%Y-%m-%d %H:%M:%S} UTC)"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def feed_counts(self) -> dict[str, dict[str, Any]]:
        """Per-feed counters: a push stores its whole report (`feeds` inside), an import only
        the feeds (pimsync.pipeline.report)."""
        feeds = self.counts.get("feeds") if self.kind in PUSH_KINDS else self.counts
        if not isinstance(feeds, dict):
            return {}
        return {name: counts for name, counts in feeds.items() if isinstance(counts, dict)}

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in self.feed_counts().values():
            for name, value in counts.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    totals[name] = totals.get(name, 0) + value
        return totals

    @property
    def summary(self) -> str:
        """The run's counters in one line, the ones that are not zero."""
        parts = [
            f"{value:,} {name.replace('_', ' ')}" for name, value in self.totals().items() if value
        ]
        return ", ".join(parts) if parts else "nothing counted"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "state": self.state,
            "stale": self.stale,
            "no_heartbeat_since": iso(self.no_heartbeat_since),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "feeds": self.feeds,
            "summary": self.summary,
            "counts": self.counts,
            "message": self.message,
            "host": self.host,
            "pid": self.pid,
            "resumed_from": self.resumed_from,
        }


@dataclass
class RunsResult:
    runs: list[RunInfo]
    limit: int

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [run.as_dict() for run in self.runs], "limit": self.limit}


def list_runs(app: App, limit: int = 20) -> RunsResult:
    """The run history, newest first."""
    lease = lease_of(app)
    with open_queries(app) as queries:
        now, lock = queries.lease_now(), queries.lock()
        runs = [RunInfo.from_row(row, lock, now, lease) for row in queries.runs(limit)]
    return RunsResult(runs, limit)


# -- status -----------------------------------------------------------------------------------


@dataclass
class FeedStatus:
    feed: str
    import_feed: str
    last_import: RunInfo | None
    last_push: RunInfo | None
    items: dict[str, int]
    entities: dict[str, dict[str, int]]
    media: dict[str, int] | None = None  # the assets feed: product images per status

    def as_dict(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "import_feed": self.import_feed,
            "last_import": self.last_import.as_dict() if self.last_import else None,
            "last_push": self.last_push.as_dict() if self.last_push else None,
            "items": self.items,
            "entities": self.entities,
            "media": self.media,
        }


@dataclass
class StatusReport:
    checked_at: datetime
    feeds: list[FeedStatus]
    last_successful_push: RunInfo | None
    lock: dict[str, Any] | None

    @property
    def items_updated_by_last_push(self) -> int:
        """Created plus updated items of the last successful push."""
        if self.last_successful_push is None:
            return 0
        totals = self.last_successful_push.totals()
        return totals.get("created", 0) + totals.get("updated", 0)

    def as_dict(self) -> dict[str, Any]:
        last = self.last_successful_push
        return {
            "checked_at": iso(self.checked_at),
            "feeds": [feed.as_dict() for feed in self.feeds],
            "last_successful_push": None
            if last is None
            else {
                "run": last.as_dict(),
                "items_updated": self.items_updated_by_last_push,
            },
            "lock": self.lock,
        }


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(ITEM_COUNTERS, 0)


def status(app: App) -> StatusReport:
    """Per push feed: its last import and push, and its staged items counted by status."""
    lease = lease_of(app)
    with open_queries(app) as queries:
        now, lock = queries.lease_now(), queries.lock()
        grouped = {
            entity: queries.status_counts(entity)
            for entity in {e for tables in STATUS_TABLES.values() for e, _ in tables}
        }
        feeds = []
        for feed in PUSH_FEEDS:
            items = _empty_counts()
            entities: dict[str, dict[str, int]] = {}
            for entity, has_parent in STATUS_TABLES[feed]:
                counts = entities.setdefault(entity, _empty_counts())
                for group in grouped[entity]:
                    if has_parent is not None and group.has_parent != has_parent:
                        continue
                    for target in (counts, items):
                        target["total"] += group.count
                        target[group.status] = target.get(group.status, 0) + group.count
                        target["skipped"] += group.count if group.skipped else 0
            last_import = queries.last_run_of_feed(IMPORT_KINDS, IMPORT_FEED[feed])
            last_push = queries.last_run_of_feed(PUSH_KINDS, feed)
            feeds.append(
                FeedStatus(
                    feed=feed,
                    import_feed=IMPORT_FEED[feed],
                    last_import=RunInfo.from_row(last_import, lock, now, lease)
                    if last_import
                    else None,
                    last_push=RunInfo.from_row(last_push, lock, now, lease) if last_push else None,
                    items=items,
                    entities=entities,
                    media=queries.media_counts() if feed == "assets" else None,
                )
            )
        last = queries.last_successful_push()
    lock_view = None
    if lock is not None:
        expires = aware(lock["expires_at"])
        lock_view = {
            "run_id": lock["run_id"],
            "kind": lock["kind"],
            "host": lock["host"],
            "pid": lock["pid"],
            "acquired_at": iso(lock["acquired_at"]),
            "expires_at": iso(expires),
            "expired": expires is not None and expires < now,
            "stop_requested_at": iso(lock["stop_requested_at"]),
        }
    return StatusReport(
        checked_at=now,
        feeds=feeds,
        last_successful_push=RunInfo.from_row(last, lock, now, lease) if last else None,
        lock=lock_view,
    )


# -- items ------------------------------------------------------------------------------------


@dataclass
class ItemRow:
    feed: str
    entity: str
    code: str
    identifier: str | None
    label: str | None
    status: str
    skipped: bool
    last_error: str | None
    pushed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pushed_at": iso(self.pushed_at)}


@dataclass
class ItemsResult:
    items: list[ItemRow]
    limit: int
    truncated: bool  # more rows match than `limit`

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": [item.as_dict() for item in self.items],
            "count": len(self.items),
            "limit": self.limit,
            "truncated": self.truncated,
        }


def search_items(
    app: App,
    *,
    feed: str | None = None,
    status: str | None = None,
    skipped: bool = False,
    text: str | None = None,
    limit: int = 50,
) -> ItemsResult:
    """Staged items matching the filters, table by table in feed order, each in id order."""
    tables = ITEM_TABLES[feed] if feed else [(entity, None) for entity in ENTITIES]
    rows: list[ItemRow] = []
    with open_queries(app) as queries:
        for entity, has_parent in tables:
            wanted = limit + 1 - len(rows)  # one more than asked tells whether more match
            if wanted <= 0:
                break
            for row in queries.search_items(
                entity,
                limit=wanted,
                has_parent=has_parent,
                status=status,
                skipped=True if skipped else None,
                text=text,
            ):
                rows.append(
                    ItemRow(
                        feed=feed_of(entity, row["parent_code"]),
                        entity=entity,
                        skipped=bool(row["skipped"]),
                        **{name: row[name] for name in ITEM_FIELDS},
                    )
                )
    return ItemsResult(rows[:limit], limit, truncated=len(rows) > limit)


# -- log --------------------------------------------------------------------------------------


@dataclass
class LogResult:
    run: RunInfo | None
    events: list[dict[str, Any]]
    limit: int
    truncated: bool
    errors_only: bool = False
    feed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.as_dict() if self.run else None,
            "events": [log_event(event) for event in self.events],
            "count": len(self.events),
            "limit": self.limit,
            "truncated": self.truncated,
            "errors_only": self.errors_only,
            "feed": self.feed,
        }


def log_event(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "run_id": event["run_id"],
        "at": iso(event["at"]),
        "feed": event["feed"],
        "entity": event["entity"],
        "code": event["code"],
        "action": event["action"],
        "message": event["message"],
    }


def run_log(
    app: App,
    *,
    run_id: int | None = None,
    feed: str | None = None,
    errors_only: bool = False,
    limit: int = 200,
) -> LogResult:
    """The events of one run (default: the newest), in the order they happened."""
    with open_queries(app) as queries:
        chosen = run_id if run_id is not None else queries.newest_run_id()
        if chosen is None:
            return LogResult(None, [], limit, False, errors_only, feed)
        row = queries.run(chosen)
        if row is None:
            raise UsageError(f"no run {chosen}: `pimsync runs` lists the recorded runs")
        events = queries.run_log(
            chosen,
            limit=limit + 1,
            feed=feed,
            actions=ERROR_ACTIONS if errors_only else None,
        )
        run = RunInfo.from_row(row, queries.lock(), queries.lease_now(), lease_of(app))
    return LogResult(run, events[:limit], limit, len(events) > limit, errors_only, feed)
