"""What an import writes for each PIM record: validated, hashed and serialised (`StagedItem`).

This is the CPU-bound part of an import, so it is kept importable on its own: the processes
that prepare pages beside the importing one (pipeline/preparers.py) load this module, pydantic
and orjson, and none of the database, HTTP or CLI code.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pimsync.pim.models import PimRecord, Product
from pimsync.pim.records import Item, Page, Parsed, Rejected
from pimsync.staging.hashing import content_hash


@dataclass(frozen=True, slots=True)
class StagedItem:
    """One PIM record, validated and hashed, ready to be written to its entity table."""

    code: str
    # The PIM record as JSON text. Text, not orjson's bytes: those keep the capacity orjson
    # wrote into (8 KB for a 3 KB product), and a batch holds a thousand of them.
    data: str
    hash: str
    identifier: str | None = None
    parent_code: str | None = None
    label: str | None = None
    pim_updated: str | None = None


Prepared = StagedItem | Rejected


def prepare_page(page: Sequence[Item], identifier_attribute: str) -> list[Prepared]:
    """Each record of `page`, staged or rejected (validation happens here, record by record)."""
    return [
        item if isinstance(item, Rejected) else staged_item(item, identifier_attribute)
        for item in page
    ]


def prepare_answer(
    model: type[PimRecord], content: bytes, identifier_attribute: str
) -> list[Prepared]:
    """`prepare_page` for a list page as the PIM sent it (its JSON body).

    Only answers that parsed as they are reach this (pagination.py has already read the
    envelope in the importing process), so the envelope is trusted here.
    """
    raws: list[Any] = orjson.loads(content)["_embedded"]["items"]
    return prepare_page(Page(model, raws), identifier_attribute)


def staged_item(item: Parsed, identifier_attribute: str) -> StagedItem:
    record = item.record
    if isinstance(record, Product):
        identifier = record.staging_identifier(identifier_attribute)
    else:
        identifier = record.staging_identifier() or record.staging_code()
    return StagedItem(
        code=record.staging_code(),
        data=orjson.dumps(item.raw).decode(),
        hash=content_hash(item.raw),
        identifier=identifier,
        parent_code=record.staging_parent(),
        label=record.staging_label(),
        pim_updated=record.staging_updated(),
    )


def raw_json(raw: object) -> bytes:
    """A rejected record as JSON, whatever it holds (its repr when JSON cannot hold it)."""
    try:
        return orjson.dumps(raw)
    except TypeError:
        return orjson.dumps(repr(raw))


def start_preparing(importer_pid: int) -> None:
    """A preparing process's start (the pool's initializer).

    The importing process decides how to stop (after its current batch) and shuts the pool
    down, so the pool stays out of its process group. And the pool must not outlive an
    importing process that was killed: nobody would shut it down, and its processes (which
    hold the pipes they would see closed) would wait for work forever.
    """
    # A session of its own: signals sent to the importing process's group (Ctrl-C, a SIGTERM
    # to the group) are the importing process's to act on. Killed by a group SIGTERM, a worker
    # could die half-way through sending a page back, and the pool would wait for the rest of
    # it forever.
    os.setsid()
    watch = threading.Thread(
        target=_end_with, args=(importer_pid,), name="pimsync-importer-watch", daemon=True
    )
    watch.start()


def _end_with(importer_pid: int, interval: float = 1.0) -> None:
    while True:
        time.sleep(interval)
        try:
            os.kill(importer_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid is there (someone else's, were it reused)
            pass
