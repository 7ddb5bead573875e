"""Stage 1: fetch PIM data into the staging tables.

Each feed reads its entities page by page (the client's listings), validates and hashes every
record (preparers.py) and writes them in batches (`_stage_entity`), committing as it goes:
memory holds a few pages, never the catalog, and a run that stops keeps what it committed. A
feed's watermark moves only when the feed completed; a full import flags what it did not see
as deleted in the PIM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pimsync.config import FEEDS, Config
from pimsync.lock import RunLock
from pimsync.pim.client import PimClient
from pimsync.pim.records import Item, Rejected
from pimsync.pipeline.overlap import OneInFlight
from pimsync.pipeline.preparers import PagePreparer
from pimsync.pipeline.report import FeedReport, RunReport
from pimsync.pipeline.watermark import next_watermark, since_for
from pimsync.staging.prepare import StagedItem, raw_json
from pimsync.staging.repository import StagingRepository
from pimsync.staging.runs import LogEvent
from pimsync.staging.tables import Status

SELECT_TYPES = frozenset({"pim_catalog_simpleselect", "pim_catalog_multiselect"})
MEDIA_TYPES = frozenset({"pim_catalog_image", "pim_catalog_file"})
IDENTIFIER_TYPE = "pim_catalog_identifier"


class ImportObserver:
    """Receives progress as a feed stages items; the CLI draws it, tests and cron ignore it."""

    def feed_started(self, feed: str, mode: str) -> None:
        """A feed began."""

    def staged(self, feed: str, entity: str, count: int) -> None:
        """`count` more records of `entity` were written."""

    def feed_finished(self, report: FeedReport) -> None:
        """A feed completed."""


@dataclass
class ImportContext:
    """What every feed of one import run shares."""

    client: PimClient
    repo: StagingRepository
    config: Config
    run_id: int
    full: bool
    observer: ImportObserver
    lock: RunLock | None = None  # asked between batches whether the run must stop
    # Validates and hashes pages, in processes of its own for large listings.
    preparer: PagePreparer = field(default_factory=lambda: PagePreparer(0))

    def checkpoint(self) -> None:
        if self.lock is not None:
            self.lock.checkpoint()


def order_feeds(feeds: Iterable[str]) -> list[str]:
    """The requested feeds in sync order; none means all of them."""
    wanted = set(feeds) or set(FEEDS)
    return [feed for feed in FEEDS if feed in wanted]


def import_feeds(context: ImportContext, feeds: Iterable[str], report: RunReport) -> None:
    """Import each of `feeds` (already in order), recording each in `report` as it completes."""
    for feed in feeds:
        import_feed(context, feed, report)


def import_feed(context: ImportContext, feed: str, run_report: RunReport) -> FeedReport:
    """Import one feed; its watermark moves only if it completes."""
    repo, client = context.repo, context.client
    started_clock = time.monotonic()
    previous = repo.last_watermark(feed)
    full = context.full or previous is None
    report = FeedReport(feed=feed, mode="full" if full else "incremental")
    run_report.feeds[feed] = report  # counted as it goes, so a failed run reports its progress
    if not context.full and previous is None:
        report.note = "no earlier import of this feed: read in full"
    context.observer.feed_started(feed, report.mode)
    # The PIM's clock before the first read: anything changed after it is caught next time.
    pim_started = client.server_now()
    since = None if full else since_for(previous, context.config.sync.overlap_seconds)
    importer = FEED_IMPORTERS[feed]
    importer(context, report, since, full)
    watermark = next_watermark(previous, pim_started)
    repo.record_watermark(context.run_id, feed, watermark)
    repo.commit()
    report.watermark = watermark.isoformat()
    report.seconds = round(time.monotonic() - started_clock, 3)
    report.completed = True
    context.observer.feed_finished(report)
    return report


# -- the feeds -----------------------------------------------------------------------------


def _import_attributes(
    context: ImportContext, report: FeedReport, since: datetime | None, full: bool
) -> None:
    client, repo = context.client, context.repo
    _stage_entity(context, report, "attributes", client.attributes(since), reconcile=full)
    # Options and family variants have no date filter: they are re-read in full every time and
    # hash-diffed, so their deletions can be reconciled on every run (within their parents).
    select_attributes = [
        code
        for code, data in repo.records("attributes", exclude_status=[Status.DELETED_IN_PIM])
        if data.get("type") in SELECT_TYPES
    ]
    repo.begin_seen("attribute_options")
    for attribute in select_attributes:
        _stage_entity(
            context, report, "attribute_options", client.attribute_options(attribute), track=False
        )
    _reconcile(context, report, "attribute_options", within_parents=select_attributes)
    _stage_entity(context, report, "families", client.families(since), reconcile=full)
    families = repo.codes("families", exclude_status=[Status.DELETED_IN_PIM])
    repo.begin_seen("family_variants")
    for family in families:
        _stage_entity(
            context, report, "family_variants", client.family_variants(family), track=False
        )
    _reconcile(context, report, "family_variants", within_parents=families)


def _import_categories(
    context: ImportContext, report: FeedReport, since: datetime | None, full: bool
) -> None:
    categories = context.client.categories(since)
    _stage_entity(context, report, "categories", categories, reconcile=full)


def _import_products(
    context: ImportContext, report: FeedReport, since: datetime | None, full: bool
) -> None:
    client = context.client
    identifier_attribute = _identifier_attribute(context.repo)
    _stage_entity(context, report, "product_models", client.product_models(since), reconcile=full)
    _stage_entity(
        context,
        report,
        "products",
        client.products(since),
        reconcile=full,
        identifier_attribute=identifier_attribute,
    )


def _mark_parents(context: ImportContext, report: FeedReport, parents: set[str]) -> None:
    """A changed variant changes its configurable parent's children (Sales Layer rule 01), and
    a changed sub model its root: mark those parents, up to the root. Done batch by batch, so
    nothing accumulates over a million products."""
    parents |= context.repo.parents_of("product_models", parents)
    report.dependents_marked += len(context.repo.mark_needs_update("product_models", parents))


def _import_assets(
    context: ImportContext, report: FeedReport, since: datetime | None, full: bool
) -> None:
    client, repo = context.client, context.repo
    if full:
        _stage_entity(context, report, "assets", client.media_files(), reconcile=True)
        return
    # Media files have no date filter, and a media code embeds its content's sha1: an unchanged
    # code is an unchanged file. So an incremental reads only the codes that products staged
    # since then reference and that staging does not know yet.
    wanted = sorted(repo.unknown_codes("assets", _media_codes_referenced(repo)))
    _stage_entity(context, report, "assets", _one_per_page(client.media_file(c) for c in wanted))


def _one_per_page(items: Iterable[Item]) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= 100:
            yield batch
            batch = []
    if batch:
        yield batch


FEED_IMPORTERS: dict[str, Callable[[ImportContext, FeedReport, datetime | None, bool], None]] = {
    "attributes": _import_attributes,
    "categories": _import_categories,
    "products": _import_products,
    "assets": _import_assets,
}


# -- staging -------------------------------------------------------------------------------


def _stage_entity(
    context: ImportContext,
    report: FeedReport,
    entity: str,
    pages: Iterator[Sequence[Item]],
    *,
    reconcile: bool = False,
    track: bool = True,
    identifier_attribute: str = "sku",
) -> None:
    """Stage every page of one entity, batch by batch.

    Pages come validated and hashed from the run's preparer (in other processes for a large
    listing, preparers.py). Each batch is written and committed in a writer thread while the
    next one is gathered (overlap.py); only that thread touches the connection until the
    listing ends. With `reconcile`, a listing that completes flags the rows it did not see as
    deleted.
    `track=False` means the caller opened the seen-set itself (several listings, one entity).
    """
    repo = context.repo
    if reconcile and track:
        repo.begin_seen(entity)
    batch_size = context.config.staging.batch_size
    batch = _Batch()
    writer = OneInFlight("pimsync-writer")
    in_flight = 0  # records of the batch being written, reported once it is committed

    def hand_over() -> None:
        nonlocal batch, in_flight
        full, batch = batch, _Batch()
        writer.submit(lambda: _write_batch(context, report, entity, full))  # after the last
        if in_flight:
            context.observer.staged(report.feed, entity, in_flight)
        in_flight = len(full.items) + len(full.rejected)
        context.checkpoint()

    try:
        for page in context.preparer.prepared(pages, identifier_attribute):
            for item in page:
                report.fetched += 1
                if isinstance(item, Rejected):
                    report.quarantined += 1
                    batch.rejected.append(item)
                    continue
                batch.items.append(item)
            if len(batch.items) >= batch_size:
                hand_over()
        hand_over()
        writer.wait()
        context.observer.staged(report.feed, entity, in_flight)
        context.checkpoint()  # as after every batch: a stop asked for now is honoured now
    except BaseException:
        writer.close()
        repo.rollback()
        repo.drop_seen(entity)
        raise
    writer.close()
    if reconcile and track:
        _reconcile(context, report, entity)


@dataclass
class _Batch:
    """What one commit writes: staged items, and the records quarantined among them."""

    items: list[StagedItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _write_batch(context: ImportContext, report: FeedReport, entity: str, batch: _Batch) -> None:
    """Write one batch and commit it (in the writer thread)."""
    repo = context.repo
    events: list[LogEvent] = []
    for rejected in batch.rejected:
        repo.quarantine(entity, rejected.code, raw_json(rejected.raw), rejected.reason)
        events.append(LogEvent(report.feed, entity, rejected.code, "quarantined", rejected.reason))
    counts = repo.upsert_fetched(entity, batch.items)
    report.new += counts.new
    report.changed += counts.changed
    report.unchanged += counts.unchanged
    if entity in ("products", "product_models") and counts.changed_codes:
        changed = set(counts.changed_codes)
        parents = {i.parent_code for i in batch.items if i.code in changed and i.parent_code}
        if parents:
            _mark_parents(context, report, parents)
    repo.log_events(context.run_id, events)
    repo.commit()


def _reconcile(
    context: ImportContext,
    report: FeedReport,
    entity: str,
    within_parents: Iterable[str] | None = None,
) -> None:
    deleted = context.repo.mark_unseen_deleted(entity, within_parents=within_parents)
    report.deleted_in_pim += len(deleted)
    context.repo.log_events(
        context.run_id,
        [LogEvent(report.feed, entity, code, "deleted_in_pim") for code in deleted],
    )
    if entity == "products" and deleted:
        _mark_parents(context, report, context.repo.parents_of("products", deleted))
    context.repo.commit()


def _identifier_attribute(repo: StagingRepository) -> str:
    """The attribute holding a product's identifier (its SKU) on `/products-uuid`."""
    for code, data in repo.records("attributes"):
        if data.get("type") == IDENTIFIER_TYPE:
            return code
    return "sku"


def _media_codes_referenced(repo: StagingRepository) -> set[str]:
    """Media file codes that staged products and models use in image or file attributes."""
    media_attributes = {
        code for code, data in repo.records("attributes") if data.get("type") in MEDIA_TYPES
    }
    since = repo.feed_last_imported("assets")
    codes: set[str] = set()
    for entity in ("product_models", "products"):
        for data in repo.records_imported_since(entity, since):
            values = data.get("values")
            if not isinstance(values, dict):
                continue
            for attribute in media_attributes:
                for entry in values.get(attribute) or []:
                    if isinstance(entry, dict) and isinstance(entry.get("data"), str):
                        codes.add(entry["data"])
    return codes
