"""Bulk mode: product saves through Magento's async bulk API.

Global values first, then each store view's changed values; a variant is linked to its parent
once its save completed. The requests of a batch are submitted and waited for together on the
worker pool, since each costs Magento's latency; results map back to rows by request index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pimsync.magento.http import ItemRejected
from pimsync.magento.mapping import MissingDependencyError, Payloads
from pimsync.magento.models import BulkSubmission, OperationResult
from pimsync.pipeline.push_items import (
    Outcome,
    link_variant,
    payload_for,
    previous_payload,
    store_changes,
)

if TYPE_CHECKING:
    from pimsync.pipeline.push_runner import Runner


class BulkPush:
    """The bulk half of a push run; `outcomes` is called once per batch of rows."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def outcomes(self, entity: str, rows: list[dict[str, Any]]) -> list[Outcome]:
        """Product saves through the async bulk API, in batches of max_items_per_request.

        Global values first, then each store view's changed values; a variant is linked to its
        parent once its save completed. Results map back to rows by request index.
        """
        outcomes: dict[str, Outcome] = {}
        ready: list[tuple[dict[str, Any], Payloads]] = []
        for row in rows:
            try:
                payloads = payload_for(entity, row, self.runner.context)
            except MissingDependencyError as exc:
                outcomes[row["code"]] = Outcome(
                    row["code"], "error", row["hash"], message=f"waiting: {exc}"
                )
                continue
            if payloads is None:
                outcomes[row["code"]] = Outcome(row["code"], "ignored", row["hash"])
            elif payloads.hash() == row["payload_hash"] and not self.runner.context.force:
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
        futures = [self.runner.pool.submit(self._link, row, payloads) for row, payloads in links]
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
        size = self.runner.config.magento.max_items_per_request
        pending = list(items)
        for attempt in range(3):  # retriable operations (deadlocks) go round again
            retry: list[tuple[dict[str, Any], dict[str, Any]]] = []
            # All requests go out together, and are waited for together, on the worker pool:
            # each one costs Magento's latency, and the consumer works on all of them at once.
            chunks = [pending[start : start + size] for start in range(0, len(pending), size)]
            submissions = list(self.runner.pool.map(lambda c: self._bulk_submit(store, c), chunks))
            submitted = []
            for chunk, submission in zip(chunks, submissions, strict=True):
                if isinstance(submission, ItemRejected):
                    for row, _ in chunk:
                        outcomes[row["code"]] = Outcome(
                            row["code"], "error", row["hash"], message=submission.message
                        )
                else:
                    submitted.append((chunk, submission))
            waits = list(self.runner.pool.map(self._wait, [sub for _, sub in submitted]))
            for (chunk, submission), waited in zip(submitted, waits, strict=True):
                results: list[OperationResult] = []
                if isinstance(waited, ItemRejected):  # the status could not be read
                    for index in submission.accepted:
                        row = chunk[index][0]
                        outcomes[row["code"]] = Outcome(
                            row["code"], "error", row["hash"], message=waited.message
                        )
                else:
                    results = waited
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
            return self.runner.worker_client().bulk_submit(store, "products/bySku", body, "PUT")
        except ItemRejected as exc:  # the whole request was refused: its items' error
            return exc

    def _wait(self, submission: BulkSubmission) -> list[OperationResult] | ItemRejected:
        try:
            return self.runner.worker_client().bulk_wait(submission.bulk_uuid, poll_interval=0.2)
        except ItemRejected as exc:  # an unreadable status: the items' error, not a crash
            return exc

    def _link(self, row: dict[str, Any], payloads: Payloads) -> str | None:
        try:
            link_variant(
                self.runner.worker_client(),
                payloads.extra["parent"],
                payloads.global_["sku"],
                self.runner.context,
            )
        except (ItemRejected, MissingDependencyError) as exc:
            return getattr(exc, "message", None) or str(exc)
        return None
