"""SIGKILL at any point of an import or a push, then the same command again: nothing is lost,
nothing is done twice, nothing is left half-done.

Each case starts a real `python -m pimsync` process (configured by environment only) against the
bundled mocks, served on loopback by this process, and kills it with SIGKILL from inside the
mock at an exact request: the N-th request of a kind (a products page, an option add, an image
upload...: every kind of request the run makes), N drawn by a seeded generator, so every run of
the suite kills at the same points and no timing is involved. A Magento write is killed either
before Magento handles it or just after (the write took effect, its answer is lost). Once the
process is dead, nothing more of it reaches the mocks (requests being handled finish, as on a
server).

Then the same command runs again (through the CLI, in this process) and must exit 0, and:

- staging is consistent: no run left in progress (the killed one is "stopped ... abandoned"),
  the lock released, no row claimed, no image upload left pending or in flight;
- no watermark skipped anything: every PIM record is staged with the hash and status of an
  uninterrupted import into another database, and an incremental import then finds nothing;
- after a push: everything is synced, Magento holds what a clean push leaves (compared by names,
  not ids), each product was created once (ids 1..N), no image was uploaded twice, and nothing
  recorded synced before the kill was saved again.

The matrix runs on SQLite; two points, drawn the same way, run on PostgreSQL.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pimsync import pipeline
from pimsync.app import App
from pimsync.cli import cli
from pimsync.staging.tables import ENTITIES, entity_tables, sync_lock
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import serve
from tests.conftest import PIM_ENV
from tests.helpers import mark_all_synced
from tests.reliability.crash_support import (
    MAGENTO_KINDS,
    Killer,
    Pim,
    Rows,
    catalog,
    differences,
    edit_pim,
    magento_kind,
    media_statuses,
    pim_kind,
    runs,
    served,
    sqlite_copy,
    staged,
    synced_skus,
)
from tests.reliability.support import (
    Handler,
    assert_each_product_created_once,
    assert_everything_synced,
    assert_synced_only_what_magento_holds,
    build_app,
    duplicates,
)

# Issue #6. `CRASH_SAFETY_SEED=n pytest ...` draws other points, to explore (ids name them).
SEED = int(os.environ.get("CRASH_SAFETY_SEED", "6"))
PRODUCTS = 40
SETTINGS = {
    "PIMSYNC_PIM__PAGE_SIZE": "10",
    "PIMSYNC_STAGING__BATCH_SIZE": "10",  # a commit every page: kills land between commits too
    "PIMSYNC_MAGENTO__CONCURRENCY": "2",  # a second request is in flight when one kills
}


# -- the kill points ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Kill `command` at the request of `kind` found `fraction` of the way through that kind's
    requests in an uninterrupted run (at least the first)."""

    command: str
    side: str  # which mock kills: "pim" or "magento"
    kind: str
    fraction: float
    after_write: bool = False

    def nth(self, counts: Counter[str]) -> int:
        total = counts[self.kind]
        assert total > 0, f"an uninterrupted {self.command} makes no {self.kind} request"
        return max(1, math.ceil(self.fraction * total))

    def __str__(self) -> str:
        after = "-after-the-write" if self.after_write else ""
        return f"{self.kind.replace(' ', '-')}-{self.fraction:.2f}{after}"


def draw_points(
    rng: random.Random, command: str, kinds: str, after_write: dict[str, bool] | None = None
) -> list[KillPoint]:
    """One point per kind (comma-separated), at a position drawn by `rng`; for a Magento write,
    whether it took effect is `after_write[kind]`, or drawn by `rng` too."""
    points = []
    for kind in kinds.split(","):
        side = "magento" if kind in MAGENTO_KINDS else "pim"
        fraction = round(rng.random(), 2)
        lost = side == "magento" and (after_write or {}).get(kind, rng.random() < 0.5)
        points.append(KillPoint(command, side, kind, fraction, lost))
    return points


_rng = random.Random(SEED)
FULL_POINTS = draw_points(
    # "clock" starts a feed: a kill between two feeds; "products-uuid": mid-pagination.
    _rng,
    "import:full",
    "token,options,categories,clock,product-models,products-uuid,media files",
)
INCREMENTAL_POINTS = draw_points(
    _rng, "import:incremental", "options,variants,categories,clock,products-uuid"
)
PUSH_POINTS = draw_points(
    _rng,
    "create",
    "attribute create,option add,attribute set create,set assignment,category create,"
    "category store save,product save,store view save,configurable option,child link,"
    "image download,image upload",
    # True: Magento did the write and its answer died with the run (what a create made must be
    # found by the next run, not made again); False: the run died before Magento had it.
    {
        "attribute set create": True,
        "option add": True,
        "category create": True,
        "configurable option": True,
        "image upload": True,
        "store view save": True,
        "set assignment": False,
        "category store save": False,
        "product save": False,
        "child link": False,
    },
)
POSTGRES_POINTS = [
    *draw_points(_rng, "import:full", "products-uuid"),
    *draw_points(_rng, "create", "image upload"),
]


# -- running pimsync ----------------------------------------------------------------------------


def environment(staging_url: str, pim_url: str, magento_url: str | None = None) -> dict[str, str]:
    env = {**PIM_ENV, "PIMSYNC_PIM__BASE_URL": pim_url, "PIMSYNC_STAGING__URL": staging_url}
    if magento_url is not None:
        env |= {"PIMSYNC_MAGENTO__BASE_URL": magento_url, "PIMSYNC_MAGENTO__TOKEN": "magento-token"}
    return {**env, **SETTINGS}


def kill_run(
    point: KillPoint,
    counts: Counter[str],
    staging_url: str,
    pim: Pim,
    magento: Handler | None,
    cwd: Path,
) -> int:
    """Run `point.command` as a process and kill it at `point`; returns its pid."""
    nth = point.nth(counts)
    armed = {"pim": None, "magento": None, point.side: point.kind}
    killers = [Killer(pim.fake, pim_kind, armed["pim"], nth)]
    stderr = cwd / "killed.stderr"
    with ExitStack() as stack:
        stack.enter_context(pim.relay.killing(killers[0]))
        magento_url = None
        if magento is not None:
            # Its own server: a request of the dead run can never reach the next run's.
            killers.append(
                Killer(magento, magento_kind, armed["magento"], nth, after_write=point.after_write)
            )
            magento_url = stack.enter_context(serve(killers[1]))
        err = stack.enter_context(stderr.open("w"))
        env = environment(staging_url, pim.url, magento_url)
        child = subprocess.Popen(
            [sys.executable, "-m", "pimsync", point.command],
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}, **env},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        for killer in killers:
            killer.watch(child.pid)
        try:
            code = child.wait(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            for killer in killers:
                killer.close()
    assert code == -signal.SIGKILL, f"not killed at {point} (exit {code}): {stderr.read_text()}"
    return child.pid


def rerun(command: str, env: dict[str, str]) -> dict[str, Any]:
    """The same command again, through the CLI, to completion; its JSON report."""
    result = CliRunner().invoke(cli, [command, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


# -- views of staging ---------------------------------------------------------------------------


def killed_run(app: App, kind: str, pid: int) -> int | None:
    """The run the kill interrupted, as the dead process left it: in progress, holding the lock
    (None when it was killed before recording a run)."""
    with app.engine().connect() as connection:
        held = connection.execute(select(sync_lock)).all()
    assert [row.pid for row in held] in ([], [pid])
    mine = [run for run in runs(app) if run["pid"] == pid]
    assert [run["status"] for run in mine] in ([], ["in_progress"])
    assert all(run["kind"] == kind for run in mine)
    return mine[0]["id"] if mine else None


def assert_settled(app: App, killed: int | None, report: dict[str, Any]) -> None:
    """No run in progress, the killed one recorded as abandoned and resumed, the lock free,
    no row claimed by anyone, no image upload pending or in flight."""
    assert report["resumed_from"] == killed
    by_id = {run["id"]: run for run in runs(app)}
    assert {run["status"] for run in by_id.values()} <= {"success", "stopped"}
    if killed is not None:
        assert by_id[killed]["status"] == "stopped"
        assert by_id[killed]["message"].startswith("abandoned: its process ended")
    with app.engine().connect() as connection:
        assert connection.execute(select(sync_lock)).all() == []
        for entity in ENTITIES:
            table = entity_tables[entity]
            claimed = select(table.c.code).where(table.c.claimed_by.is_not(None))
            assert connection.execute(claimed).all() == [], entity
    media = media_statuses(app)
    assert set(media) <= {"synced"}, media


def assert_incremental_finds_nothing(app: App) -> None:
    report = pipeline.run_incremental_import(app)
    assert report.exit_code == 0
    found = {name: (feed.new, feed.changed) for name, feed in report.feeds.items()}
    assert found == dict.fromkeys(found, (0, 0))


# -- references: uninterrupted runs ---------------------------------------------------------------


@dataclass
class Reference:
    """What an uninterrupted run leaves, and the requests it made by kind."""

    path: Path
    counts: Counter[str]
    rows: Rows
    magento: FakeMagento | None = None


@pytest.fixture(scope="module")
def pim() -> Iterator[Pim]:
    with served(FakePim(products=PRODUCTS)) as pim:
        yield pim


def import_in_process(
    staging_url: str, pim: Pim, kind: str = "import:full"
) -> tuple[Counter[str], Rows]:
    """An uninterrupted import in this process (the PIM's links name its served URL, so a
    process can download the images later); the requests it made, and what it staged."""
    counting = Killer(pim.fake, pim_kind)
    app = build_app(staging_url, counting, PIMSYNC_PIM__BASE_URL=pim.url, **SETTINGS)
    run = pipeline.run_full_import if kind == "import:full" else pipeline.run_incremental_import
    assert run(app).exit_code == 0
    rows = staged(app)
    app.close()
    return counting.counts, rows


@pytest.fixture(scope="module")
def full_import(pim: Pim, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """An uninterrupted import:full; the staging file the push cases start from."""
    path = tmp_path_factory.mktemp("full") / "staging.db"
    counts, rows = import_in_process(f"sqlite:///{path}", pim)
    return Reference(path, counts, rows)


@pytest.fixture(scope="module")
def synced(full_import: Reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full import, as if pushed: what the incremental cases start from, so that their
    changes show as needs_update (and the parents of changed variants too)."""
    path = tmp_path_factory.mktemp("synced") / "staging.db"
    app = build_app(sqlite_copy(full_import.path, path), FakePim(products=0))
    mark_all_synced(app)
    app.close()
    return path


@pytest.fixture(scope="module")
def clean_push(
    pim: Pim, full_import: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    """An uninterrupted create of the full import."""
    path = tmp_path_factory.mktemp("push") / "staging.db"
    with FakeMagento() as magento:
        pim_counting = Killer(pim.fake, pim_kind)  # unarmed: it only counts
        magento_counting = Killer(magento, magento_kind)
        app = build_app(
            sqlite_copy(full_import.path, path), pim_counting, magento_counting, **SETTINGS
        )
        options = pipeline.PushOptions(feeds=pipeline.order_push_feeds(()))
        assert pipeline.run_push(app, "create", options).exit_code == 0
        rows = staged(app)
        app.close()
        yield Reference(path, pim_counting.counts + magento_counting.counts, rows, magento)


# -- the cases --------------------------------------------------------------------------------


def check_killed_import(
    point: KillPoint, staging_url: str, pim: Pim, reference: Reference, cwd: Path
) -> None:
    pid = kill_run(point, reference.counts, staging_url, pim, None, cwd)
    app = build_app(staging_url, pim.fake, PIMSYNC_PIM__BASE_URL=pim.url, **SETTINGS)
    killed = killed_run(app, point.command, pid)
    report = rerun(point.command, environment(staging_url, pim.url))
    assert_settled(app, killed, report)
    assert differences(staged(app), reference.rows) == {}
    assert_incremental_finds_nothing(app)
    assert differences(staged(app), reference.rows) == {}
    app.close()


@pytest.mark.parametrize("point", FULL_POINTS, ids=str)
def test_a_killed_full_import_is_completed_by_the_next_run(
    point: KillPoint, pim: Pim, full_import: Reference, tmp_path: Path
):
    staging_url = f"sqlite:///{tmp_path / 'staging.db'}"
    check_killed_import(point, staging_url, pim, full_import, tmp_path)


@pytest.mark.parametrize("point", INCREMENTAL_POINTS, ids=str)
def test_a_killed_incremental_import_is_completed_by_the_next_run(
    point: KillPoint, synced: Path, tmp_path: Path
):
    edited = FakePim(products=PRODUCTS)
    edit_pim(edited, random.Random(f"{SEED}-{point}"))
    with served(edited) as pim:
        reference_url = sqlite_copy(synced, tmp_path / "reference.db")
        counts, rows = import_in_process(reference_url, pim, "import:incremental")
        for entity in ("attribute_options", "categories", "product_models", "products"):
            assert any(status == "needs_update" for _, status in rows[entity].values()), entity
        staging_url = sqlite_copy(synced, tmp_path / "staging.db")
        reference = Reference(tmp_path / "reference.db", counts, rows)
        check_killed_import(point, staging_url, pim, reference, tmp_path)


def check_killed_push(
    point: KillPoint, staging_url: str, pim: Pim, reference: Reference, cwd: Path
) -> None:
    clean = reference.magento
    assert clean is not None
    with FakeMagento() as magento:
        pid = kill_run(point, reference.counts, staging_url, pim, magento, cwd)
        app = build_app(staging_url, pim.fake)
        killed = killed_run(app, point.command, pid)
        saved_at_kill, recorded = magento.writes_by_sku, synced_skus(app)
        if point.kind == "image upload":  # the kill caught uploads in flight
            assert "uploading" in media_statuses(app)
        with serve(magento) as magento_url:
            report = rerun(point.command, environment(staging_url, pim.url, magento_url))
        assert_settled(app, killed, report)
        assert_everything_synced(app)
        assert differences(staged(app), reference.rows) == {}
        assert_synced_only_what_magento_holds(app, magento)
        # Nothing created twice: products (ids 1..N), images (not one upload more than a
        # clean push), categories, options, attribute sets.
        assert_each_product_created_once(magento)
        uploads = "/V1/products/*/media"
        assert magento.request_count("POST", uploads) == clean.request_count("POST", uploads)
        assert duplicates(magento) == {}
        # Magento holds what a clean push leaves.
        assert differences(catalog(magento), catalog(clean)) == {}
        # Each product saved as often as by a clean push, plus what the killed run had saved
        # of the products it had not recorded: nothing recorded synced is pushed again.
        expected = Counter(
            {
                sku: saves + (0 if sku in recorded else saved_at_kill[sku])
                for sku, saves in clean.writes_by_sku.items()
            }
        )
        assert magento.writes_by_sku == expected
        app.close()


@pytest.mark.parametrize("point", PUSH_POINTS, ids=str)
def test_a_killed_push_is_completed_by_the_next_run_without_duplicates(
    point: KillPoint, pim: Pim, full_import: Reference, clean_push: Reference, tmp_path: Path
):
    staging_url = sqlite_copy(full_import.path, tmp_path / "staging.db")
    check_killed_push(point, staging_url, pim, clean_push, tmp_path)


@pytest.mark.postgres
@pytest.mark.parametrize("point", POSTGRES_POINTS, ids=lambda p: f"{p.command}-{p}")
def test_kill_points_on_postgresql(
    point: KillPoint,
    postgres_url: str,
    pim: Pim,
    full_import: Reference,
    clean_push: Reference,
    tmp_path: Path,
):
    if point.command == "import:full":
        check_killed_import(point, postgres_url, pim, full_import, tmp_path)
        return
    import_in_process(postgres_url, pim)
    check_killed_push(point, postgres_url, pim, clean_push, tmp_path)
