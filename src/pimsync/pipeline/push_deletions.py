"""Exporting PIM deletions to Magento: disable or delete, per feed, behind a safety threshold.

A full import flags what the PIM no longer has as `deleted_in_pim`; by default that is where it
ends (`[sync] deletions` is "ignore" for every feed). With "disable" or "delete", `create`
carries the deletion to Magento after the feed's updates, unless it would remove more than
`[sync] deletion_threshold` of what the feed has in Magento: a PIM that answers an empty or
truncated catalog must not empty the shop, so the whole feed's deletions are refused, with a
message, and wait for an operator. A forced resync never exports deletions (Sales Layer, rule
05), and `create --no-deletions` skips them for one run.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pimsync.config import Config
from pimsync.magento.client import MagentoClient
from pimsync.magento.http import ItemRejected
from pimsync.pipeline.push_items import sku_of
from pimsync.pipeline.report import FeedPush
from pimsync.staging.repository import StagingRepository
from pimsync.staging.runs import LogEvent

if TYPE_CHECKING:
    from pimsync.pipeline.push_runner import Runner

# The rows whose deletion each feed exports (attributes and assets never: see DeletionsConfig).
DELETION_ENTITIES: dict[str, list[tuple[str, bool | None]]] = {
    "categories": [("categories", None)],
    # Root models only: a sub model is never a Magento product of its own.
    "products": [("product_models", False), ("products", False)],
    "variants": [("products", True)],
}


def deletion_mode(config: Config, feed: str) -> str:
    """ "ignore", "disable" or "delete" for the feed (always "ignore" where it does not apply)."""
    if feed not in DELETION_ENTITIES:
        return "ignore"
    return str(getattr(config.sync.deletions, feed))


def pending_deletions(repo: StagingRepository, config: Config, feed: str) -> int:
    """How many deletions the feed would export now (0 when its mode is "ignore")."""
    if deletion_mode(config, feed) == "ignore":
        return 0
    return sum(
        repo.count_pending_deletions(entity, has_parent=has_parent)
        for entity, has_parent in DELETION_ENTITIES[feed]
    )


@dataclass(frozen=True, slots=True)
class _Done:
    code: str
    error: str | None = None


class DeletionPush:
    """The deletion step of one push run; shares the run's worker pool and bookkeeping."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def push(self, feed: str, counts: FeedPush) -> None:
        runner = self.runner
        repo, config = runner.repo, runner.config
        mode = deletion_mode(config, feed)
        pending = pending_deletions(repo, config, feed)
        if mode == "ignore" or pending == 0:
            return
        in_magento = sum(
            repo.count_in_magento(entity, has_parent=has_parent)
            for entity, has_parent in DELETION_ENTITIES[feed]
        )
        threshold = config.sync.deletion_threshold
        if pending > threshold * in_magento:
            counts.deletions_refused = pending
            runner.report.notes.append(
                f"{feed}: {pending:,} deletion(s) refused: that is "
                f"{pending / max(in_magento, 1):.1%} of the {in_magento:,} item(s) Magento has, "
                f"over [sync] deletion_threshold ({threshold:.0%}); check the PIM, then raise "
                "the threshold for one run (PIMSYNC_SYNC__DELETION_THRESHOLD) or keep them "
                "with `create --no-deletions`"
            )
            return
        for entity, has_parent in DELETION_ENTITIES[feed]:
            after = 0
            while True:
                rows = repo.pending_deletions(entity, has_parent=has_parent, after_id=after)
                if not rows:
                    break
                after = rows[-1]["id"]
                if runner.options.dry_run:
                    self._preview(feed, entity, mode, rows)
                    continue
                futures: list[Future[_Done]] = [
                    runner.pool.submit(self._remove, entity, row, mode) for row in rows
                ]
                self._record(feed, entity, mode, [future.result() for future in futures], counts)
                runner.checkpoint()

    def _preview(self, feed: str, entity: str, mode: str, rows: list[dict[str, Any]]) -> None:
        sink = self.runner.options.dry_run_sink
        for row in rows:
            if sink is not None:
                sink(
                    {
                        "feed": feed,
                        "entity": entity,
                        "code": row["code"],
                        "sku": sku_of(entity, row),
                        "action": mode,
                        "payload": None,
                    }
                )

    def _remove(self, entity: str, row: dict[str, Any], mode: str) -> _Done:
        client: MagentoClient = self.runner.worker_client()
        try:
            if entity == "categories":
                if row["magento_id"] is None:
                    return _Done(row["code"])  # Magento never had it
                category_id = int(row["magento_id"])
                if mode == "delete":
                    client.delete_category(category_id)
                else:
                    client.disable_category(category_id)
            elif mode == "delete":
                client.delete_product(sku_of(entity, row))
            else:
                client.disable_product(sku_of(entity, row))
        except ItemRejected as exc:
            return _Done(row["code"], exc.message)
        return _Done(row["code"])

    def _record(
        self, feed: str, entity: str, mode: str, done: list[_Done], counts: FeedPush
    ) -> None:
        runner = self.runner
        action = "deleted" if mode == "delete" else "disabled"
        events = []
        for outcome in done:
            if outcome.error is None:
                runner.repo.mark_deletion_exported(entity, outcome.code, deleted=mode == "delete")
                counts.deleted += 1
                events.append(LogEvent(feed, entity, outcome.code, action))
                continue
            counts.failed += 1
            message = f"{mode} failed: {outcome.error}"
            runner.repo.record_deletion_error(entity, outcome.code, message)
            events.append(LogEvent(feed, entity, outcome.code, "error", message))
            runner.note_error(feed, outcome.code, message)
        if runner.report.run_id is not None:
            runner.repo.log_events(runner.report.run_id, events)
        runner.repo.commit()
