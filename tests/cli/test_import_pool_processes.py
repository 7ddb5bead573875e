"""An import whose pages are prepared by a pool of processes, stopped as cron and systemd stop it.

A real `pimsync import:full` in a session of its own reads a mock PIM on loopback; once it has
staged more than POOL_AFTER_PAGES pages (so its pool runs), the whole process group gets
SIGTERM, as a service manager or `kill -- -PGID` sends it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from pimsync.testing.fake_pim import FakePim, Faults
from pimsync.testing.server import serve
from tests.conftest import PIM_ENV
from tests.helpers import alive


def test_a_group_sigterm_stops_an_import_with_its_pool_after_its_batch(tmp_path: Path):
    staging = tmp_path / "staging.db"
    # 50 pages of products, 40 ms each: the import is still reading when it is stopped.
    pim = FakePim(products=5000, faults=Faults(latency=0.04))
    with serve(pim) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}
        env.update(PIM_ENV, PIMSYNC_PIM__BASE_URL=url, PIMSYNC_STAGING__URL=f"sqlite:///{staging}")
        command = [sys.executable, "-m", "pimsync", "import:full"]
        subprocess.run([*command, "--attributes"], env=env, check=True, capture_output=True)
        victim = subprocess.Popen(
            [*command, "--products"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while staged_products(staging) < 1500 and time.monotonic() < deadline:
                time.sleep(0.05)
            pool = descendants(victim.pid)
            assert len(pool) >= 3, "the pool (forkserver and workers) did not start"
            os.killpg(victim.pid, signal.SIGTERM)
            _, err = victim.communicate(timeout=60)
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.communicate()
    assert victim.returncode == 130, err
    assert "Error: import:full stopped (SIGTERM)" in err
    assert "Traceback" not in err
    assert 1500 <= staged_products(staging) < 5000
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in pool) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pool if alive(pid)] == []


def staged_products(path: Path) -> int:
    # closing(): a sqlite3 connection's own `with` ends its transaction but leaves it open, and
    # Python 3.13 warns about every connection left to the garbage collector.
    try:
        with closing(sqlite3.connect(path, timeout=5)) as connection:
            return int(connection.execute("SELECT count(*) FROM products").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().split(")")[-1].split()[1]
                )
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
