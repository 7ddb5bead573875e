"""Stage 2: push what staging says needs an update to Magento, feed by feed, in order.

Attributes (options, attribute sets), categories (parents first), products (simple products
and configurable parents), variants (children, linked to their parent), assets (images). The
staging table is the queue: rows are read in batches, pushed by `concurrency` worker threads
(or through Magento's async bulk API), and each row is marked synced or error as its batch
ends, so a push that stops keeps everything it did and the next one starts where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from pimsync.app import App
from pimsync.config import PUSH_FEEDS, Config
from pimsync.errors import InterruptedRunError, MagentoError, PimsyncError
from pimsync.lock import RunLock, StopRequested
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected
from pimsync.magento.mapping import MissingDependencyError
from pimsync.pim.client import PimClient
from pimsync.pipeline.push_bulk import BulkPush
from pimsync.pipeline.push_context import build_catalog_context, load_context, refresh_ids
from pimsync.pipeline.push_deletions import DeletionPush, pending_deletions
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
from pimsync.pipeline.resume import Resumption, snapshot, stopped_run
from pimsync.staging.repository import LogEvent, StagingRepository
from pimsync.staging.tables import Status

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


@dataclass
class PushOptions:
    feeds: list[str]
    skus: list[str] | None = None
    dry_run: bool = False
    limit: int | None = None
    force: bool = False
    reindex: bool = True
    dry_run_sink: Any = None  # callable(dict) receiving each would-be request in a dry run
    failed_only: bool = False  # `resync --failed`: only the items in error, pushed again
    deletions: bool = True  # `create --no-deletions` skips exporting PIM deletions for one run
    fresh: bool = False  # do not carry on a stopped run
    # A resumed resync leaves out what the run it carries on already re-pushed.
    pushed_before: datetime | None = None
    workers: int = 1  # processes sharing the products and variants (PostgreSQL staging)

    def saved(self) -> dict[str, Any]:
        """What a stopped run must remember to be carried on."""
        return {
            "feeds": self.feeds,
            "skus": self.skus,
            "limit": self.limit,
            "force": self.force,
            "failed_only": self.failed_only,
            "deletions": self.deletions,
            "pushed_before": self.pushed_before.isoformat() if self.pushed_before else None,
        }

    def resumed(self, resumption: Resumption) -> PushOptions:
        """These options turned into the ones of the stopped run being carried on."""
        saved = resumption.options
        pushed_before = saved.get("pushed_before")
        return dataclasses.replace(
            self,
            feeds=list(saved.get("feeds") or resumption.feeds),
            skus=saved.get("skus"),
            limit=saved.get("limit"),
            force=bool(saved.get("force")),
            failed_only=bool(saved.get("failed_only")),
            deletions=bool(saved.get("deletions", True)),
            pushed_before=(
                datetime.fromisoformat(pushed_before) if pushed_before else resumption.started_at
            ),
        )


def order_push_feeds(feeds: Iterable[str]) -> list[str]:
    wanted = set(feeds) or set(PUSH_FEEDS)
    return [feed for feed in PUSH_FEEDS if feed in wanted]


def run_push(app: App, kind: str, options: PushOptions) -> PushReport:
    """`create` and `resync`: push pending items (all of a feed's items with `force`).

    A real push holds the run lock and carries on a stopped push of the same kind, with the
    options and configuration it started with, unless `options.fresh`. A dry run reads only.
    """
    app.config.require("magento.base_url", "magento.token")
    if options.dry_run:
        return _push(app, kind, options, None, None)
    with app.exclusive(kind) as lock:
        with app.repository() as repo:
            resumption = None if options.fresh else stopped_run(repo, [kind], app.config)
        if resumption is None:
            return _push(app, kind, options, lock, None)
        with app.using(resumption.config):
            return _push(app, kind, options.resumed(resumption), lock, resumption)


def _push(
    app: App,
    kind: str,
    options: PushOptions,
    lock: RunLock | None,
    resumption: Resumption | None,
) -> PushReport:
    config = app.config
    report = PushReport(run_id=None, kind=kind, dry_run=options.dry_run)
    if resumption is not None:
        report.resumed_from = resumption.run_id
        report.notes.append(resumption.note(kind))

    def begin(repo: StagingRepository) -> int:
        run_id = repo.begin_run(
            kind,
            options.feeds,
            config.fingerprint(),
            snapshot(config),
            options=options.saved(),
            resumed_from=report.resumed_from,
        )
        if lock is not None:
            lock.attach_run(run_id)
        log.info(
            "%s run %d started: %s",
            kind,
            run_id,
            ", ".join(options.feeds),
            extra={"run_id": run_id, "kind": kind, "feeds": options.feeds},
        )
        return run_id

    if not options.force and not options.dry_run and nothing_to_push(app, config, options):
        # Nothing pending and the mapping unchanged: not a single request to Magento.
        with app.repository() as repo:
            report.run_id = begin(repo)
            report.feeds = {feed: FeedPush(feed) for feed in options.feeds}
            if not config.sync.auto_create_new:
                for feed in options.feeds:
                    report.feeds[feed].waiting_new = sum(
                        repo.count_waiting_new(entity, has_parent=has_parent)
                        for entity, has_parent in FEED_ENTITIES[feed]
                    )
            report.status = "success"
            repo.finish_run(report.run_id, report.status, report.as_dict(), "nothing to push")
        return report
    with (
        app.repository() as repo,
        app.magento_client() as client,
        app.pim_client_or_none() as pim,
    ):
        catalog = build_catalog_context(repo, client, config)
        context = PushContext(catalog, force=options.force or options.failed_only)
        context.set_ids_by_name = client.attribute_sets()
        load_context(repo, context)
        if not options.dry_run:
            report.run_id = begin(repo)
        runner, workers = _runner(app, repo, client, pim, context, options, report, lock)
        try:
            if not options.dry_run and not options.force and not options.failed_only:
                report.marked_by_mapping = runner.reconcile_mapping()
            for feed in options.feeds:
                runner.push_feed(feed)
        except BaseException as exc:
            runner.shutdown()
            with suppress(Exception):  # the run's own error is the one to report
                runner.finish_phases()
            _stop_workers(workers)
            if report.run_id is not None:
                repo.rollback()
                stopped = isinstance(exc, KeyboardInterrupt | StopRequested)
                status = "stopped" if stopped else "failed"
                repo.finish_run(report.run_id, status, report.as_dict(), str(exc)[:1000])
                log.warning("%s run %d %s: %s", kind, report.run_id, status, exc)
            resume_hint = (
                f"items pushed before the stop are marked synced; the others still need an "
                f"update, so `pimsync {kind}` again resumes"
            )
            if isinstance(exc, StopRequested):
                raise InterruptedRunError(
                    f"push {exc.message}", hint=f"{resume_hint} (`--fresh` starts over)"
                ) from None
            if isinstance(exc, MagentoError):
                exc.message = f"push stopped: {exc.message}"
                exc.hint = resume_hint
            raise
        runner.shutdown()
        runner.finish_phases()
        _stop_workers(workers)
        report.status = "success"
        if not options.dry_run:
            repo.set_state(MAPPING_STATE, config.mapping.fingerprint())
            repo.finish_run(report.run_id or 0, report.status, report.as_dict())
            log.info(
                "%s run %s finished: %s",
                kind,
                report.run_id,
                "; ".join(
                    f"{f.feed} created {f.created} updated {f.updated} deleted {f.deleted} "
                    f"failed {f.failed}"
                    for f in report.feeds.values()
                ),
                extra={"run_id": report.run_id, "kind": kind, "status": report.status},
            )
            for note in report.notes:
                log.warning(note, extra={"run_id": report.run_id})
            if options.reindex and config.sync.reindex_command:
                report.reindex = run_reindex(config.sync.reindex_command)
    return report


def _runner(
    app: App,
    repo: StagingRepository,
    client: MagentoClient,
    pim: PimClient | None,
    context: PushContext,
    options: PushOptions,
    report: PushReport,
    lock: RunLock | None,
) -> tuple[Runner, list[subprocess.Popen[bytes]]]:
    """The run's Runner; with several workers on PostgreSQL, a coordinator and its workers."""
    if options.workers <= 1 or options.dry_run:
        return Runner(app, repo, client, pim, context, options, report, lock), []
    if repo.connection.dialect.name != "postgresql":
        report.notes.append(
            f"--workers {options.workers} declined: SQLite serves one machine; this push uses "
            f"its {app.config.magento.concurrency} concurrent requests ([magento] concurrency)"
        )
        return Runner(app, repo, client, pim, context, options, report, lock), []
    from pimsync.pipeline.workers import ClaimingRunner, start_local_workers, worker_id

    runner = ClaimingRunner(
        app, repo, client, pim, context, options, report, lock,
        worker_id=worker_id(), coordinator=True,
    )  # fmt: skip
    assert report.run_id is not None
    return runner, start_local_workers(app, options.workers - 1, report.run_id)


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """Local workers end by themselves once the run ends; a straggler is terminated."""
    deadline = time.monotonic() + 30
    for process in workers:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)


def nothing_to_push(app: App, config: Config, options: PushOptions) -> bool:
    include_new = config.sync.auto_create_new or options.skus is not None
    statuses = [Status.ERROR] if options.failed_only else None
    with app.repository() as repo:
        if repo.state(MAPPING_STATE) not in (None, config.mapping.fingerprint()):
            return False
        for feed in options.feeds:
            if feed == "assets" and repo.pending_media(limit=1, only=options.skus):
                return False
            if (
                options.deletions
                and not options.failed_only
                and pending_deletions(repo, config, feed)
            ):
                return False
            for entity, has_parent in FEED_ENTITIES[feed]:
                only = options.skus if entity in ("products", "product_models") else None
                pending = repo.pending_for_push(
                    entity,
                    limit=1,
                    include_new=include_new,
                    only=only,
                    has_parent=has_parent,
                    statuses=statuses,
                )
                if pending:
                    return False
    return True


def run_reindex(command: list[str]) -> str:
    """Run the configured reindex command, without a shell; returns "ok" or "failed: ..."."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return f"failed: exit {done.returncode} {last[0][:200]}"
    return "ok"


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
                if len(self.report.errors) < 20:
                    self.report.errors.append(
                        {"feed": feed, "code": outcome.code, "message": outcome.message or ""}
                    )
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
