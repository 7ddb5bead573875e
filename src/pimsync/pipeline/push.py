"""Stage 2: push what staging says needs an update to Magento, feed by feed, in order.

Attributes (options, attribute sets), categories (parents first), products (simple products
and configurable parents), variants (children, linked to their parent), assets (images). The
staging table is the queue: rows are read in batches, pushed by `concurrency` worker threads
(or through Magento's async bulk API), and each row is marked synced or error as its batch
ends, so a push that stops keeps everything it did and the next one starts where it stopped.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from pimsync.app import App
from pimsync.config import PUSH_FEEDS, Config
from pimsync.errors import ConfigError, MagentoError
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected
from pimsync.magento.mapping import AttributeInfo, CatalogContext, MissingDependencyError, Payloads
from pimsync.magento.models import BulkSubmission
from pimsync.pim.client import PimClient
from pimsync.pipeline.push_items import (
    Outcome,
    PushContext,
    fetch_media,
    link_variant,
    media_entry,
    payload_for,
    previous_payload,
    push_item,
    send_store_values,
    sku_of,
    store_changes,
)
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
BATCH = 200
MAPPING_STATE = "mapping_fingerprint"


@dataclass(slots=True)
class FeedPush:
    """The counts of one feed of a push."""

    feed: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored: int = 0  # staged rows with no Magento counterpart (identifier, media attributes)
    failed: int = 0
    waiting_new: int = 0  # new items not created because auto_create_new is off
    seconds: float = 0.0


@dataclass
class PushReport:
    run_id: int | None
    kind: str
    dry_run: bool = False
    status: str = "in_progress"
    feeds: dict[str, FeedPush] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)  # the first few, for the summary
    marked_by_mapping: int = 0
    reindex: str | None = None
    message: str | None = None

    @property
    def failed(self) -> int:
        return sum(feed.failed for feed in self.feeds.values())

    @property
    def exit_code(self) -> int:
        reindex_failed = self.reindex is not None and self.reindex.startswith("failed")
        return 1 if self.failed or reindex_failed else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "dry_run": self.dry_run,
            "status": self.status,
            "exit_code": self.exit_code,
            "feeds": {name: asdict(feed) for name, feed in self.feeds.items()},
            "errors": self.errors,
            "marked_by_mapping_change": self.marked_by_mapping,
            "reindex": self.reindex,
            "message": self.message,
        }


@dataclass
class PushOptions:
    feeds: list[str]
    skus: list[str] | None = None
    dry_run: bool = False
    limit: int | None = None
    force: bool = False
    reindex: bool = True
    dry_run_sink: Any = None  # callable(dict) receiving each would-be request in a dry run


def order_push_feeds(feeds: Iterable[str]) -> list[str]:
    wanted = set(feeds) or set(PUSH_FEEDS)
    return [feed for feed in PUSH_FEEDS if feed in wanted]


def run_push(app: App, kind: str, options: PushOptions) -> PushReport:
    """`create` and `resync`: push pending items (all of a feed's items with `force`)."""
    config = app.config
    config.require("magento.base_url", "magento.token")
    report = PushReport(run_id=None, kind=kind, dry_run=options.dry_run)
    if not options.force and not options.dry_run and nothing_to_push(app, config, options):
        # Nothing pending and the mapping unchanged: not a single request to Magento.
        with app.repository() as repo:
            report.run_id = repo.begin_run(kind, options.feeds, config.fingerprint(), "{}")
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
        context = PushContext(catalog, force=options.force)
        context.set_ids_by_name = client.attribute_sets()
        refresh_context(repo, context)
        if not options.dry_run:
            report.run_id = repo.begin_run(kind, options.feeds, config.fingerprint(), "{}")
        runner = _Runner(app, repo, client, pim, context, options, report)
        try:
            if not options.dry_run and not options.force:
                report.marked_by_mapping = runner.reconcile_mapping()
            for feed in options.feeds:
                runner.push_feed(feed)
        except BaseException as exc:
            runner.shutdown()
            if report.run_id is not None:
                repo.rollback()
                status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
                repo.finish_run(report.run_id, status, report.as_dict(), str(exc)[:1000])
            if isinstance(exc, MagentoError):
                exc.message = f"push stopped: {exc.message}"
                exc.hint = (
                    "items pushed before the stop are marked synced; the others still need "
                    f"an update, so `pimsync {kind}` again resumes"
                )
            raise
        runner.shutdown()
        report.status = "success"
        if not options.dry_run:
            repo.set_state(MAPPING_STATE, config.mapping.fingerprint())
            repo.finish_run(report.run_id or 0, report.status, report.as_dict())
            if options.reindex and config.sync.reindex_command:
                report.reindex = run_reindex(config.sync.reindex_command)
    return report


def nothing_to_push(app: App, config: Config, options: PushOptions) -> bool:
    include_new = config.sync.auto_create_new or options.skus is not None
    with app.repository() as repo:
        if repo.state(MAPPING_STATE) not in (None, config.mapping.fingerprint()):
            return False
        for feed in options.feeds:
            if feed == "assets" and repo.pending_media(limit=1, only=options.skus):
                return False
            for entity, has_parent in FEED_ENTITIES[feed]:
                only = options.skus if entity in ("products", "product_models") else None
                pending = repo.pending_for_push(
                    entity, limit=1, include_new=include_new, only=only, has_parent=has_parent
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


def build_catalog_context(
    repo: StagingRepository, client: MagentoClient, config: Config
) -> CatalogContext:
    """Read Magento's stores and websites and check that the mapping names existing ones."""
    stores = {store.code: store.id for store in client.store_views()}
    websites = {website.code: website.id for website in client.websites()}
    problems = [
        f"[mapping] locales: Magento has no store view {code!r} (it has {', '.join(stores)})"
        for code in config.mapping.locales.values()
        if code not in stores
    ]
    problems += [
        f"[mapping] websites: Magento has no website {code!r} (it has {', '.join(websites)})"
        for code in config.mapping.websites
        if code not in websites
    ]
    if problems:
        raise ConfigError("the mapping does not match this Magento", problems)
    return CatalogContext(
        mapping=config.mapping,
        attributes={},
        option_ids={},
        category_ids={},
        attribute_set_ids={},
        store_ids=stores,
        website_ids=websites,
    )


def refresh_context(repo: StagingRepository, context: PushContext) -> None:
    """Reload what payloads refer to from staging: ids Magento gave, axes, model parents."""
    catalog = context.catalog
    excluded = [Status.QUARANTINED, Status.DELETED_IN_PIM]
    catalog.attributes = {
        code: AttributeInfo(
            code,
            str(data.get("type")),
            bool(data.get("localizable")),
            bool(data.get("scopable")),
        )
        for code, data in repo.records("attributes", exclude_status=excluded)
    }
    catalog.option_ids = repo.magento_ids("attribute_options")
    catalog.category_ids = repo.magento_ids("categories")
    catalog.attribute_set_ids = {f: int(i) for f, i in repo.magento_ids("families").items()}
    context.attribute_ids = repo.magento_ids("attributes")
    variants: dict[str, list[str]] = {}
    for code, data in repo.records("family_variants", exclude_status=excluded):
        sets = sorted(data.get("variant_attribute_sets") or [], key=lambda s: s.get("level", 0))
        variants[code] = [axis for level in sets for axis in level.get("axes") or []]
    catalog.family_axes = dict(variants)
    for code, data in repo.records("product_models", exclude_status=excluded):
        context.model_parents[code] = data.get("parent")
        axes = variants.get(f"{data.get('family')}/{data.get('family_variant')}")
        if axes is not None:
            catalog.family_axes[f"@{code}"] = axes


class _Runner:
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
    ) -> None:
        self.app, self.repo, self.client, self.pim = app, repo, client, pim
        self.context, self.options, self.report = context, options, report
        self.config = app.config
        workers = 1 if options.dry_run else self.config.magento.concurrency
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pimsync-push")
        self._local = threading.local()
        self._clients: list[MagentoClient] = []
        self._clients_lock = threading.Lock()
        self._media_cache: dict[str, bytes] = {}

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for worker in self._clients:
            if worker is not self.client:
                worker.close()

    def _worker_client(self) -> MagentoClient:
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
            self._push_media(counts)
        for entity, has_parent in FEED_ENTITIES[feed]:
            if entity == "categories":
                self._push_categories(counts)
            else:
                self._push_entity(feed, entity, has_parent, counts)
            refresh_context(self.repo, self.context)
        counts.seconds = round(time.monotonic() - started, 3)

    def _include_new(self) -> bool:
        return self.config.sync.auto_create_new or self.options.skus is not None

    def _only(self, entity: str) -> list[str] | None:
        if self.options.skus is None or entity not in ("products", "product_models"):
            return None
        return self.options.skus

    def _rows(
        self, entity: str, has_parent: bool | None, batch: int = 0
    ) -> Iterator[list[dict[str, Any]]]:
        after, sent = 0, 0
        limit = self.options.limit
        while True:
            rows = self.repo.pending_for_push(
                entity,
                after_id=after,
                limit=batch or BATCH,
                include_new=self._include_new(),
                only=self._only(entity),
                has_parent=has_parent,
                force=self.options.force,
            )
            if not rows:
                return
            after = rows[-1]["id"]
            if limit is not None:
                rows = rows[: max(limit - sent, 0)]
                if not rows:
                    return
            sent += len(rows)
            yield rows

    def _push_entity(
        self, feed: str, entity: str, has_parent: bool | None, counts: FeedPush
    ) -> None:
        if not self._include_new():
            counts.waiting_new += self.repo.count_waiting_new(entity, has_parent=has_parent)
        if self.options.dry_run or (
            self.config.magento.mode == "bulk" and entity in ("product_models", "products")
        ):
            for rows in self._rows(entity, has_parent, batch=self._bulk_batch()):
                self._run_batch(feed, entity, rows, counts)
            return
        self._stream(feed, entity, self._rows(entity, has_parent), counts)

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
    ) -> None:
        """Keep every worker busy: rows are submitted as others finish, not batch by batch
        (a batch barrier idles the workers while its slowest request ends). Outcomes are
        written in submission order, a batch at a time."""
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

        for rows in batches:
            for row in rows:
                in_flight.append(self.pool.submit(self._push_one, entity, row))
                while len(in_flight) >= window:
                    settle(in_flight.popleft())
                if len(done) >= BATCH or stop is not None:
                    self._record(feed, entity, done, counts)
                    done = []
                if stop is not None:
                    break
            if stop is not None:
                break
        while in_flight:
            settle(in_flight.popleft())
        self._record(feed, entity, done, counts)
        if stop is not None:
            raise stop

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
            refresh_context(self.repo, self.context)

    def _run_batch(
        self, feed: str, entity: str, rows: list[dict[str, Any]], counts: FeedPush
    ) -> None:
        if self.options.dry_run:
            for row in rows:
                self._dry_run(feed, entity, row)
            return
        if self.config.magento.mode == "bulk" and entity in ("product_models", "products"):
            self._record(feed, entity, self._bulk_outcomes(entity, rows), counts)
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
        self._record(feed, entity, outcomes, counts)
        if stop is not None:
            raise stop

    def _push_one(self, entity: str, row: dict[str, Any]) -> Outcome:
        try:
            return push_item(entity, self._worker_client(), row, self.context)
        except ItemRejected as exc:
            return Outcome(row["code"], "error", row["hash"], message=exc.message)
        except MissingDependencyError as exc:
            return Outcome(row["code"], "error", row["hash"], message=f"waiting: {exc}")

    def _record(self, feed: str, entity: str, outcomes: list[Outcome], counts: FeedPush) -> None:
        pushed = []
        events = []
        media: dict[str, list[tuple[str, str | None]]] = {}
        for outcome in outcomes:
            events.append(LogEvent(feed, entity, outcome.code, outcome.action, outcome.message))
            if not outcome.ok:
                counts.failed += 1
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

    # -- bulk mode -------------------------------------------------------------------------

    def _bulk_outcomes(self, entity: str, rows: list[dict[str, Any]]) -> list[Outcome]:
        """Product saves through the async bulk API, in batches of max_items_per_request.

        Global values first, then each store view's changed values; a variant is linked to its
        parent once its save completed. Results map back to rows by request index.
        """
        outcomes: dict[str, Outcome] = {}
        ready: list[tuple[dict[str, Any], Payloads]] = []
        for row in rows:
            try:
                payloads = payload_for(entity, row, self.context)
            except MissingDependencyError as exc:
                outcomes[row["code"]] = Outcome(
                    row["code"], "error", row["hash"], message=f"waiting: {exc}"
                )
                continue
            if payloads is None:
                outcomes[row["code"]] = Outcome(row["code"], "ignored", row["hash"])
            elif payloads.hash() == row["payload_hash"] and not self.context.force:
                outcomes[row["code"]] = Outcome(row["code"], "unchanged", row["hash"], payloads)
            else:
                ready.append((row, payloads))
        saved = self._bulk_save(
            "all", [(row, payloads.global_) for row, payloads in ready], outcomes
        )
        stores: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        for row, payloads in ready:
            if row["code"] not in saved:
                continue
            before = previous_payload(row).get("stores") or {}
            for store, body in payloads.stores.items():
                changed = store_changes(before.get(store) or {}, body)
                if changed is not None:
                    stores.setdefault(store, []).append((row, changed))
        for store, items in stores.items():
            stored = self._bulk_save(store, items, outcomes)
            saved -= {row["code"] for row, _ in items if row["code"] not in stored}
        links = [
            (row, payloads)
            for row, payloads in ready
            if row["code"] in saved and payloads.extra.get("parent")
        ]
        futures = [self.pool.submit(self._link, row, payloads) for row, payloads in links]
        for (row, _), future in zip(links, futures, strict=True):
            error = future.result()
            if error is not None:
                saved.discard(row["code"])
                outcomes[row["code"]] = Outcome(row["code"], "error", row["hash"], message=error)
        for row, payloads in ready:
            if row["code"] in saved:
                action = "created" if row["magento_id"] is None else "updated"
                media: list[tuple[str, str | None]] = [
                    (code, None) for code in payloads.extra.get("media") or []
                ]
                outcomes[row["code"]] = Outcome(
                    row["code"],
                    action,
                    row["hash"],
                    payloads,
                    media=(payloads.global_["sku"], media),
                )
        return [outcomes[row["code"]] for row in rows]

    def _bulk_save(
        self,
        store: str,
        items: list[tuple[dict[str, Any], dict[str, Any]]],
        outcomes: dict[str, Outcome],
    ) -> set[str]:
        """PUT products/bySku in bulk; returns the codes whose operation completed."""
        done: set[str] = set()
        size = self.config.magento.max_items_per_request
        pending = list(items)
        for attempt in range(3):  # retriable operations (deadlocks) go round again
            retry: list[tuple[dict[str, Any], dict[str, Any]]] = []
            # All requests go out together, and are waited for together, on the worker pool:
            # each one costs Magento's latency, and the consumer works on all of them at once.
            chunks = [pending[start : start + size] for start in range(0, len(pending), size)]
            submissions = list(self.pool.map(lambda c: self._bulk_submit(store, c), chunks))
            submitted = []
            for chunk, submission in zip(chunks, submissions, strict=True):
                if isinstance(submission, ItemRejected):
                    for row, _ in chunk:
                        outcomes[row["code"]] = Outcome(
                            row["code"], "error", row["hash"], message=submission.message
                        )
                else:
                    submitted.append((chunk, submission))
            waits = list(
                self.pool.map(
                    lambda sub: self._worker_client().bulk_wait(sub.bulk_uuid, poll_interval=0.2),
                    [submission for _, submission in submitted],
                )
            )
            for (chunk, submission), results in zip(submitted, waits, strict=True):
                for item in submission.rejected:
                    row = chunk[item.index][0]
                    message = item.message or "rejected by Magento's bulk API"
                    outcomes[row["code"]] = Outcome(
                        row["code"], "error", row["hash"], message=message
                    )
                for result in results:
                    row = chunk[result.index][0]
                    if result.ok:
                        done.add(row["code"])
                    elif result.status == "retriable" and attempt < 2:
                        retry.append(chunk[result.index])
                    else:
                        message = result.message
                        outcomes[row["code"]] = Outcome(
                            row["code"], "error", row["hash"], message=message
                        )
            if not retry:
                break
            pending = retry
        return done

    def _bulk_submit(
        self, store: str, chunk: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> BulkSubmission | ItemRejected:
        body = [{"sku": product["sku"], "product": product} for _, product in chunk]
        try:
            return self._worker_client().bulk_submit(store, "products/bySku", body, "PUT")
        except ItemRejected as exc:  # the whole request was refused: its items' error
            return exc

    def _link(self, row: dict[str, Any], payloads: Payloads) -> str | None:
        try:
            link_variant(
                self._worker_client(),
                payloads.extra["parent"],
                payloads.global_["sku"],
                self.context,
            )
        except (ItemRejected, MissingDependencyError) as exc:
            return getattr(exc, "message", None) or str(exc)
        return None

    # -- media -----------------------------------------------------------------------------

    def _push_media(self, counts: FeedPush) -> None:
        only = self.options.skus
        after = 0
        while True:
            rows = self.repo.pending_media(after_id=after, limit=BATCH, only=only)
            if not rows:
                return
            after = rows[-1]["id"]
            if self.options.dry_run:
                for row in rows:
                    sink = self.options.dry_run_sink
                    if sink is not None:
                        action = "upload" if row["status"] == "pending" else "remove"
                        sink(
                            {
                                "feed": "assets",
                                "sku": row["product_sku"],
                                "action": action,
                                "media": row["media_code"],
                            }
                        )
                continue
            metas = {row["media_code"]: self.repo.get("assets", row["media_code"]) for row in rows}
            futures = [
                self.pool.submit(self._media_one, row, metas[row["media_code"]]) for row in rows
            ]
            events = []
            for row, future in zip(rows, futures, strict=True):
                try:
                    entry_id, error = future.result()
                except MagentoError:
                    self.repo.commit()
                    raise
                self.repo.media_done(row["id"], entry_id, error)
                action = "error" if error else ("removed" if entry_id is None else "uploaded")
                if error:
                    counts.failed += 1
                    if len(self.report.errors) < 20:
                        self.report.errors.append(
                            {"feed": "assets", "code": row["media_code"], "message": error}
                        )
                elif entry_id is None:
                    counts.updated += 1
                else:
                    counts.created += 1
                events.append(
                    LogEvent("assets", "product_media", row["product_sku"], action, error)
                )
            if self.report.run_id is not None:
                self.repo.log_events(self.report.run_id, events)
            self.repo.commit()

    def _media_one(
        self, row: dict[str, Any], staged: dict[str, Any] | None
    ) -> tuple[str | None, str | None]:
        client = self._worker_client()
        try:
            if row["status"] == "remove":
                if row["entry_id"]:
                    client.delete_media(row["product_sku"], int(row["entry_id"]))
                return None, None
            if staged is None:
                return None, f"media file {row['media_code']} is not staged (import:full --assets)"
            meta = orjson.loads(staged["data"])
            content = self._media_content(meta)
            entry = media_entry(meta, content, row["position"], row["label"])
            return str(client.add_media(row["product_sku"], entry)), None
        except ItemRejected as exc:
            return None, exc.message

    def _media_content(self, meta: dict[str, Any]) -> bytes:
        code = str(meta["code"])
        cached = self._media_cache.get(code)
        if cached is not None:
            return cached
        if self.pim is None:
            raise MagentoError("images need the PIM: set [pim] base_url to download them")
        content = fetch_media(self.pim, meta)
        with self._clients_lock:
            # Media codes embed the content's sha1: one download serves every product using it.
            if len(self._media_cache) > 64:
                self._media_cache.pop(next(iter(self._media_cache)))
            self._media_cache[code] = content
        return content

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


__all__ = [
    "FeedPush",
    "PushOptions",
    "PushReport",
    "order_push_feeds",
    "run_push",
    "send_store_values",
]
