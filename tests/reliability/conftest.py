"""Fixtures of the reliability tests.

Importing the catalog costs more than most push tests; a test pushes from its own copy of a
staging file imported once, so its Magento faults are the only thing it adds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest

from pimsync import pipeline
from pimsync.pipeline import imports
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from tests.reliability.support import PUSH_PRODUCTS, build_app, built_apps


@pytest.fixture(autouse=True)
def close_built_apps() -> Iterator[None]:
    """Close what a test's apps left open, whether or not the test got to close them."""
    yield
    while built_apps:
        built_apps.pop().close()


@pytest.fixture(autouse=True)
def no_gc_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports start with a full garbage collection (`gc_tuned_for_streaming`); inside a test
    process holding hypothesis and every module it costs ~70 ms per import, and this suite runs
    a few hundred imports. It only tunes memory, so the tests do without it."""
    monkeypatch.setattr(imports, "gc_tuned_for_streaming", nullcontext, raising=False)


@pytest.fixture(scope="module")
def push_pim() -> FakePim:
    """The PIM the push tests imported from; the push downloads its images."""
    return FakePim(products=PUSH_PRODUCTS)


@pytest.fixture(scope="module")
def imported(push_pim: FakePim, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite staging file holding a completed full import of `push_pim`."""
    path = tmp_path_factory.mktemp("imported") / "staging.db"
    app = build_app(f"sqlite:///{path}", push_pim)
    assert pipeline.run_full_import(app).exit_code == 0
    app.close()
    return path


@pytest.fixture
def staging(imported: Path, tmp_path: Path) -> str:
    """The URL of this test's own copy of the imported staging file."""
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{imported}{suffix}")
        if source.exists():
            shutil.copy(source, tmp_path / f"staging.db{suffix}")
    return f"sqlite:///{tmp_path / 'staging.db'}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLite only, for the matrices: what they check does not depend on the backend (each
    module has a case on `staging_url`, both backends, for what does)."""
    return f"sqlite:///{tmp_path / 'staging.db'}"


@pytest.fixture
def magento() -> Iterator[FakeMagento]:
    with FakeMagento() as fake:
        yield fake
