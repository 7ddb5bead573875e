"""All SQL pimsync runs, in methods named for what they mean (with push_queue.py and runs.py).

The repository holds one connection for its lifetime and commits batch by batch, so a run that
stops keeps everything it committed. It never assumes SQLite: upserts and temporary tables are
written in forms both SQLite and PostgreSQL accept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from itertools import chain
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    MetaData,
    Select,
    Table,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from pimsync.errors import StagingError
from pimsync.staging._base import chunks, utcnow
from pimsync.staging.hashing import HASH_VERSION
from pimsync.staging.prepare import StagedItem
from pimsync.staging.push_queue import PushQueue
from pimsync.staging.runs import RunHistory
from pimsync.staging.tables import (
    Status,
    entity_tables,
)

# Rows a multi-row INSERT carries: 250 x 11 columns stays far below every backend's limit on
# parameters (SQLite's default 32,766, PostgreSQL's 65,535).
ROWS_PER_INSERT = 250


# The statements an import runs for every batch are built once per table, their codes bound at
# execution (`bindparam("codes", expanding=True)`). Built per batch, each left its parameter
# objects in reference cycles holding the batch's codes (about 20 KB a batch), which only the
# cyclic GC frees, and the import runs it rarely: measured, 8 MB of a 100k import's peak RSS.


def _in_codes(table: Table) -> ColumnElement[bool]:
    return table.c.code.in_(bindparam("codes", expanding=True))


@cache
def _stored_rows(table: Table) -> Select[Any]:
    """What `upsert_fetched` compares a batch with: the stored rows of its codes."""
    return select(
        table.c.id,
        table.c.code,
        table.c.hash,
        table.c.hash_version,
        table.c.pushed_hash,
        table.c.status,
        table.c.identifier,
        table.c.parent_code,
    ).where(_in_codes(table))


@cache
def _parents(table: Table) -> Select[Any]:
    return select(table.c.parent_code).where(_in_codes(table), table.c.parent_code.is_not(None))


@cache
def _synced_to_mark(table: Table) -> tuple[Select[Any], Update]:
    """The synced items among some codes, and the statement that marks them needs_update."""
    condition = _in_codes(table) & (table.c.status == Status.SYNCED)
    marking = update(table).where(condition).values(status=Status.NEEDS_UPDATE)
    return select(table.c.code).where(condition), marking


@dataclass(frozen=True, slots=True)
class _SeenSet:
    """What a listing has seen of an entity: the ids it noted, and where new rows start."""

    table: Table
    first_new_id: int


@dataclass(slots=True)
class UpsertCounts:
    """What one upsert did, counted per item."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    changed_codes: list[str] = field(default_factory=list)


_NOTHING = object()


def _reusing_last(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`process`, computed once for a run of the same object: a batch stamps every row with
    one `imported_at`, which would otherwise be formatted again for each row."""
    last_value: Any = _NOTHING
    last_result: Any = None

    def reuse(value: Any) -> Any:
        nonlocal last_value, last_result
        if value is not last_value:
            last_value, last_result = value, process(value)
        return last_result

    return reuse


class StagingRepository(PushQueue, RunHistory):
    """The staging database: entity tables fed by imports (here), the push queue (PushQueue),
    run history and the sync log (RunHistory)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        try:
            self.connection: Connection = engine.connect()
        except OperationalError as exc:
            raise StagingError(f"cannot connect to the staging database: {exc.orig}") from None
        self._seen_sets: dict[str, _SeenSet] = {}

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> StagingRepository:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.connection.in_transaction():
            self.connection.rollback()
        self.close()

    # -- entities: import side ----------------------------------------------------------------

    def upsert_fetched(self, entity: str, items: Sequence[StagedItem]) -> UpsertCounts:
        """Write a batch of fetched items and apply the needs-update rule.

        New items become `new`. An item whose hash differs from the stored one is rewritten; it
        becomes `needs_update` if it was pushed before, `synced` if it changed back to what was
        pushed, and stays `new` if it never was. Unchanged items are not touched at all, which
        is what keeps a no-change import cheap. The caller commits.
        """
        table = entity_tables[entity]
        counts = UpsertCounts()
        if not items:
            return counts
        by_code = {item.code: item for item in items}  # a page may repeat an item; last wins
        stored = {
            row.code: row
            for row in self.connection.execute(_stored_rows(table), {"codes": list(by_code)})
        }
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        content_updates: list[dict[str, Any]] = []
        for code, item in by_code.items():
            row = stored.get(code)
            if row is None:
                counts.new += 1
                counts.changed_codes.append(code)
                inserts.append(
                    {
                        "code": code,
                        "identifier": item.identifier,
                        "parent_code": item.parent_code,
                        "label": item.label,
                        "data": item.data,
                        "hash": item.hash,
                        "hash_version": HASH_VERSION,
                        "status": Status.NEW,
                        "skipped": False,
                        "pim_updated": item.pim_updated,
                        "imported_at": now,
                    }
                )
                continue
            if (
                row.hash == item.hash
                and row.hash_version == HASH_VERSION
                and row.status not in (Status.QUARANTINED, Status.DELETED_IN_PIM)
            ):
                counts.unchanged += 1
                continue
            counts.changed += 1
            counts.changed_codes.append(code)
            if row.pushed_hash is None:
                status = Status.NEW
            elif row.pushed_hash == item.hash:
                status = Status.SYNCED
            else:
                status = Status.NEEDS_UPDATE
            content = {
                "label": item.label,
                "data": item.data,
                "hash": item.hash,
                "hash_version": HASH_VERSION,
                "last_error": None,
                "pim_updated": item.pim_updated,
                "imported_at": now,
            }
            # Setting an indexed column rewrites its index entry even to the same value: on a
            # large table that is random I/O per row, so the indexed columns are set only when
            # they change (measured: 10k changed rows of 100k, 1.78 s -> 0.78 s on SQLite).
            if (row.identifier, row.parent_code, row.status) == (
                item.identifier,
                item.parent_code,
                status,
            ):
                content_updates.append({**content, "code": code})  # last: the WHERE parameter
            else:
                updates.append(
                    {
                        **content,
                        "identifier": item.identifier,
                        "parent_code": item.parent_code,
                        "status": status,
                        "code": code,
                    }
                )
        if inserts:
            self._insert_rows(table, inserts)
        for rows in (content_updates, updates):
            if rows:
                self._update_rows(table, rows)
        self._note_seen(entity, [row.id for row in stored.values()])
        return counts

    def _insert_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """INSERT many rows of an entity table, straight to the driver (`_bound`)."""
        columns = list(rows[0])
        self._insert_many(table.name, columns, self._bound(table, columns, rows))

    def _insert_many(
        self, name: str, columns: list[str], params: list[tuple[Any, ...]], suffix: str = ""
    ) -> None:
        """INSERT `params` into `name`, ROWS_PER_INSERT rows to a statement.

        One multi-row statement instead of one execution per row: the driver releases the GIL
        around each execution, and getting it back from a busy thread can take a switch
        interval, so a writer thread executing row by row spent most of its time waiting.
        """
        group = f"({', '.join([self._marker()] * len(columns))})"
        for start in range(0, len(params), ROWS_PER_INSERT):
            chunk = params[start : start + ROWS_PER_INSERT]
            sql = (
                f"INSERT INTO {name} ({', '.join(columns)}) "
                f"VALUES {', '.join([group] * len(chunk))}{suffix}"
            )
            self.connection.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))

    def _update_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """UPDATE many rows by code; each row's last key is `code`, the WHERE parameter."""
        columns = list(rows[0])
        marker = self._marker()
        assignments = ", ".join(f"{column} = {marker}" for column in columns[:-1])
        sql = f"UPDATE {table.name} SET {assignments} WHERE code = {marker}"
        self._driver_executemany(table, sql, columns, rows)

    def _marker(self) -> str:
        return "?" if self.connection.dialect.paramstyle == "qmark" else "%s"

    def _driver_executemany(
        self, table: Table, sql: str, columns: list[str], rows: list[dict[str, Any]]
    ) -> None:
        """Run `sql` for every row through the driver's executemany."""
        self.connection.exec_driver_sql(sql, self._bound(table, columns, rows))

    def _bound(
        self, table: Table, columns: list[str], rows: list[dict[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Each row's values in `columns` order, as the driver takes them.

        The hot path of an import goes straight to the driver: Core's per-row parameter
        processing cost more than the driver's own work (measured: ~25 us of ~45 us a row on
        SQLite). Column names are this module's own; values go through the bind processor of
        each column's type as this dialect implements it, as Core does. (The generic type has
        none: a datetime then reached the sqlite3 module's own adapter, which stored it with a
        UTC offset that Core's rows lack, and which Python 3.12 deprecates.)
        """
        dialect = self.connection.dialect
        processors = [
            _reusing_last(process)
            if (process := table.c[column].type.dialect_impl(dialect).bind_processor(dialect))
            else None
            for column in columns
        ]
        return [
            tuple(
                process(row[column]) if process else row[column]
                for column, process in zip(columns, processors, strict=True)
            )
            for row in rows
        ]

    def quarantine(self, entity: str, code: str, data: bytes, reason: str) -> None:
        """Store a record that failed validation, with the reason, so it is never pushed."""
        table = entity_tables[entity]
        now = utcnow()
        values = {"data": data.decode(errors="replace"), "last_error": reason, "imported_at": now}
        stored_id = self.connection.scalar(select(table.c.id).where(table.c.code == code))
        if stored_id is not None:
            self.connection.execute(
                update(table)
                .where(table.c.id == stored_id)
                .values(status=Status.QUARANTINED, **values)
            )
            self._note_seen(entity, [stored_id])
        else:  # a new row is seen by being new (begin_seen)
            self.connection.execute(
                insert(table).values(
                    code=code,
                    hash="",
                    hash_version=HASH_VERSION,
                    status=Status.QUARANTINED,
                    skipped=False,
                    **values,
                )
            )

    def mark_needs_update(self, entity: str, codes: Iterable[str]) -> list[str]:
        """Mark synced items as needing an update because something they depend on changed.

        Returns the codes that were marked (items not yet created stay `new`; items in error are
        already pending).
        """
        wanted = sorted(set(codes))
        if not wanted:
            return []
        table = entity_tables[entity]
        marked: list[str] = []
        synced, marking = _synced_to_mark(table)
        for chunk in chunks(wanted, 500):
            marked.extend(self.connection.scalars(synced, {"codes": chunk}))
            self.connection.execute(marking, {"codes": chunk})
        return marked

    def parents_of(self, entity: str, codes: Iterable[str]) -> set[str]:
        """The parent codes of the given items (the product model of a variant, for instance)."""
        table = entity_tables[entity]
        parents: set[str] = set()
        for chunk in chunks(sorted(set(codes)), 500):
            parents.update(
                p for p in self.connection.scalars(_parents(table), {"codes": chunk}) if p
            )
        return parents

    def begin_seen(self, entity: str) -> None:
        """Start recording which rows this import sees, for deletion detection at its end.

        Rows inserted from now on are seen by being new (their ids come after every id there is
        now); of the rows already there, the import notes the ids of those it sees. So a first
        import notes nothing, and a later one notes ids in the order it first inserted them,
        appending to the seen table instead of inserting a million random codes into it.
        """
        table = entity_tables[entity]
        first_new_id = (self.connection.scalar(select(func.max(table.c.id))) or 0) + 1
        seen = Table(
            f"seen_{entity}",
            MetaData(),
            Column("id", Integer, primary_key=True, autoincrement=False),
            prefixes=["TEMPORARY"],
        )
        # A pooled connection may still hold one from a run that stopped: start empty.
        seen.drop(self.connection, checkfirst=True)
        seen.create(self.connection, checkfirst=False)
        self._seen_sets[entity] = _SeenSet(seen, first_new_id)

    def _note_seen(self, entity: str, ids: list[int]) -> None:
        seen = self._seen_sets.get(entity)
        if seen is None or not ids:
            return
        # Like the entity rows: a full import notes every row it had before, and Core's per-row
        # parameter handling cost more than SQLite's own work here.
        rows = [(row_id,) for row_id in ids]
        self._insert_many(seen.table.name, ["id"], rows, " ON CONFLICT DO NOTHING")

    def mark_unseen_deleted(
        self, entity: str, *, within_parents: Iterable[str] | None = None
    ) -> list[str]:
        """After a complete listing, flag the items it did not see as deleted in the PIM.

        `within_parents` restricts the reconciliation to children of those parents (the options
        of the attributes that were re-read, for instance). Returns the codes flagged.
        """
        seen = self._seen_sets.pop(entity)
        table = entity_tables[entity]
        # NOT EXISTS, not NOT IN: PostgreSQL plans it as a hash anti-join; NOT IN over a million
        # seen rows that do not fit work_mem became a nested scan that never finished.
        unseen = ~select(seen.table.c.id).where(seen.table.c.id == table.c.id).exists()
        condition = (
            (table.c.status != Status.DELETED_IN_PIM) & (table.c.id < seen.first_new_id) & unseen
        )
        if within_parents is not None:
            condition &= table.c.parent_code.in_(list(within_parents))
        codes = list(self.connection.scalars(select(table.c.code).where(condition)))
        if codes:
            self.connection.execute(
                update(table).where(condition).values(status=Status.DELETED_IN_PIM)
            )
        seen.table.drop(self.connection)
        return codes

    def drop_seen(self, entity: str) -> None:
        """Forget what an import that did not complete saw; nothing is flagged deleted."""
        seen = self._seen_sets.pop(entity, None)
        if seen is not None:
            seen.table.drop(self.connection, checkfirst=True)
            self.connection.commit()  # else the rollback on close brings it back

    # -- entities: reading --------------------------------------------------------------------

    def codes(self, entity: str, *, exclude_status: Sequence[str] = ()) -> list[str]:
        table = entity_tables[entity]
        query = select(table.c.code).order_by(table.c.id)
        if exclude_status:
            query = query.where(table.c.status.not_in(list(exclude_status)))
        return list(self.connection.scalars(query))

    def unknown_codes(self, entity: str, codes: Iterable[str]) -> set[str]:
        """The codes among `codes` that the entity table does not hold."""
        table = entity_tables[entity]
        missing = set(codes)
        for chunk in chunks(sorted(missing), 500):
            missing.difference_update(
                self.connection.scalars(select(table.c.code).where(table.c.code.in_(chunk)))
            )
        return missing

    def records(
        self, entity: str, *, exclude_status: Sequence[str] = ()
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every staged record of a (small) entity table, parsed."""
        table = entity_tables[entity]
        query = select(table.c.code, table.c.data).order_by(table.c.id)
        if exclude_status:
            query = query.where(table.c.status.not_in(list(exclude_status)))
        for code, data in self.connection.execute(query).all():
            yield code, orjson.loads(data)

    def records_imported_since(
        self, entity: str, since: datetime | None
    ) -> Iterator[dict[str, Any]]:
        """Records written at or after `since` (all of them when None), streamed in id order."""
        table = entity_tables[entity]
        query = select(table.c.data).where(table.c.status != Status.QUARANTINED)
        if since is not None:
            query = query.where(table.c.imported_at >= since)
        last_id = 0
        while True:  # keyset pages: the connection is free between them for other queries
            page = self.connection.execute(
                query.add_columns(table.c.id)
                .where(table.c.id > last_id)
                .order_by(table.c.id)
                .limit(1000)
            ).all()
            if not page:
                return
            for data, row_id in page:
                last_id = row_id
                yield orjson.loads(data)

    def get(self, entity: str, code: str) -> dict[str, Any] | None:
        """One row as a dict, or None."""
        table = entity_tables[entity]
        row = self.connection.execute(select(table).where(table.c.code == code)).first()
        return dict(row._mapping) if row else None


def staging_failure(exc: SQLAlchemyError) -> StagingError:
    """Turn a database error into the one-line StagingError the CLI shows."""
    from pimsync.staging.database import failure_reason

    return StagingError(f"staging database error: {failure_reason(exc)}")
