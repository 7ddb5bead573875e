"""What an import writes for each PIM record: validated, hashed and serialised (`StagedItem`).

This is the CPU-bound part of an import, so it is kept importable on its own: the processes
that prepare pages beside the importing one (pipeline/preparers.py) load this module, pydantic
and orjson, and none of the database, HTTP or CLI code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import NamedTuple

import orjson

from pimsync.errors import PimError
from pimsync.gc_tuning import PREPARING_THRESHOLD, gc_tuned_for_streaming
from pimsync.pim.models import PimRecord, Product
from pimsync.pim.records import Item, Page, Parsed, Rejected
from pimsync.staging.hashing import content_hash


class StagedItem(NamedTuple):
    """One PIM record, validated and hashed, ready to be written to its entity table.

    A NamedTuple, not a dataclass: the preparing processes pickle a hundred of these a page and
    the importing process unpickles them, and a tuple does both in C (a frozen dataclass goes
    through `__setstate__` in Python: 2.3 us an item to unpickle against 0.6 us).
    """

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
    model: type[PimRecord], content: bytes, identifier_attribute: str, source: str | None = None
) -> list[Prepared]:
    """`prepare_page` for a list page as the PIM sent it (its JSON body), parsed here.

    A page only Python's own parser can read is screened record by record (records.Page); one
    that holds no records to read is a PimError, as it would be in the importing process.
    """
    page = Page(model, None, content=content, source=source)
    return prepare_page(page, identifier_attribute)


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


def serve_pages(pipe: Connection) -> None:
    """A preparing process: answers each page read from `pipe` with its prepared items.

    It ends when the importing process closes its end or goes away (end-of-file), and it runs
    in a session of its own: signals sent to the importing process's group (Ctrl-C, a SIGTERM to
    the group) are the importing process's to act on, and that process stops its preparing
    processes itself once its current batch is committed.
    """
    os.setsid()
    # The default thresholds collected every 700 allocations here too, traversing the modules
    # this process loaded: 5.1-5.7 s of CPU per preparing process for 100k products, 3.7-4.0 s
    # with the importing process's tuning.
    with gc_tuned_for_streaming(PREPARING_THRESHOLD):
        _serve(pipe)


def _serve(pipe: Connection) -> None:
    while True:
        try:
            model, content, identifier_attribute, source = pipe.recv()
        except (EOFError, OSError):
            return
        try:
            prepared: list[Prepared] | PimError = prepare_answer(
                model, content, identifier_attribute, source
            )
        except PimError as exc:  # the page itself is damaged: the import stops with this
            prepared = exc
        except Exception:
            # The importing process prepares the page itself when we are gone, and meets the
            # same error there, where it is handled: nothing is printed twice.
            return
        try:
            pipe.send(prepared)
        except OSError:  # the importing process went away while we answered
            return
