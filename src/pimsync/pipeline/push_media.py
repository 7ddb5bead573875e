"""The assets feed: images downloaded from the PIM and uploaded to each product's gallery.

`product_media` is the queue: the product push records which images each product should have,
and this uploads the missing ones and removes the ones it should no longer have. A product
payload never carries `media_gallery_entries` (an empty list deletes every image).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import orjson

from pimsync.errors import MagentoError
from pimsync.magento.http import ItemRejected
from pimsync.pipeline.push_items import BATCH, fetch_media, media_entry
from pimsync.pipeline.report import FeedPush
from pimsync.staging.runs import LogEvent

if TYPE_CHECKING:
    from pimsync.pipeline.push_runner import Runner

# Media codes embed the content's sha1: one download serves every product using the file.
CACHED_FILES = 64


class MediaPush:
    """Uploads and removals of product images, on the run's worker pool."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._media_cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def push(self, counts: FeedPush) -> None:
        only = self.runner.options.skus
        after = 0
        while True:
            rows = self.runner.repo.pending_media(after_id=after, limit=BATCH, only=only)
            if not rows:
                if not self.runner.options.dry_run:
                    self.runner.repo.mark_assets_uploaded()
                    self.runner.repo.commit()
                return
            after = rows[-1]["id"]
            if self.runner.options.dry_run:
                for row in rows:
                    sink = self.runner.options.dry_run_sink
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
            self.runner.repo.media_uploading([r["id"] for r in rows if r["status"] == "pending"])
            metas = {
                row["media_code"]: self.runner.repo.get("assets", row["media_code"]) for row in rows
            }
            futures = [
                self.runner.pool.submit(self._media_one, row, metas[row["media_code"]])
                for row in rows
            ]
            events = []
            for row, future in zip(rows, futures, strict=True):
                try:
                    entry_id, error = future.result()
                except MagentoError:
                    self.runner.repo.commit()
                    raise
                self.runner.repo.media_done(row["id"], entry_id, error)
                action = "error" if error else ("removed" if entry_id is None else "uploaded")
                if error:
                    counts.failed += 1
                    self.runner.note_error("assets", row["media_code"], error)
                elif entry_id is None:
                    counts.updated += 1
                else:
                    counts.created += 1
                events.append(
                    LogEvent("assets", "product_media", row["product_sku"], action, error)
                )
            if self.runner.report.run_id is not None:
                self.runner.repo.log_events(self.runner.report.run_id, events)
            self.runner.repo.commit()

    def _media_one(
        self, row: dict[str, Any], staged: dict[str, Any] | None
    ) -> tuple[str | None, str | None]:
        client = self.runner.worker_client()
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
            if row["status"] == "uploading":  # a run died waiting for this upload's answer
                found = client.find_media(row["product_sku"], entry)
                if found is not None:
                    return str(found), None
            return str(client.add_media(row["product_sku"], entry)), None
        except ItemRejected as exc:
            return None, exc.message

    def _media_content(self, meta: dict[str, Any]) -> bytes:
        code = str(meta["code"])
        cached = self._media_cache.get(code)
        if cached is not None:
            return cached
        if self.runner.pim is None:
            raise MagentoError("images need the PIM: set [pim] base_url to download them")
        content = fetch_media(self.runner.pim, meta)
        with self._lock:
            # Media codes embed the content's sha1: one download serves every product using it.
            if len(self._media_cache) > 64:
                self._media_cache.pop(next(iter(self._media_cache)))
            self._media_cache[code] = content
        return content
