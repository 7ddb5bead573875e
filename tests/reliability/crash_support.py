"""What the crash and resume tests share: mocks that count requests by kind and kill the run at
one of them, views of staging and Magento to compare two runs by, and PIM edits for an
incremental to find.

(Split from test_crash_safety.py to keep both under ~400 lines; test_resume_property.py uses
the staging views and the edits.)
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from pimsync.app import App
from pimsync.pipeline.push_items import sku_of
from pimsync.staging.tables import ENTITIES, entity_tables, product_media, sync_runs
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import FakePim
from pimsync.testing.server import DropConnection, serve
from tests.integration.test_operations import comparable
from tests.reliability.support import Handler, pim_products

# -- what a request is ------------------------------------------------------------------------


def pim_kind(request: httpx.Request) -> str:
    path = request.url.path
    if path == "/api/oauth/v1/token":
        return "token"
    rest = path.removeprefix("/api/rest/v1").strip("/")
    if not rest:
        return "clock"  # each feed starts by reading the PIM's clock (its Date header)
    first = rest.split("/", 1)[0]
    if first == "attributes":
        return "options" if "/options" in rest else "attributes"
    if first == "families":
        return "variants" if "/variants" in rest else "families"
    if first == "media-files":
        return "image download" if rest.endswith("/download") else "media files"
    return first  # categories, product-models, products-uuid


MAGENTO_WRITES = [
    ("POST", r"categories", "category create"),
    ("PUT", r"categories/\d+", "category store save"),
    ("POST", r"products/attributes", "attribute create"),
    ("POST", r"products/attributes/[^/]+/options", "option add"),
    ("POST", r"products/attribute-sets", "attribute set create"),
    ("POST", r"products/attribute-sets/attributes", "set assignment"),
    ("PUT", r"products/[^/]+", "product save"),  # "store view save" on a store view
    ("POST", r"configurable-products/[^/]+/options", "configurable option"),
    ("POST", r"configurable-products/[^/]+/child", "child link"),
    ("POST", r"products/[^/]+/media", "image upload"),
]
MAGENTO_KINDS = {kind for _, _, kind in MAGENTO_WRITES} | {"store view save"}


def magento_kind(request: httpx.Request) -> str:
    _, _, store, _, rest = request.url.path.split("/", 4)  # /rest/<store>/V1/<rest>
    for method, pattern, kind in MAGENTO_WRITES:
        if request.method == method and re.fullmatch(pattern, rest):
            return "store view save" if kind == "product save" and store != "all" else kind
    return "read"


# -- mocks that kill ----------------------------------------------------------------------------


class Killer:
    """A mock that counts its requests by kind and, armed with a `kind` and `n`, SIGKILLs the
    run at the `n`-th request of that kind: before handling it or, with `after_write`, just
    after (Magento did the write; its answer dies with the process).

    `close()` is the death as the mock sees it: it waits for the requests being handled and
    lets nothing more through, so the next run never races a late request of the dead one.
    """

    def __init__(
        self,
        handler: Handler,
        kind_of: Callable[[httpx.Request], str],
        kind: str | None = None,
        n: int = 0,
        *,
        after_write: bool = False,
    ) -> None:
        self.handler, self.kind_of, self.kind, self.n = handler, kind_of, kind, n
        self.after_write = after_write
        self.counts: Counter[str] = Counter()
        self._pid: int | None = None
        self._active = 0
        self._closed = False
        self._started = threading.Event()
        self._idle = threading.Condition()

    def watch(self, pid: int) -> None:
        """The process to kill (its requests may not arrive before it is known)."""
        self._pid = pid
        self._started.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        kind = self.kind_of(request)
        with self._idle:
            if self._closed:
                raise DropConnection
            self._active += 1
            self.counts[kind] += 1
            fire = kind == self.kind and self.counts[kind] == self.n
        try:
            if not fire:
                return self.handler(request)
            if self.after_write:
                self.handler(request)
            assert self._started.wait(60) and self._pid is not None
            os.kill(self._pid, signal.SIGKILL)
            raise DropConnection
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def close(self) -> None:
        with self._idle:
            self._closed = True
            assert self._idle.wait_for(lambda: self._active == 0, timeout=60)


class Relay:
    """The PIM behind one URL for a whole case: staged image links name it, so the killed run,
    the next one and the references all download through it. `killing()` puts a Killer in
    front for one run (a late read of a dead run is harmless: the PIM is only read)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = self.target = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return self.target(request)

    @contextmanager
    def killing(self, killer: Killer) -> Iterator[None]:
        self.target = killer
        try:
            yield
        finally:
            self.target = self.handler


@dataclass
class Pim:
    """A mock PIM and the URL it is served on for the whole module (or case)."""

    fake: FakePim
    relay: Relay
    url: str


@contextmanager
def served(fake: FakePim) -> Iterator[Pim]:
    """Serve `fake` on loopback, behind a Relay, for the block."""
    relay = Relay(fake)
    with serve(relay) as url:
        yield Pim(fake, relay, url)


# -- views of staging ---------------------------------------------------------------------------

Rows = dict[str, dict[str, tuple[str, str]]]


def staged(app: App) -> Rows:
    """Every staged row by entity and code: its hash and status."""
    with app.engine().connect() as connection:
        return {
            entity: {
                row.code: (row.hash, row.status)
                for row in connection.execute(select(entity_tables[entity]))
            }
            for entity in ENTITIES
        }


def differences(
    actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> dict[str, dict[str, tuple[Any, Any]]]:
    """What differs, by part and key, as (actual, expected); a few per part, to read."""
    found = {}
    for part in sorted(actual.keys() | expected.keys()):
        mine, theirs = actual.get(part, {}), expected.get(part, {})
        keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if keys:
            found[part] = {k: (mine.get(k), theirs.get(k)) for k in keys[:3]}
    return found


def runs(app: App) -> list[dict[str, Any]]:
    with app.engine().connect() as connection:
        rows = connection.execute(select(sync_runs).order_by(sync_runs.c.id)).all()
    return [dict(row._mapping) for row in rows]


def media_statuses(app: App) -> Counter[str]:
    with app.engine().connect() as connection:
        return Counter(connection.scalars(select(product_media.c.status)))


def sqlite_copy(source: Path, target: Path) -> str:
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


# -- views of Magento --------------------------------------------------------------------------


def category_paths(magento: FakeMagento) -> list[str]:
    """Every category as the path of names from its root: ids differ between two Magentos."""
    categories = magento.categories

    def path(cid: int) -> str:
        view = categories[cid]
        parent = int(view.get("parent_id") or 0)
        return f"{path(parent)}/{view['name']}" if parent in categories else str(view["name"])

    return sorted(path(cid) for cid in categories)


def catalog(magento: FakeMagento) -> dict[str, dict[str, Any]]:
    """Magento's catalog by names: what two pushes of the same staging must agree on."""
    return {
        "products": {sku: comparable(magento, sku) for sku in magento.products},
        "categories": dict.fromkeys(category_paths(magento), True),
        "options": {code: sorted(magento.attribute_options(code)) for code in magento.attributes},
        "sets": {s["attribute_set_name"]: True for s in magento.attribute_sets.values()},
    }


def synced_skus(app: App) -> set[str]:
    skus = set()
    with app.engine().connect() as connection:
        for entity in ("product_models", "products"):
            table = entity_tables[entity]
            for row in connection.execute(select(table).where(table.c.status == "synced")):
                skus.add(sku_of(entity, dict(row._mapping)))
    return skus


# -- PIM edits ----------------------------------------------------------------------------------


def edit_pim(pim: FakePim, rng: random.Random) -> None:
    """Changes for an incremental to find in every feed it reads: an option and a category
    relabelled, products edited, a product model renamed (its variants change with it),
    products created. The clock moves first, past any watermark taken before."""
    pim.clock.advance(600)
    structure = pim.writer.structure
    label = {"en_US": f"Relabelled {rng.randrange(10**6)}"}
    attribute = rng.choice(sorted(code for code, options in structure.options.items() if options))
    option = rng.choice(sorted(structure.options[attribute]))
    pim.writer.write_option(attribute, option, {"labels": label})
    children = sorted(code for code, record in structure.categories.items() if record["parent"])
    pim.writer.write_category(rng.choice(children), {"labels": label}, pim.now())
    products = pim_products(pim)
    for uuid in rng.sample(sorted(products), 6):
        ean = [{"locale": None, "scope": None, "data": f"ean-{rng.randrange(10**6)}"}]
        pim.update_product(uuid, values={"ean": ean})
    models = sorted({p["parent"] for p in products.values() if p["parent"]})
    roots = sorted({pim.model(code)["parent"] or code for code in models})
    name = [{"locale": "en_US", "scope": None, "data": f"Renamed {rng.randrange(10**6)}"}]
    pim.update_model(rng.choice(roots), values={"name": name})
    for _ in range(2):
        sku = [{"locale": None, "scope": None, "data": f"NEW-{rng.randrange(10**6):06d}"}]
        pim.create_product(values={"sku": sku}, family="clothing")
