"""The cyclic GC's tuning for imports and pushes (`gc_tuned_for_streaming`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pimsync.gc_tuning import gc_tuned_for_streaming


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations collected while the test runs, with automatic collection off, so only
    the collections the code under test asks for are seen."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)
        if was_enabled:
            gc.enable()


def test_the_block_freezes_tunes_and_restores(collections: list[int]) -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    with gc_tuned_for_streaming(5_000):
        assert gc.get_threshold() == (5_000, 20, 100)
        assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert collections == [2]  # one full collection first, so no garbage is frozen


def test_without_the_first_collection_nothing_is_collected(collections: list[int]) -> None:
    with gc_tuned_for_streaming(5_000, collect_first=False):
        assert gc.get_threshold() == (5_000, 20, 100)
        assert gc.get_freeze_count() > 0
    assert collections == []


def test_a_nested_block_keeps_the_outer_settings_until_the_outer_ends(
    collections: list[int],
) -> None:
    # run_worker inside a worker forked by run_push: the fork inherits the outer block.
    before = gc.get_threshold()
    with gc_tuned_for_streaming(5_000, collect_first=False):
        frozen = gc.get_freeze_count()
        with gc_tuned_for_streaming(50_000):
            assert gc.get_threshold() == (5_000, 20, 100)
        assert gc.get_threshold() == (5_000, 20, 100)
        assert gc.get_freeze_count() == frozen  # not unfrozen by the inner block's end
    assert gc.get_threshold() == before
    assert collections == []


def test_settings_are_restored_when_the_block_raises() -> None:
    before = gc.get_threshold()
    with (
        pytest.raises(RuntimeError),
        gc_tuned_for_streaming(5_000, collect_first=False),
        gc_tuned_for_streaming(5_000),
    ):
        raise RuntimeError("boom")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    with gc_tuned_for_streaming(7_000, collect_first=False):  # and a later block tunes again
        assert gc.get_threshold() == (7_000, 20, 100)


def test_blocks_that_close_out_of_order_restore_when_the_last_closes() -> None:
    # A coordinator and its workers run as threads of one process in tests (and a worker may
    # outlive the block that started first): the first block to close must not restore.
    before = gc.get_threshold()
    first = gc_tuned_for_streaming(5_000, collect_first=False)
    second = gc_tuned_for_streaming(5_000, collect_first=False)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == (5_000, 20, 100)
    assert gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    with gc_tuned_for_streaming(7_000, collect_first=False):  # and a later block tunes again
        assert gc.get_threshold() == (7_000, 20, 100)
