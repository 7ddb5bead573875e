"""The engine of one push run: a worker pool, the feeds in order, the bookkeeping of outcomes.

`run_push` (push.py) decides what to run; the Runner runs it. Rows come from staging in id
order, a batch at a time, and are pushed by `[magento] concurrency` threads (or through the bulk
API); outcomes are written a batch at a time, and between batches the run checks whether it was
asked to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from pimsync.app import App
from pimsync.errors import MagentoError, PimsyncError
from pimsync.lock import RunLock
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected
from pimsync.magento.mapping import MissingDependencyError
from pimsync.pim.client import PimClient
from pimsync.pipeline.push_bulk import BulkPush
from pimsync.pipeline.push_context import refresh_ids
from pimsync.pipeline.push_deletions import DeletionPush
from pimsync.pipeline.push_items import (
    BATCH,
    Outcome,
    PushContext,
    payload_for,
    push_item,
    sku_of,
)
from pimsync.pipeline.push_media import MediaPush
from pimsync.pipeline.report import FeedPush, PushReport
from pimsync.staging.repository import StagingRepository
from pimsync.staging.runs import LogEvent
from pimsync.staging.tables import Status

if TYPE_CHECKING:
    from pimsync.pipeline.push import PushOptions

# Which staged rows each push feed sends, in order; `has_parent` splits simple from variants.
FEED_ENTITIES: dict[str, list[tuple[str, bool | None]]] = {
    "attributes": [("attributes", None), ("attribute_options", None), ("families", None)],
    "categories": [("categories", None)],
    "products": [("product_models", None), ("products", False)],
    "variants": [("products", True)],
    "assets": [],
}
MAPPING_STATE = "mapping_fingerprint"
log = logging.getLogger("pimsync.push")
# Passes over an entity's pending rows in one push: the later ones pick up what an import
# changed meanwhile; bounded, so a PIM that never stops changing cannot keep a push running.
MAX_PASSES = 5


class Runner:
    """One push run: the worker pool, the feeds, and the bookkeeping of outcomes."""

    def __init__(
        self,
        app: App,
        repo: StagingRepository,
        client: MagentoClient,
        pim: PimClient | None,
        context: PushContext,
        options: PushOptions,
        report: PushReport,
        lock: RunLock | None = None,
    ) -> None:
        self.app, self.repo, self.client, self.pim = app, repo, client, pim
        self.context, self.options, self.report = context, options, report
        self.lock = lock
        self._sent: dict[tuple[str, bool | None], int] = {}  # rows handed out, for --limit
        self.config = app.config
        workers = 1 if options.dry_run else self.config.magento.concurrency
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pimsync-push")
        self._local = threading.local()
        self._clients: list[MagentoClient] = []
        self._clients_lock = threading.Lock()
        self.bulk = BulkPush(self)
        self.media = MediaPush(self)
        self.deletions = DeletionPush(self)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for worker in self._clients:
            if worker is not self.client:
                worker.close()

    def note_error(self, feed: str, code: str, message: str) -> None:
        """Keep the first errors for the summary (all of them are in staging and the log)."""
        if len(self.report.errors) < 20:
            self.report.errors.append({"feed": feed, "code": code, "message": message})

    def finish_phases(self) -> None:
        """Nothing to tell: no workers share this run (see ClaimingRunner)."""

    def worker_client(self) -> MagentoClient:
        client: MagentoClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self.client.for_worker()
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    # -- feeds ---------------------------------------------------------------------------------

    def push_feed(self, feed: str) -> None:
        started = time.monotonic()
        counts = self.report.feeds.setdefault(feed, FeedPush(feed))
        if feed == "assets":
            self.media.push(counts)
        for entity, has_parent in FEED_ENTITIES[feed]:
            if entity == "categories":
                self._push_categories(counts)
            else:
                self._push_entity(feed, entity, has_parent, counts)
            refresh_ids(self.repo, self.context)
            self.checkpoint()
        if self.options.deletions and not (self.options.force or self.options.failed_only):
            # Sales Layer rule 05: a forced refresh never exports deletions.
            self.deletions.push(feed, counts)
        counts.seconds = round(time.monotonic() - started, 3)

    def _include_new(self) -> bool:
        return self.config.sync.auto_create_new or self.options.skus is not None

    def _only(self, entity: str) -> list[str] | None:
        if self.options.skus is None or entity not in ("products", "product_models"):
            return None
        return self.options.skus

    def _rows(
        self, entity: str, has_parent: bool | None, batch: int = 0, *, forced: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """One pass over the pending rows of an entity, in id order, a batch at a time.

        `forced=False` is a follow-up pass of a resync: only what became pending meanwhile.
        """
        after = 0
        limit = self.options.limit
        key = (entity, has_parent)
        force = self.options.force and forced
        while True:
            rows = self.repo.pending_for_push(
                entity,
                after_id=after,
                limit=batch or BATCH,
                include_new=self._include_new(),
                only=self._only(entity),
                has_parent=has_parent,
                force=force,
                statuses=[Status.ERROR] if self.options.failed_only else None,
                pushed_before=self.options.pushed_before if force else None,
            )
            if not rows:
                return
            after = rows[-1]["id"]
            if limit is not None:
                rows = rows[: max(limit - self._sent.get(key, 0), 0)]
                if not rows:
                    return
            self._sent[key] = self._sent.get(key, 0) + len(rows)
            yield rows

    def checkpoint(self) -> None:
        """Between batches: stop here when the run was asked to (or lost its lock)."""
        if self.lock is not None:
            self.lock.checkpoint()

    def _halt(self) -> BaseException | None:
        """The reason to stop submitting work, without raising it yet."""
        try:
            self.checkpoint()
        except PimsyncError as exc:
            return exc
        return None

    def _push_entity(
        self, feed: str, entity: str, has_parent: bool | None, counts: FeedPush
    ) -> None:
        if not self._include_new():
            counts.waiting_new += self.repo.count_waiting_new(entity, has_parent=has_parent)
        # Sales Layer rule 04: what became pending while this push ran is pushed before it
        # ends. Each pass starts once the previous one is settled (nothing in flight), so a
        # row is never handed out twice; a resync's later passes are not forced.
        for number in range(MAX_PASSES):
            forced = number == 0
            if self.options.dry_run or (
                self.config.magento.mode == "bulk" and entity in ("product_models", "products")
            ):
                handed_out = 0
                for rows in self._rows(entity, has_parent, self._bulk_batch(), forced=forced):
                    handed_out += len(rows)
                    self._run_batch(feed, entity, rows, counts)
            else:
                handed_out = self._stream(
                    feed, entity, self._rows(entity, has_parent, forced=forced), counts
                )
            if handed_out == 0 or self.options.dry_run or self.options.failed_only:
                return

    def _bulk_batch(self) -> int:
        # Sixteen bulk requests per batch: they are submitted together and Magento's consumer
        # works on the later ones while pimsync waits for the first.
        return BATCH if self.options.dry_run else self.config.magento.max_items_per_request * 16

    def _stream(
        self,
        feed: str,
        entity: str,
        batches: Iterator[list[dict[str, Any]]],
        counts: FeedPush,
    ) -> int:
        """Keep every worker busy: rows are submitted as others finish, not batch by batch
        (a batch barrier idles the workers while its slowest request ends). Outcomes are
        written in submission order, a batch at a time. A stop request ends the submitting;
        what is in flight still settles and is recorded. Returns the rows submitted."""
        window = self.config.magento.concurrency * 4
        in_flight: deque[Future[Outcome]] = deque()
        done: list[Outcome] = []
        stop: BaseException | None = None

        def settle(future: Future[Outcome]) -> None:
            nonlocal stop
            try:
                done.append(future.result())
            except MagentoError as exc:  # the run must stop; keep what the others did
                stop = stop or exc

        submitted = 0
        for rows in batches:
            for row in rows:
                in_flight.append(self.pool.submit(self._push_one, entity, row))
                submitted += 1
                while len(in_flight) >= window:
                    settle(in_flight.popleft())
                if len(done) >= BATCH or stop is not None:
                    self.record(feed, entity, done, counts)
                    done = []
                    stop = stop or self._halt()
                if stop is not None:
                    break
            if stop is not None:
                break
        while in_flight:
            settle(in_flight.popleft())
        self.record(feed, entity, done, counts)
        stop = stop or self._halt()
        if stop is not None:
            raise stop
        return submitted

    def _push_categories(self, counts: FeedPush) -> None:
        """Parents before children: the pending categories, level by level."""
        rows = [row for batch in self._rows("categories", None) for row in batch]
        parents = {code: data.get("parent") for code, data in self.repo.records("categories")}

        def depth(code: str) -> int:
            level, seen = 0, set()
            while parents.get(code) and code not in seen:
                seen.add(code)
                code, level = str(parents[code]), level + 1
            return level

        for level in sorted({depth(row["code"]) for row in rows}):
            batch = [row for row in rows if depth(row["code"]) == level]
            self._run_batch("categories", "categories", batch, counts)
            refresh_ids(self.repo, self.context)

    def _run_batch(
        self, feed: str, entity: str, rows: list[dict[str, Any]], counts: FeedPush
    ) -> None:
        if self.options.dry_run:
            for row in rows:
                self._dry_run(feed, entity, row)
            return
        if self.config.magento.mode == "bulk" and entity in ("product_models", "products"):
            self.record(feed, entity, self.bulk.outcomes(entity, rows), counts)
            self.checkpoint()
            return
        futures: list[Future[Outcome]] = [
            self.pool.submit(self._push_one, entity, row) for row in rows
        ]
        outcomes: list[Outcome] = []
        stop: BaseException | None = None
        for future in futures:
            try:
                outcomes.append(future.result())
            except MagentoError as exc:  # the run must stop; keep what the others did
                stop = stop or exc
        self.record(feed, entity, outcomes, counts)
        if stop is not None:
            raise stop
        self.checkpoint()

    def _push_one(self, entity: str, row: dict[str, Any]) -> Outcome:
        try:
            return push_item(entity, self.worker_client(), row, self.context)
        except ItemRejected as exc:
            return Outcome(row["code"], "error", row["hash"], message=exc.message)
        except MissingDependencyError as exc:
            return Outcome(row["code"], "error", row["hash"], message=f"waiting: {exc}")
        except (KeyError, TypeError, ValueError) as exc:
            # A 2xx whose body lacks what the API promises (an id, an object): the item's
            # error, never a synced mark for something Magento may not hold.
            reason = f"{type(exc).__name__}: {exc}"
            return Outcome(
                row["code"], "error", row["hash"], message=f"unexpected answer: {reason}"
            )

    def record(self, feed: str, entity: str, outcomes: list[Outcome], counts: FeedPush) -> None:
        pushed = []
        events = []
        media: dict[str, list[tuple[str, str | None]]] = {}
        for outcome in outcomes:
            events.append(LogEvent(feed, entity, outcome.code, outcome.action, outcome.message))
            if not outcome.ok:
                counts.failed += 1
                log.warning(
                    "%s %s %s: %s",
                    feed,
                    entity,
                    outcome.code,
                    outcome.message,
                    extra={"run_id": self.report.run_id, "feed": feed, "code": outcome.code},
                )
                self.repo.record_item_error(entity, outcome.code, outcome.message or "failed")
                self.note_error(feed, outcome.code, outcome.message or "")
                continue
            if outcome.action == "created":
                counts.created += 1
            elif outcome.action == "updated":
                counts.updated += 1
            elif outcome.action == "ignored":
                counts.ignored += 1
            else:
                counts.unchanged += 1
            payloads = outcome.payloads
            pushed.append(
                {
                    "code": outcome.code,
                    "hash": outcome.hash,
                    "payload_hash": payloads.hash() if payloads else "-",
                    "payload": (orjson.dumps(payloads.as_dict()).decode() if payloads else None),
                    "magento_id": outcome.magento_id,
                }
            )
            if outcome.media is not None:
                media[outcome.media[0]] = outcome.media[1]
        self.repo.mark_pushed(entity, pushed)
        self.repo.want_media(media)
        if self.report.run_id is not None:
            self.repo.log_events(self.report.run_id, events)
        self.repo.commit()

    def _dry_run(self, feed: str, entity: str, row: dict[str, Any]) -> None:
        reason: str | None = None
        try:
            payloads = payload_for(entity, row, self.context)
        except MissingDependencyError as exc:
            payloads, reason = None, f"waits: {exc}"
        if payloads is not None and payloads.hash() == row["payload_hash"]:
            return  # nothing would be sent
        action = "create" if row["magento_id"] is None else "update"
        sink = self.options.dry_run_sink
        if sink is not None:
            sink(
                {
                    "feed": feed,
                    "entity": entity,
                    "code": row["code"],
                    "sku": sku_of(entity, row),
                    "action": reason or (action if payloads else "ignore"),
                    "payload": payloads.as_dict() if payloads else None,
                }
            )

    # -- mapping changes -------------------------------------------------------------------

    def reconcile_mapping(self) -> int:
        """After a mapping change, mark the synced items whose payload it changes (only those)."""
        fingerprint = self.config.mapping.fingerprint()
        previous = self.repo.state(MAPPING_STATE)
        if previous is None or previous == fingerprint:
            return 0
        marked = 0
        for entity in (
            "attributes",
            "attribute_options",
            "families",
            "categories",
            "product_models",
            "products",
        ):
            after = 0
            while True:
                rows = self.repo.synced_rows(entity, after_id=after, limit=1000)
                if not rows:
                    break
                after = rows[-1]["id"]
                changed = []
                for row in rows:
                    try:
                        payloads = payload_for(entity, row, self.context)
                    except MissingDependencyError:
                        changed.append(row["code"])
                        continue
                    digest = payloads.hash() if payloads else "-"
                    if digest != row["payload_hash"]:
                        changed.append(row["code"])
                self.repo.mark_codes(entity, changed, Status.NEEDS_UPDATE)
                marked += len(changed)
            self.repo.commit()
        return marked
