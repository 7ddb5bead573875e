"""All SQL pimsync runs, in methods named for what they mean.

The repository holds one connection for its lifetime and commits batch by batch, so a run that
stops keeps everything it committed. It never assumes SQLite: upserts and temporary tables are
written in forms both SQLite and PostgreSQL accept.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from pimsync.errors import StagingError
from pimsync.staging.hashing import HASH_VERSION
from pimsync.staging.tables import (
    Status,
    entity_tables,
    product_media,
    sync_log,
    sync_runs,
    sync_state,
)


@dataclass(frozen=True, slots=True)
class StagedItem:
    """One PIM record, validated and hashed, ready to be written to its entity table."""

    code: str
    data: bytes  # the PIM record as JSON
    hash: str
    identifier: str | None = None
    parent_code: str | None = None
    label: str | None = None
    pim_updated: str | None = None


@dataclass(slots=True)
class UpsertCounts:
    """What one upsert did, counted per item."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    changed_codes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of the sync log."""

    feed: str
    entity: str
    code: str
    action: str
    message: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


class StagingRepository:
    """The staging database: entity tables as the push queue, run history, sync log."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        try:
            self.connection: Connection = engine.connect()
        except OperationalError as exc:
            raise StagingError(f"cannot connect to the staging database: {exc.orig}") from None
        self._seen_tables: dict[str, Table] = {}

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> StagingRepository:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.connection.in_transaction():
            self.connection.rollback()
        self.close()

    def commit(self) -> None:
        self.connection.commit()

    def rollback(self) -> None:
        self.connection.rollback()

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
            for row in self.connection.execute(
                select(
                    table.c.code,
                    table.c.hash,
                    table.c.hash_version,
                    table.c.pushed_hash,
                    table.c.status,
                ).where(table.c.code.in_(list(by_code)))
            )
        }
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
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
                        "data": item.data.decode(),
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
            updates.append(
                {
                    "identifier": item.identifier,
                    "parent_code": item.parent_code,
                    "label": item.label,
                    "data": item.data.decode(),
                    "hash": item.hash,
                    "hash_version": HASH_VERSION,
                    "status": status,
                    "last_error": None,
                    "pim_updated": item.pim_updated,
                    "imported_at": now,
                    "code": code,  # last: the WHERE parameter
                }
            )
        if inserts:
            self._insert_rows(table, inserts)
        if updates:
            self._update_rows(table, updates)
        self._note_seen(entity, by_code)
        return counts

    def _insert_rows(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """INSERT many rows through the driver's executemany (see `_driver_executemany`)."""
        columns = list(rows[0])
        marker = self._marker()
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join([marker] * len(columns))})"
        )
        self._driver_executemany(table, sql, columns, rows)

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
        """Run `sql` for every row through the driver's executemany.

        The hot path of an import: Core's per-row parameter processing cost more than the
        driver's own work (measured: ~25 us of ~45 us a row on SQLite). Column names are this
        module's own; values go through each column type's bind processor, as Core does.
        """
        dialect = self.connection.dialect
        processors = [table.c[column].type.bind_processor(dialect) for column in columns]
        params = [
            tuple(
                process(row[column]) if process else row[column]
                for column, process in zip(columns, processors, strict=True)
            )
            for row in rows
        ]
        self.connection.exec_driver_sql(sql, params)

    def quarantine(self, entity: str, code: str, data: bytes, reason: str) -> None:
        """Store a record that failed validation, with the reason, so it is never pushed."""
        table = entity_tables[entity]
        now = utcnow()
        values = {"data": data.decode(errors="replace"), "last_error": reason, "imported_at": now}
        result = self.connection.execute(
            update(table).where(table.c.code == code).values(status=Status.QUARANTINED, **values)
        )
        if result.rowcount == 0:
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
        self._note_seen(entity, [code])

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
        for chunk in _chunks(wanted, 500):
            condition = table.c.code.in_(chunk) & (table.c.status == Status.SYNCED)
            marked.extend(self.connection.scalars(select(table.c.code).where(condition)))
            self.connection.execute(update(table).where(condition).values(status="needs_update"))
        return marked

    def parents_of(self, entity: str, codes: Iterable[str]) -> set[str]:
        """The parent codes of the given items (the product model of a variant, for instance)."""
        table = entity_tables[entity]
        parents: set[str] = set()
        for chunk in _chunks(sorted(set(codes)), 500):
            query = select(table.c.parent_code).where(
                table.c.code.in_(chunk), table.c.parent_code.is_not(None)
            )
            parents.update(p for p in self.connection.scalars(query) if p)
        return parents

    def begin_seen(self, entity: str) -> None:
        """Start recording which codes this import sees, for deletion detection at its end."""
        name = f"seen_{entity}"
        seen = Table(
            name, MetaData(), Column("code", String(255), primary_key=True), prefixes=["TEMPORARY"]
        )
        # A pooled connection may still hold one from a run that stopped: start empty.
        seen.drop(self.connection, checkfirst=True)
        seen.create(self.connection, checkfirst=False)
        self._seen_tables[entity] = seen

    def _note_seen(self, entity: str, codes: Iterable[str]) -> None:
        seen = self._seen_tables.get(entity)
        if seen is None:
            return
        rows = [{"code": code} for code in codes]
        if rows:
            self.connection.execute(_insert_ignore(self.connection, seen), rows)

    def mark_unseen_deleted(
        self, entity: str, *, within_parents: Iterable[str] | None = None
    ) -> list[str]:
        """After a complete listing, flag the items it did not see as deleted in the PIM.

        `within_parents` restricts the reconciliation to children of those parents (the options
        of the attributes that were re-read, for instance). Returns the codes flagged.
        """
        seen = self._seen_tables.pop(entity)
        table = entity_tables[entity]
        condition = (table.c.status != Status.DELETED_IN_PIM) & table.c.code.not_in(
            select(seen.c.code)
        )
        if within_parents is not None:
            condition &= table.c.parent_code.in_(list(within_parents))
        codes = list(self.connection.scalars(select(table.c.code).where(condition)))
        if codes:
            self.connection.execute(
                update(table).where(condition).values(status=Status.DELETED_IN_PIM)
            )
        seen.drop(self.connection)
        return codes

    def drop_seen(self, entity: str) -> None:
        """Forget what an import that did not complete saw; nothing is flagged deleted."""
        seen = self._seen_tables.pop(entity, None)
        if seen is not None:
            seen.drop(self.connection, checkfirst=True)
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
        for chunk in _chunks(sorted(missing), 500):
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

    # -- entities: push side -------------------------------------------------------------------

    def pending_for_push(
        self,
        entity: str,
        *,
        after_id: int = 0,
        limit: int = 500,
        include_new: bool = True,
        only: Sequence[str] | None = None,
        has_parent: bool | None = None,
        force: bool = False,
        statuses: Sequence[str] | None = None,
        pushed_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The next rows to push, in id order after `after_id` (keyset paging).

        Pending means needs_update, or new when `include_new`; skipped, quarantined and deleted
        rows never are. `only` restricts to codes or identifiers (SKUs). `force` (a resync)
        takes every pushable row whatever its hash; `statuses` names the statuses wanted
        instead (`resync --failed`). `pushed_before` leaves out rows pushed since then (what a
        resumed resync already did).
        """
        table = entity_tables[entity]
        if statuses is not None:
            statuses = list(statuses)
        elif force:
            statuses = [Status.NEW, Status.NEEDS_UPDATE, Status.SYNCED, Status.ERROR]
        else:
            statuses = [Status.NEEDS_UPDATE, Status.NEW] if include_new else [Status.NEEDS_UPDATE]
        query = (
            select(table)
            .where(table.c.id > after_id, table.c.status.in_(statuses), table.c.skipped.is_(False))
            .order_by(table.c.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(table.c.code.in_(only) | table.c.identifier.in_(only))
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        if pushed_before is not None:
            query = query.where(table.c.pushed_at.is_(None) | (table.c.pushed_at < pushed_before))
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def claim_pending(
        self,
        entity: str,
        worker: str,
        *,
        limit: int,
        lease_seconds: float,
        include_new: bool = True,
        has_parent: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Claim up to `limit` pending rows for `worker` until the lease runs out (PostgreSQL).

        `FOR UPDATE SKIP LOCKED` lets any number of workers claim at once without waiting on
        each other; rows claimed by a worker whose lease ran out (it died) are claimable again.
        Committed at once, so the claim is visible to the others. A pushed or failed row drops
        its claim (`mark_pushed`, `record_item_error`).
        """
        table = entity_tables[entity]
        now = utcnow()
        statuses = [Status.NEEDS_UPDATE, Status.NEW] if include_new else [Status.NEEDS_UPDATE]
        candidates = (
            select(table.c.id)
            .where(
                table.c.status.in_(statuses),
                table.c.skipped.is_(False),
                table.c.claimed_until.is_(None) | (table.c.claimed_until < now),
            )
            .order_by(table.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if has_parent is not None:
            parent = table.c.parent_code
            candidates = candidates.where(parent.is_not(None) if has_parent else parent.is_(None))
        claimed = self.connection.execute(
            update(table)
            .where(table.c.id.in_(candidates.scalar_subquery()))
            .values(claimed_by=worker, claimed_until=now + timedelta(seconds=lease_seconds))
            .returning(*table.c)
        ).all()
        self.commit()
        return sorted((dict(row._mapping) for row in claimed), key=lambda row: row["id"])

    def count_pending(
        self, entity: str, *, include_new: bool = True, has_parent: bool | None = None
    ) -> int:
        """Rows still to push (claimed or not)."""
        table = entity_tables[entity]
        statuses = [Status.NEEDS_UPDATE, Status.NEW] if include_new else [Status.NEEDS_UPDATE]
        query = select(func.count()).where(
            table.c.status.in_(statuses), table.c.skipped.is_(False)
        )
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        return int(self.connection.scalar(query) or 0)

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

    def count_waiting_new(self, entity: str, *, has_parent: bool | None = None) -> int:
        """New items that wait for `create --sku` because auto_create_new is off."""
        table = entity_tables[entity]
        query = select(func.count()).where(table.c.status == Status.NEW, table.c.skipped.is_(False))
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        return int(self.connection.scalar(query) or 0)

    def mark_pushed(self, entity: str, results: Sequence[dict[str, Any]]) -> None:
        """Record successful pushes: each result has code, hash (the PIM hash that was pushed),
        payload_hash, payload (JSON text) and magento_id. An item re-imported with another
        hash while it was being pushed stays pending (needs_update)."""
        if not results:
            return
        table = entity_tables[entity]
        now = utcnow()
        statement = (
            update(table)
            .where(table.c.code == bindparam("b_code"))
            .values(
                pushed_hash=bindparam("b_hash"),
                payload_hash=bindparam("b_payload_hash"),
                pushed_payload=bindparam("b_payload"),
                magento_id=func.coalesce(bindparam("b_magento_id"), table.c.magento_id),
                pushed_at=now,
                last_error=None,
                claimed_by=None,
                claimed_until=None,
                status=case(
                    (table.c.hash == bindparam("b_hash"), Status.SYNCED.value),
                    else_=Status.NEEDS_UPDATE.value,
                ),
            )
        )
        self.connection.execute(
            statement,
            [
                {
                    "b_code": result["code"],
                    "b_hash": result["hash"],
                    "b_payload_hash": result["payload_hash"],
                    "b_payload": result["payload"],
                    "b_magento_id": result["magento_id"],
                }
                for result in results
            ],
        )

    def record_item_error(self, entity: str, code: str, message: str) -> None:
        table = entity_tables[entity]
        self.connection.execute(
            update(table)
            .where(table.c.code == code)
            .values(
                status=Status.ERROR, last_error=message[:4000], claimed_by=None, claimed_until=None
            )
        )

    def magento_ids(self, entity: str) -> dict[str, str]:
        """PIM code -> Magento id, for the rows Magento already has."""
        table = entity_tables[entity]
        query = select(table.c.code, table.c.magento_id).where(table.c.magento_id.is_not(None))
        return {code: str(magento_id) for code, magento_id in self.connection.execute(query)}

    def synced_rows(self, entity: str, *, after_id: int, limit: int) -> list[dict[str, Any]]:
        table = entity_tables[entity]
        query = (
            select(table)
            .where(table.c.id > after_id, table.c.status == Status.SYNCED)
            .order_by(table.c.id)
            .limit(limit)
        )
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def mark_codes(self, entity: str, codes: Sequence[str], status: str) -> None:
        table = entity_tables[entity]
        for chunk in _chunks(list(codes), 500):
            self.connection.execute(
                update(table).where(table.c.code.in_(chunk)).values(status=status)
            )

    # -- skipping -----------------------------------------------------------------------------

    def set_skipped(
        self,
        entity: str,
        skipped: bool,
        *,
        codes: Sequence[str] | None = None,
        search: str | None = None,
    ) -> tuple[set[str], int]:
        """Set the skipped flag on rows named by code or identifier (SKU), or whose code,
        identifier or label contains `search`. Returns the names found and the rows changed."""
        table = entity_tables[entity]
        conditions = []
        found: set[str] = set()
        if codes is not None:
            for chunk in _chunks(sorted(set(codes)), 500):
                condition = table.c.code.in_(chunk) | table.c.identifier.in_(chunk)
                for code, identifier in self.connection.execute(
                    select(table.c.code, table.c.identifier).where(condition)
                ):
                    found.update(name for name in (code, identifier) if name in chunk)
                conditions.append(condition)
        if search is not None:
            pattern = f"%{search.lower()}%"
            conditions.append(
                func.lower(table.c.code).like(pattern)
                | func.lower(func.coalesce(table.c.identifier, "")).like(pattern)
                | func.lower(func.coalesce(table.c.label, "")).like(pattern)
            )
        changed = 0
        for condition in conditions:
            changed += self.connection.execute(
                update(table).where(condition, table.c.skipped != skipped).values(skipped=skipped)
            ).rowcount
        return found, changed

    # -- deletions ------------------------------------------------------------------------------

    def pending_deletions(
        self, entity: str, *, has_parent: bool | None = None, after_id: int = 0, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Rows deleted in the PIM that Magento still has (pushed, deletion not yet exported)."""
        table = entity_tables[entity]
        query = (
            select(table)
            .where(
                table.c.id > after_id,
                table.c.status == Status.DELETED_IN_PIM,
                table.c.pushed_hash.is_not(None),
                table.c.skipped.is_(False),
            )
            .order_by(table.c.id)
            .limit(limit)
        )
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def count_pending_deletions(self, entity: str, *, has_parent: bool | None = None) -> int:
        table = entity_tables[entity]
        query = select(func.count()).where(
            table.c.status == Status.DELETED_IN_PIM,
            table.c.pushed_hash.is_not(None),
            table.c.skipped.is_(False),
        )
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        return int(self.connection.scalar(query) or 0)

    def count_in_magento(self, entity: str, *, has_parent: bool | None = None) -> int:
        """Rows Magento holds as far as staging knows (pushed at least once, not yet removed)."""
        table = entity_tables[entity]
        query = select(func.count()).where(table.c.pushed_hash.is_not(None))
        if has_parent is not None:
            parent = table.c.parent_code
            query = query.where(parent.is_not(None) if has_parent else parent.is_(None))
        return int(self.connection.scalar(query) or 0)

    def mark_deletion_exported(self, entity: str, code: str, *, deleted: bool) -> None:
        """The deletion reached Magento: the row no longer stands for anything Magento holds
        (a product that comes back in the PIM is then created, or re-enabled, as new)."""
        table = entity_tables[entity]
        values: dict[str, Any] = {
            "pushed_hash": None,
            "payload_hash": None,
            "pushed_payload": None,
            "pushed_at": utcnow(),
            "last_error": None,
        }
        if deleted:
            values["magento_id"] = None
        self.connection.execute(update(table).where(table.c.code == code).values(**values))

    def record_deletion_error(self, entity: str, code: str, message: str) -> None:
        """A deletion Magento refused: noted on the row, which stays deleted_in_pim (pending)."""
        table = entity_tables[entity]
        self.connection.execute(
            update(table).where(table.c.code == code).values(last_error=message[:4000])
        )

    # -- product media --------------------------------------------------------------------------

    def want_media(self, wanted: Mapping[str, Sequence[tuple[str, str | None]]]) -> None:
        """The images each product (by SKU) should have, in order: new ones are queued for
        upload, ones a product should no longer have are queued for removal."""
        if not wanted:
            return
        existing: dict[tuple[str, str], Any] = {}
        for chunk in _chunks(sorted(wanted), 500):
            query = select(product_media).where(product_media.c.product_sku.in_(chunk))
            for row in self.connection.execute(query):
                existing[(row.product_sku, row.media_code)] = row
        inserts = []
        for sku, media in wanted.items():
            for position, (code, label) in enumerate(media):
                if (sku, code) not in existing:
                    inserts.append(
                        {
                            "product_sku": sku,
                            "media_code": code,
                            "position": position,
                            "label": label,
                            "status": "pending",
                        }
                    )
        keep = {(sku, code) for sku, media in wanted.items() for code, _ in media}
        removals = [
            {"b_id": row.id}
            for key, row in existing.items()
            if key not in keep and row.status != "remove"
        ]
        if inserts:
            self.connection.execute(insert(product_media), inserts)
        if removals:
            self.connection.execute(
                update(product_media)
                .where(product_media.c.id == bindparam("b_id"))
                .values(status="remove"),
                removals,
            )

    def pending_media(
        self, *, after_id: int = 0, limit: int = 200, only: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        query = (
            select(product_media)
            .where(product_media.c.id > after_id, product_media.c.status.in_(["pending", "remove"]))
            .order_by(product_media.c.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(product_media.c.product_sku.in_(only))
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def media_done(self, row_id: int, entry_id: str | None, error: str | None = None) -> None:
        if error is not None:
            values: dict[str, Any] = {"status": "error", "last_error": error[:4000]}
        elif entry_id is None:  # removed from Magento
            self.connection.execute(delete(product_media).where(product_media.c.id == row_id))
            return
        else:
            values = {"status": "synced", "entry_id": entry_id, "last_error": None}
        self.connection.execute(
            update(product_media).where(product_media.c.id == row_id).values(**values)
        )

    # -- key-value state ----------------------------------------------------------------------

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
        run["started_at"] = _aware(run["started_at"])
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
                return _aware(started_at)
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


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for DateTime(timezone=True); they were stored as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _insert_ignore(connection: Connection, table: Table) -> Any:
    """INSERT that skips rows whose key already exists, in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def staging_failure(exc: SQLAlchemyError) -> StagingError:
    """Turn a database error into the one-line StagingError the CLI shows."""
    from pimsync.staging.database import failure_reason

    return StagingError(f"staging database error: {failure_reason(exc)}")
