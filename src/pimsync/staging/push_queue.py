"""The push side of staging: the entity tables as the queue of what Magento needs.

Pending rows in id order (keyset paging), claims for several workers, outcomes, skipping,
deletions to export, and the product images to upload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)

from pimsync.staging._base import Connected, chunks, lease_now, utcnow
from pimsync.staging.tables import (
    Status,
    entity_tables,
    product_media,
)


class PushQueue(Connected):
    """Reading and marking what a push sends; mixed into StagingRepository."""

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
            statuses = _pending_statuses(include_new)
        query = (
            select(table)
            .where(table.c.id > after_id, table.c.status.in_(statuses), table.c.skipped.is_(False))
            .order_by(table.c.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(table.c.code.in_(only) | table.c.identifier.in_(only))
        query = query.where(*_parent_filter(table, has_parent))
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
        now = lease_now(self.connection)
        statuses = _pending_statuses(include_new)
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
        candidates = candidates.where(*_parent_filter(table, has_parent))
        claimed = self.connection.execute(
            update(table)
            .where(table.c.id.in_(candidates.scalar_subquery()))
            .values(claimed_by=worker, claimed_until=now + timedelta(seconds=lease_seconds))
            .returning(*table.c)
        ).all()
        self.commit()
        return sorted((dict(row._mapping) for row in claimed), key=lambda row: row["id"])

    def claimers(self, entity: str) -> list[str]:
        """The workers holding a live claim on a pending row of `entity`."""
        table = entity_tables[entity]
        query = (
            select(table.c.claimed_by)
            .distinct()
            .where(
                table.c.status.in_(_pending_statuses(True)),
                table.c.claimed_by.is_not(None),
                table.c.claimed_until >= lease_now(self.connection),
            )
        )
        return [str(worker) for worker in self.connection.scalars(query)]

    def release_claims(self, entity: str, workers: Sequence[str]) -> int:
        """Make the rows `workers` claimed claimable again at once, without waiting for their
        leases (for workers known to be gone). Returns the rows given back."""
        if not workers:
            return 0
        table = entity_tables[entity]
        released = self.connection.execute(
            update(table)
            .where(table.c.claimed_by.in_(list(workers)))
            .values(claimed_by=None, claimed_until=None)
        )
        return int(released.rowcount)

    def count_pending(
        self, entity: str, *, include_new: bool = True, has_parent: bool | None = None
    ) -> int:
        """Rows still to push (claimed or not)."""
        table = entity_tables[entity]
        statuses = _pending_statuses(include_new)
        query = select(func.count()).where(table.c.status.in_(statuses), table.c.skipped.is_(False))
        query = query.where(*_parent_filter(table, has_parent))
        return int(self.connection.scalar(query) or 0)

    def count_waiting_new(self, entity: str, *, has_parent: bool | None = None) -> int:
        """New items that wait for `create --sku` because auto_create_new is off."""
        table = entity_tables[entity]
        query = select(func.count()).where(table.c.status == Status.NEW, table.c.skipped.is_(False))
        query = query.where(*_parent_filter(table, has_parent))
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
        for chunk in chunks(list(codes), 500):
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
            for chunk in chunks(sorted(set(codes)), 500):
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
                *_deletion_pending(table),
            )
            .order_by(table.c.id)
            .limit(limit)
        )
        query = query.where(*_parent_filter(table, has_parent))
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def count_pending_deletions(self, entity: str, *, has_parent: bool | None = None) -> int:
        table = entity_tables[entity]
        query = select(func.count()).where(*_deletion_pending(table))
        query = query.where(*_parent_filter(table, has_parent))
        return int(self.connection.scalar(query) or 0)

    def count_in_magento(self, entity: str, *, has_parent: bool | None = None) -> int:
        """Rows Magento holds as far as staging knows (pushed at least once, not yet removed)."""
        table = entity_tables[entity]
        query = select(func.count()).where(table.c.pushed_hash.is_not(None))
        query = query.where(*_parent_filter(table, has_parent))
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
        for chunk in chunks(sorted(wanted), 500):
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
            .where(
                product_media.c.id > after_id,
                product_media.c.status.in_(["pending", "uploading", "remove"]),
            )
            .order_by(product_media.c.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(product_media.c.product_sku.in_(only))
        return [dict(row._mapping) for row in self.connection.execute(query)]

    def mark_assets_uploaded(self) -> int:
        """Assets are uploaded per product (product_media); mark the staged media files that
        Magento now holds for at least one product as synced. Returns how many were marked."""
        assets = entity_tables["assets"]
        uploaded = select(product_media.c.media_code).where(product_media.c.status == "synced")
        result = self.connection.execute(
            update(assets)
            .where(
                assets.c.status.in_([Status.NEW, Status.NEEDS_UPDATE, Status.ERROR]),
                assets.c.code.in_(uploaded),
            )
            .values(status=Status.SYNCED, pushed_hash=assets.c.hash, pushed_at=utcnow())
        )
        return int(result.rowcount)

    def media_uploading(self, row_ids: Sequence[int]) -> None:
        """Note uploads about to be sent: if the run dies before their answer, the next run looks
        in the gallery first (a media POST is not idempotent)."""
        if row_ids:
            self.connection.execute(
                update(product_media)
                .where(product_media.c.id.in_(list(row_ids)))
                .values(status="uploading")
            )
            self.commit()

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


def _parent_filter(table: Table, has_parent: bool | None) -> list[ColumnElement[bool]]:
    """Rows with a parent (variants, sub models), without one, or all of them (None)."""
    if has_parent is None:
        return []
    parent = table.c.parent_code
    return [parent.is_not(None) if has_parent else parent.is_(None)]


def _pending_statuses(include_new: bool) -> list[str]:
    return [Status.NEEDS_UPDATE, Status.NEW] if include_new else [Status.NEEDS_UPDATE]


def _deletion_pending(table: Table) -> list[ColumnElement[bool]]:
    """Deleted in the PIM, held by Magento (pushed, deletion not exported yet), not skipped."""
    return [
        table.c.status == Status.DELETED_IN_PIM,
        table.c.pushed_hash.is_not(None),
        table.c.skipped.is_(False),
    ]
