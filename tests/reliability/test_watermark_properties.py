"""Watermarks never move backwards, and an incremental always asks from before the last one.

The rule (src/pimsync/pipeline/watermark.py): a feed's watermark is the PIM's clock when its
import began, kept only when larger than the stored one; the next incremental asks for
`updated > watermark - max(overlap, 1 s)`. Checked on the pure functions, and end to end against
the mock PIM with its clock jumping forwards and backwards (a PIM whose clock is stepped back by
NTP), reading the bound from the request pimsync actually sent.

Related: tests/integration/test_import.py::test_watermark_is_the_pim_clock_minus_nothing and
test_an_item_changed_behind_the_cursor_is_caught_by_the_next_incremental;
tests/unit/test_repository.py::test_watermarks_are_per_feed_and_newest_wins.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from pimsync import pipeline
from pimsync.pipeline.watermark import MINIMUM_OVERLAP_SECONDS, next_watermark, since_for
from pimsync.staging.tables import sync_runs
from pimsync.testing.fake_pim import FakePim
from tests.reliability.support import build_app, watermark

instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
overlaps = st.integers(0, 3600)


@settings(max_examples=200, deadline=None)
@given(starts=st.lists(instants, min_size=1, max_size=20), overlap=overlaps)
def test_the_watermark_never_moves_backwards_and_since_stays_behind_it(starts, overlap):
    stored = None
    for started in starts:
        previous = stored
        stored = next_watermark(previous, started)
        assert stored == (started if previous is None else max(previous, started))
        since = since_for(stored, overlap)
        assert since is not None
        assert since <= stored - timedelta(seconds=overlap)
        assert stored - since >= timedelta(seconds=MINIMUM_OVERLAP_SECONDS)
    assert stored == max(starts)


def test_no_watermark_means_a_full_read():
    assert since_for(None, 120) is None


def categories_since(pim: FakePim) -> datetime | None:
    """The `updated >` bound of the last categories listing the PIM was asked for."""
    listing = [r for r in pim.requests if r.path == "/api/rest/v1/categories"][-1]
    if "search" not in listing.query:
        return None
    condition = orjson.loads(listing.query["search"])["updated"][0]
    assert condition["operator"] == ">"
    return datetime.fromisoformat(condition["value"])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one database, emptied
)
@given(
    jumps=st.lists(st.integers(-7200, 7200), min_size=2, max_size=4),
    overlap=st.integers(0, 300),
)
def test_imports_under_a_jumping_pim_clock(sqlite_url, jumps, overlap):
    pim = FakePim(products=0)
    pim.clock.freeze()
    app = build_app(sqlite_url, pim, PIMSYNC_SYNC__OVERLAP_SECONDS=str(overlap))
    with app.repository() as repo:  # no watermark from an earlier example
        repo.connection.execute(delete(sync_runs))
        repo.commit()
    pipeline.run_full_import(app, ["categories"])
    previous = watermark(app, "categories")
    assert previous == pim.clock.now().replace(microsecond=0)
    for jump in jumps:
        pim.clock.advance(jump)
        pim.reset_stats()
        pipeline.run_incremental_import(app, ["categories"])
        since = categories_since(pim)
        assert since is not None
        assert since <= previous - timedelta(seconds=overlap)
        assert since == previous - timedelta(seconds=max(overlap, MINIMUM_OVERLAP_SECONDS))
        current = watermark(app, "categories")
        assert current is not None and current >= previous  # never backwards
        assert current == max(previous, pim.clock.now().replace(microsecond=0))
        previous = current
    app.close()
