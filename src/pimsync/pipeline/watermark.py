"""Watermarks: from which PIM instant an incremental import asks for changes.

The watermark of a feed is the PIM's own clock when that feed's import began, never the local
clock and never the largest `updated` seen: `search_after` scans by id, so an item changed
during the scan can sit behind the cursor with an `updated` below the newest one seen. Starting
the next scan from the start of this one catches it (reference, akeneo-rest-api.md §8).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# `updated` and the Date header both have whole seconds and the filter is a strict `>`: an item
# saved in the same second the feed began would be missed without at least this much overlap.
MINIMUM_OVERLAP_SECONDS = 1


def since_for(watermark: datetime | None, overlap_seconds: int) -> datetime | None:
    """The `updated >` bound of the next incremental: the watermark minus the safety overlap.

    The overlap covers Elasticsearch's refresh lag and clock skew; it is never under one second.
    """
    if watermark is None:
        return None
    return watermark - timedelta(seconds=max(overlap_seconds, MINIMUM_OVERLAP_SECONDS))


def next_watermark(previous: datetime | None, feed_started: datetime) -> datetime:
    """The watermark to store once a feed's import completed; it never moves backwards."""
    if previous is not None and previous > feed_started:
        return previous
    return feed_started
