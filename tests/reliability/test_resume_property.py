"""Stop, then resume, equals one uninterrupted run: for a push stopped at any product save and
for an import stopped after any batch, whichever point hypothesis picks.

The stop is what cron or an operator sends: SIGTERM to this process (the run installs its
handler in the main thread, where hypothesis runs the test), and the run stops after the batch
it is in. A push with one worker is stopped after its k-th product save; an import is stopped
after its k-th committed batch (`[staging] batch_size` 3). Then the same command runs again,
resumes the stopped run, and must leave exactly what one uninterrupted run leaves: the same
Magento (same products, categories, options, images, even the same ids, since one worker saves
in the same order) with each SKU saved as often; or the same staged rows (code, hash, status).

The push's batch of outcomes is a constant (200 rows, more than this catalog's products): it is
4 here, so that a stop also lands inside an entity, between two of its batches.
SIGKILL (no chance to finish the batch) is tests/reliability/test_crash_safety.py.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from pimsync import pipeline
from pimsync.app import App
from pimsync.errors import InterruptedRunError
from pimsync.pipeline import push_media, push_runner
from pimsync.pipeline.fetch import ImportObserver
from pimsync.pipeline.overlap import prefetch
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.helpers import mark_all_synced
from tests.reliability.crash_support import Rows, differences, edit_pim, runs, staged
from tests.reliability.support import (
    assert_everything_synced,
    build_app,
    create,
    last_run,
    magento_state,
)

ONE_WORKER = {"PIMSYNC_MAGENTO__CONCURRENCY": "1"}
SMALL_BATCHES = {"PIMSYNC_STAGING__BATCH_SIZE": "3", "PIMSYNC_PIM__PAGE_SIZE": "5"}
PUSH_BATCH = 4
EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # explaining: minutes
)
PRODUCT_SAVE = re.compile(r"/rest/\w+/V1/products/[^/]+")  # a save, on any store view
PIM_PRODUCTS = 20


@pytest.fixture(scope="module", autouse=True)
def small_push_batches() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(push_runner, "BATCH", PUSH_BATCH)
        patch.setattr(push_media, "BATCH", PUSH_BATCH)
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory for the examples' staging files (hypothesis runs many per test)."""
    yield tmp_path_factory.mktemp("examples")


_files = itertools.count()


def fresh_copy(source: Path, workdir: Path) -> str:
    target = workdir / f"staging-{next(_files)}.db"
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


# -- the push ---------------------------------------------------------------------------------


class StopAfter:
    """Magento, with SIGTERM sent to this process right after the `n`-th product save."""

    def __init__(self, magento: FakeMagento, n: int) -> None:
        self.magento, self.n, self.saves = magento, n, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = self.magento(request)
        if request.method == "PUT" and PRODUCT_SAVE.fullmatch(request.url.path):
            self.saves += 1
            if self.saves == self.n:
                os.kill(os.getpid(), signal.SIGTERM)
        return response


@pytest.fixture(scope="module")
def uninterrupted_push(imported: Path, push_pim: FakePim, workdir: Path) -> Iterator[FakeMagento]:
    with FakeMagento() as magento:
        app = build_app(fresh_copy(imported, workdir), push_pim, magento, **ONE_WORKER)
        assert create(app).exit_code == 0
        app.close()
        yield magento


@given(data=st.data())
@EXAMPLES
def test_a_push_stopped_at_any_save_then_resumed_is_one_uninterrupted_push(
    data: st.DataObject,
    imported: Path,
    push_pim: FakePim,
    uninterrupted_push: FakeMagento,
    workdir: Path,
):
    reference = uninterrupted_push
    saves = sum(reference.writes_by_sku.values())
    k = data.draw(st.integers(1, saves), label="stop after product save")
    staging_url = fresh_copy(imported, workdir)
    with FakeMagento() as magento:
        app = build_app(staging_url, push_pim, StopAfter(magento, k), **ONE_WORKER)
        try:
            create(app)
        except InterruptedRunError as stopped:
            assert stopped.exit_code == 130
            assert last_run(app)["status"] == "stopped"
            event("stopped")
        else:
            event("the stop came after the last batch: the run ended")
        finally:
            app.close()
        app = build_app(staging_url, push_pim, magento, **ONE_WORKER)
        report = create(app)
        assert (report.exit_code, report.failed) == (0, 0), report.errors
        assert_everything_synced(app)
        app.close()
        assert magento_state(magento) == magento_state(reference)
        assert magento.writes_by_sku == reference.writes_by_sku


# -- the import -------------------------------------------------------------------------------


class Batches(ImportObserver):
    """Counts the committed batches; SIGTERM to this process once the `stop_after`-th is."""

    def __init__(self, stop_after: int = 0) -> None:
        self.stop_after, self.committed = stop_after, 0

    def staged(self, feed: str, entity: str, count: int) -> None:
        self.committed += 1
        if self.committed == self.stop_after:
            os.kill(os.getpid(), signal.SIGTERM)


def run_import(staging_url: str, pim: FakePim, kind: str, observer: ImportObserver) -> App:
    """An import; the App, for the caller to read staging and close."""
    app = build_app(staging_url, pim, **SMALL_BATCHES)
    run = pipeline.run_full_import if kind == "import:full" else pipeline.run_incremental_import
    try:
        report = run(app, observer=observer)
    except BaseException:
        app.close()
        raise
    assert report.exit_code == 0
    return app


@dataclass
class Import:
    """An import to stop: the staging file it starts from, the PIM it reads, and what one
    uninterrupted run stages and in how many batches."""

    start: Path
    pim: FakePim
    rows: Rows
    batches: int


def uninterrupted(start: Path, pim: FakePim, kind: str, workdir: Path) -> tuple[Import, App]:
    batches = Batches()
    app = run_import(fresh_copy(start, workdir), pim, kind, batches)
    return Import(start, pim, staged(app), batches.committed), app


@pytest.fixture(scope="module")
def imports(workdir: Path) -> dict[str, Import]:
    """import:full from an empty staging database; import:incremental after PIM edits (in
    every feed), from that full import marked pushed."""
    empty = workdir / "empty.db"
    app = build_app(f"sqlite:///{empty}", FakePim(products=0))
    app.engine()  # an empty staging database, migrated
    app.close()
    full, app = uninterrupted(empty, FakePim(products=PIM_PRODUCTS), "import:full", workdir)
    mark_all_synced(app)
    synced = Path(app.config.staging.url.removeprefix("sqlite:///"))
    app.close()
    edited = FakePim(products=PIM_PRODUCTS)  # the same catalog, then edited
    edit_pim(edited, random.Random(6))
    incremental, app = uninterrupted(synced, edited, "import:incremental", workdir)
    app.close()
    return {"import:full": full, "import:incremental": incremental}


@given(data=st.data(), kind=st.sampled_from(["import:full", "import:incremental"]))
@EXAMPLES
def test_an_import_stopped_after_any_batch_then_resumed_is_one_uninterrupted_import(
    data: st.DataObject, kind: str, imports: dict[str, Import], workdir: Path
):
    start = imports[kind]
    k = data.draw(st.integers(1, start.batches), label="stop after batch")
    staging_url = fresh_copy(start.start, workdir)
    with pytest.raises(InterruptedRunError) as stopped:
        run_import(staging_url, start.pim, kind, Batches(stop_after=k))
    assert stopped.value.exit_code == 130
    app = run_import(staging_url, start.pim, kind, ImportObserver())
    *_, stopped_run, resumed = runs(app)
    assert (stopped_run["kind"], stopped_run["status"]) == (kind, "stopped")
    assert (resumed["status"], resumed["resumed_from"]) == ("success", stopped_run["id"])
    assert differences(staged(app), start.rows) == {}
    app.close()


def test_an_import_stopped_after_the_listing_was_read_leaves_no_reader_behind():
    """What the examples above that stop early in a short listing hit: each such stop took 5 s
    more. The reader has read every page (two wait in its buffer, its end marker waits for
    room) when the import stops; the reader must end with it."""
    read_all = threading.Event()

    def pages() -> Iterator[list[int]]:
        yield from ([1], [2], [3])
        read_all.set()  # resumed after the last page: it is in the buffer

    before = set(threading.enumerate())
    listing = prefetch(pages())
    assert isinstance(listing, Generator)
    assert next(listing) == [1]
    assert read_all.wait(30)
    listing.close()  # the consumer stops here, as a StopRequested at a checkpoint does
    assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []
