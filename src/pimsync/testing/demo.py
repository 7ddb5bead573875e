"""`make demo`: a real sync, end to end, against the bundled mocks on 127.0.0.1.

import:full, create, then a few products change in the mock PIM, import:incremental, create.

The mocks run in this process, in threads; every pimsync step runs as a real `pimsync`
subprocess with a config file written for the mocks, exactly as a user or cron would run it.
Everything it starts is stopped when it ends, and its files stay in `.demo/`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
from sqlalchemy import func, select

from pimsync.staging.database import open_engine
from pimsync.staging.tables import entity_tables
from pimsync.testing.fake_magento import FakeMagento
from pimsync.testing.fake_pim import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PASSWORD,
    DEFAULT_SECRET,
    DEFAULT_USERNAME,
    FakePim,
)
from pimsync.testing.server import serve

PRODUCTS = 2000
MAGENTO_TOKEN = "demo-magento-token"
CHANGED = 5


def main() -> int:
    root = Path(".demo").resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    pim = FakePim(products=PRODUCTS)
    magento = FakeMagento(token=MAGENTO_TOKEN)
    started = time.monotonic()
    with serve(pim) as pim_url, serve(magento) as magento_url, magento:
        config = root / "pimsync.toml"
        config.write_text(
            "# Written by `make demo` for the bundled mocks; secrets come from the environment.\n"
            f'[pim]\nbase_url = "{pim_url}"\nclient_id = "{DEFAULT_CLIENT_ID}"\n'
            f'username = "{DEFAULT_USERNAME}"\n'
            f'[magento]\nbase_url = "{magento_url}"\n'
            f'[staging]\nurl = "sqlite:///{root / "staging.db"}"\n'
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")},
            "PIMSYNC_PIM__SECRET": DEFAULT_SECRET,
            "PIMSYNC_PIM__PASSWORD": DEFAULT_PASSWORD,
            "PIMSYNC_MAGENTO__TOKEN": MAGENTO_TOKEN,
        }

        def pimsync(*args: str) -> int:
            command = ["pimsync", "--config", str(config), *args]
            print(f"\n$ {' '.join(command)}", flush=True)
            done = subprocess.run([sys.executable, "-m", "pimsync", *command[1:]], env=env)
            return done.returncode

        step(f"mock PIM with {PRODUCTS:,} products at {pim_url}, mock Magento at {magento_url}")
        if pimsync("check") != 0 or pimsync("import:full") != 0 or pimsync("create") != 0:
            return 1
        step(
            f"Magento now holds {magento.product_count():,} products, "
            f"{len(magento.categories):,} categories, {len(magento.attributes):,} attributes"
        )
        step(f"{CHANGED} products change in the PIM")
        pim.clock.advance(300)
        # Simple products: a variant's name is its product model's (Akeneo refuses it there).
        simple = (i for i in range(0, PRODUCTS, 7) if not pim.product(i).get("parent"))
        for index in list(simple)[:CHANGED]:
            name = pim.product(index)["values"]["name"]
            renamed = [{**entry, "data": f"{entry['data']} (new season)"} for entry in name]
            pim.update_product(index, values={"name": renamed})
        pim.reset_stats()
        if pimsync("import:incremental") != 0:
            return 1
        magento.reset_stats()
        if pimsync("create") != 0:
            return 1
        step(
            f"the incremental import read {len(pim.served_uuids())} products and the push sent "
            f"{sum(magento.writes_by_sku.values())} product writes; the staged products now:"
        )
        show_staging(root / "staging.db", magento)
        if pimsync("status") != 0:
            return 1
    step(f"done in {time.monotonic() - started:.1f} s; the mocks are stopped; files in {root}")
    return 0


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def show_staging(path: Path, magento: FakeMagento) -> None:
    engine = open_engine(f"sqlite:///{path}")
    products = entity_tables["products"]
    with engine.connect() as connection:
        counts = connection.execute(
            select(products.c.status, func.count()).group_by(products.c.status)
        ).all()
        print("   products by status: " + ", ".join(f"{s}={n}" for s, n in counts))
        changed = connection.execute(
            select(products.c.identifier, products.c.label, products.c.data)
            .where(products.c.label.like("%(new season)"))
            .limit(CHANGED)
        ).all()
        print("   a few pushed products, as Magento holds them (default / fr store views):")
        for identifier, _label, data in changed:
            family = orjson.loads(data).get("family")
            default = magento.product(identifier) or {}
            french = magento.product(identifier, store="fr") or {}
            print(
                f"   {identifier:<12} {family:<12} {default.get('price', '?'):>7} EUR  "
                f"{default.get('name')}  /  {french.get('name')}"
            )
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
