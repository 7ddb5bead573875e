"""The read-only SQL of the inspection commands (`status`, `items`, `show`, `log`, `runs`).

Kept apart from `StagingRepository`, which is the push queue and writes: nothing here writes,
commits or takes the run lock, so these queries can run beside an import or a push. Every query
that could touch a large table is bounded: a LIMIT on the primary key's order, or one GROUP BY.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, Select, case, func, or_, select

from pimsync.staging._base import aware as aware  # inspection reads times through it too
from pimsync.staging._base import lease_now_value
from pimsync.staging.tables import (
    entity_tables,
    product_media,
    sync_lock,
    sync_log,
    sync_runs,
)

IMPORT_KINDS = ("import:full", "import:incremental")
PUSH_KINDS = ("create", "resync")
LOCK_NAME = "staging"
# The columns `items` lists; never `data` or `pushed_payload`, which can be large.
ITEM_COLUMNS = (
    "id",
    "code",
    "identifier",
    "parent_code",
    "label",
    "status",
    "skipped",
    "last_error",
    "pushed_at",
)


@dataclass(frozen=True, slots=True)
class StatusCount:
    """How many rows of an entity table have one (status, skipped, has a parent) combination."""

    status: str
    skipped: bool
    has_parent: bool
    count: int


def _row(row: Row[Any]) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = aware(value)
    return out


def _like(text: str) -> str:
    """A case-insensitive substring pattern; `/` escapes the wildcards a user may type."""
    escaped = text.lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


class StagingQueries:
    """Read-only questions about the staging database, on one connection the caller owns."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def lease_now(self) -> datetime:
        """Now, by the clock the run lock's lease is stamped with (see `_base.lease_now`): what
        says whether a run's heartbeat stopped, whichever machine asks."""
        return lease_now_value(self.connection)

    # -- runs ------------------------------------------------------------------------------------

    def runs(self, limit: int) -> list[dict[str, Any]]:
        """The newest runs first."""
        query = select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)
        return [_row(row) for row in self.connection.execute(query)]

    def run(self, run_id: int) -> dict[str, Any] | None:
        row = self.connection.execute(select(sync_runs).where(sync_runs.c.id == run_id)).first()
        return _row(row) if row else None

    def newest_run_id(self) -> int | None:
        value = self.connection.scalar(select(func.max(sync_runs.c.id)))
        return int(value) if value is not None else None

    def last_run_of_feed(
        self, kinds: Sequence[str], feed: str, *, status: str | None = None
    ) -> dict[str, Any] | None:
        """The newest run of one of `kinds` whose feed list names `feed`.

        `feeds` is a JSON list in a text column: a LIKE on the quoted name narrows the rows in
        SQL (feed names are plain words, none the quoted substring of another), and the list is
        parsed to be sure.
        """
        query = (
            select(sync_runs)
            .where(sync_runs.c.kind.in_(list(kinds)), sync_runs.c.feeds.like(f'%"{feed}"%'))
            .order_by(sync_runs.c.id.desc())
        )
        if status is not None:
            query = query.where(sync_runs.c.status == status)
        for row in self.connection.execute(query.limit(20)):
            if feed in orjson.loads(row.feeds or "[]"):
                return _row(row)
        return None

    def last_successful_push(self) -> dict[str, Any] | None:
        query = (
            select(sync_runs)
            .where(sync_runs.c.kind.in_(PUSH_KINDS), sync_runs.c.status == "success")
            .order_by(sync_runs.c.id.desc())
            .limit(1)
        )
        row = self.connection.execute(query).first()
        return _row(row) if row else None

    def lock(self) -> dict[str, Any] | None:
        """The run lock's lease row, if a run holds (or held and did not release) it."""
        row = self.connection.execute(
            select(sync_lock).where(sync_lock.c.name == LOCK_NAME)
        ).first()
        return _row(row) if row else None

    # -- entity tables -----------------------------------------------------------------------

    def status_counts(self, entity: str) -> list[StatusCount]:
        """One GROUP BY over the table: rows per status, skipped flag and parent presence (the
        last splits the products table into the products and variants feeds)."""
        table = entity_tables[entity]
        has_parent = case((table.c.parent_code.is_(None), 0), else_=1)
        query = select(table.c.status, table.c.skipped, has_parent, func.count()).group_by(
            table.c.status, table.c.skipped, has_parent
        )
        return [
            StatusCount(str(status), bool(skipped), bool(parent), int(count))
            for status, skipped, parent, count in self.connection.execute(query)
        ]

    def media_counts(self) -> dict[str, int]:
        """Product images per status (pending, synced, error, remove)."""
        query = select(product_media.c.status, func.count()).group_by(product_media.c.status)
        return {str(status): int(count) for status, count in self.connection.execute(query)}

    def search_items(
        self,
        entity: str,
        *,
        limit: int,
        has_parent: bool | None = None,
        status: str | None = None,
        skipped: bool | None = None,
        text: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows matching every given filter, in id order, at most `limit`.

        `text` is a case-insensitive substring of the code, the identifier (SKU) or the label:
        a scan, but one that walks the primary key and stops at the limit.
        """
        table = entity_tables[entity]
        query: Select[Any] = select(*(table.c[name] for name in ITEM_COLUMNS))
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        if status is not None:
            query = query.where(table.c.status == status)
        if skipped is not None:
            query = query.where(table.c.skipped.is_(skipped))
        if text:
            pattern = _like(text)
            query = query.where(
                or_(
                    *(
                        table.c[name].ilike(pattern, escape="/")
                        for name in ("code", "identifier", "label")
                    )
                )
            )
        query = query.order_by(table.c.id).limit(limit)
        return [_row(row) for row in self.connection.execute(query)]

    def find_item(self, entity: str, key: str) -> dict[str, Any] | None:
        """The whole row whose code, else whose identifier (SKU), is `key`."""
        table = entity_tables[entity]
        for column in (table.c.code, table.c.identifier):
            row = self.connection.execute(
                select(table).where(column == key).order_by(table.c.id).limit(1)
            ).first()
            if row is not None:
                return _row(row)
        return None

    # -- the sync log ------------------------------------------------------------------------

    def item_history(self, codes: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """The log events of an item, newest first (media events are logged by SKU, so the
        caller passes the code and the SKU)."""
        query = (
            select(sync_log)
            .where(sync_log.c.code.in_(list(codes)))
            .order_by(sync_log.c.id.desc())
            .limit(limit)
        )
        return [_row(row) for row in self.connection.execute(query)]

    def run_log(
        self,
        run_id: int,
        *,
        limit: int,
        feed: str | None = None,
        actions: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The events of one run in the order they were written, at most `limit`."""
        query = select(sync_log).where(sync_log.c.run_id == run_id)
        if feed is not None:
            query = query.where(sync_log.c.feed == feed)
        if actions is not None:
            query = query.where(sync_log.c.action.in_(list(actions)))
        query = query.order_by(sync_log.c.id).limit(limit)
        return [_row(row) for row in self.connection.execute(query)]
