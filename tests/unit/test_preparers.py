"""PagePreparer: pages prepared by a pool of processes equal pages prepared in-process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest

from pimsync.errors import PimError
from pimsync.pim.models import Product
from pimsync.pim.records import Page, Rejected
from pimsync.pipeline.preparers import PagePreparer
from pimsync.staging.prepare import StagedItem, prepare_page
from pimsync.testing.fake_pim import FakePim
from tests.helpers import alive


def product_pages(count: int, per_page: int = 20) -> list[list[dict]]:
    """Raw product records of the mock catalog, one in 13 made invalid, in pages."""
    pim = FakePim(products=count)
    raws = []
    for index in range(count):
        record = pim.product(index)
        if index % 13 == 5:
            record["values"] = {"name": "not a list of value entries"}
        raws.append(record)
    return [raws[start : start + per_page] for start in range(0, count, per_page)]


def as_pages(raw_pages: list[list[dict]]) -> list[Page]:
    """Pages as the client yields them: the answer, its records not parsed yet."""
    return [
        Page(Product, None, content=orjson.dumps({"_links": {}, "_embedded": {"items": raws}}))
        for raws in raw_pages
    ]


def reference(raw_pages: list[list[dict]]) -> list[list]:
    return [prepare_page(Page(Product, [dict(r) for r in raws]), "sku") for raws in raw_pages]


def test_pages_prepared_in_the_pool_equal_pages_prepared_here():
    raw_pages = product_pages(200)
    with PagePreparer(2, pool_after_pages=2) as preparer:
        prepared = list(preparer.prepared(iter(as_pages(raw_pages)), "sku"))
    assert preparer.pooled_pages == len(raw_pages) - 2
    assert prepared == reference(raw_pages)
    items = [item for page in prepared for item in page]
    rejected = [item for item in items if isinstance(item, Rejected)]
    staged = [item for item in items if isinstance(item, StagedItem)]
    assert len(rejected) == len(range(5, 200, 13))
    assert len(staged) == 200 - len(rejected)
    assert all(len(item.hash) == 64 and item.data.startswith("{") for item in staged)


def test_a_small_listing_never_starts_the_pool():
    raw_pages = product_pages(60)
    with PagePreparer(2) as preparer:
        prepared = list(preparer.prepared(iter(as_pages(raw_pages)), "sku"))
        assert preparer._workers is None  # workers only start past POOL_AFTER_PAGES pages
    assert prepared == reference(raw_pages)


def test_pages_without_their_answer_are_prepared_here():
    # Records the client completed (options, family variants) cannot be re-read from the body.
    raw_pages = product_pages(100)
    pages = [Page(Product, [dict(r) for r in raws]) for raws in raw_pages]
    with PagePreparer(2, pool_after_pages=0) as preparer:
        prepared = list(preparer.prepared(iter(pages), "sku"))
    assert preparer.pooled_pages == 0
    assert prepared == reference(raw_pages)


def test_a_pool_that_breaks_costs_only_speed(caplog: pytest.LogCaptureFixture):
    raw_pages = product_pages(400)
    preparer = PagePreparer(2, pool_after_pages=1)

    def pages():
        for number, page in enumerate(as_pages(raw_pages)):
            if number == 6:
                assert preparer._workers is not None
                for worker in preparer._workers:  # a worker killed from outside
                    os.kill(worker.process.pid, signal.SIGKILL)
            yield page

    with caplog.at_level(logging.WARNING, "pimsync.import"), preparer:
        prepared = list(preparer.prepared(pages(), "sku"))
    assert prepared == reference(raw_pages)
    assert 0 < preparer.pooled_pages < len(raw_pages) - 1
    assert "preparation process died" in caplog.text


POOL_OWNER = """
import sys, time, orjson
from pimsync.errors import PimError
from pimsync.pim.models import Product
from pimsync.pim.records import Page
from pimsync.pipeline.preparers import PagePreparer

raws = [{"uuid": "0ff63d25-57e0-50f3-8073-2dec89025cc1", "values": {}}]
body = orjson.dumps({"_embedded": {"items": raws}})
preparer = PagePreparer(2, pool_after_pages=0)
pages = (Page(Product, raws, content=body) for _ in range(4))
assert len(list(preparer.prepared(pages, "sku"))) == 4
print(" ".join(str(worker.process.pid) for worker in preparer._workers), flush=True)
time.sleep(600)
"""


def test_the_pool_ends_when_the_importing_process_is_killed():
    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
    finally:
        owner.kill()  # SIGKILL: nobody shuts the pool down
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "the pool outlived the importing process"


def test_a_listing_left_early_ends_its_workers_and_its_reader():
    # Large pages fill the pipes: when the consumer stops, the reader thread is typically
    # waiting on a worker that waits on us. Leaving must end both, not wait on either.
    raw_pages = product_pages(2000, per_page=100)
    threads_before = set(threading.enumerate())
    preparer = PagePreparer(2, pool_after_pages=0)
    pages = preparer.prepared(iter(as_pages(raw_pages)), "sku")
    assert next(pages) == reference(raw_pages[:1])[0]
    assert preparer._workers is not None
    processes = [worker.process for worker in preparer._workers]
    pages.close()  # as a stop between batches leaves the listing
    assert preparer._workers is None
    assert not any(process.is_alive() for process in processes)
    assert set(threading.enumerate()) <= threads_before  # the reader thread has ended
    # The rest of the run prepares its pages here.
    assert list(preparer.prepared(iter(as_pages(raw_pages[:3])), "sku")) == reference(raw_pages[:3])
    assert preparer._workers is None


def test_a_worker_that_fails_leaves_the_error_to_the_importing_process():
    # An error no page should cause (here an identifier attribute that is no text: a bug): the
    # worker exits, and the importing process meets the error preparing the page itself.
    [page] = as_pages(product_pages(1))
    with PagePreparer(1, pool_after_pages=0) as preparer, pytest.raises(TypeError):
        list(preparer.prepared(iter([page]), ["not", "hashable"]))  # type: ignore[arg-type]


@pytest.mark.parametrize("processes", [0, 1])
def test_a_page_damaged_on_the_way_stops_the_listing_with_one_line(processes: int):
    # Its envelope was readable (the client checked it), its records are not: nothing of it is
    # staged and the run stops with a PimError, wherever the page was being prepared.
    [good] = as_pages(product_pages(20))
    damaged = Page(Product, None, content=b'{"_links":{},"_embedded":{"items":[{"uuid":"9a]}}')
    with PagePreparer(processes, pool_after_pages=0) as preparer:
        prepared = preparer.prepared(iter([good, damaged]), "sku")
        assert next(prepared) == reference(product_pages(20))[0]
        with pytest.raises(PimError, match=r"^the PIM sent a page of products that is not JSON"):
            next(prepared)
        assert preparer.pooled_pages == processes  # the worker answered the good page


def test_a_page_only_the_lenient_parser_reads_is_screened_in_the_pool():
    [raws] = product_pages(20)
    content = orjson.dumps({"_links": {}, "_embedded": {"items": raws}})
    # One record's name holds a byte that is not UTF-8: orjson refuses the whole answer.
    name = orjson.dumps(raws[0]["values"]["name"][0]["data"])
    content = content.replace(name, name[:-1] + b'\xff"', 1)
    with PagePreparer(1, pool_after_pages=0) as preparer:
        [pooled] = list(preparer.prepared(iter([Page(Product, None, content=content)]), "sku"))
        assert preparer.pooled_pages == 1
    [here] = list(PagePreparer(0).prepared(iter([Page(Product, None, content=content)]), "sku"))
    assert pooled == here
    assert isinstance(pooled[0], Rejected)
    assert (
        pooled[0].reason == "values.name[0].data: text that is not valid UTF-8 in the PIM's answer"
    )
    assert [type(item) for item in pooled[1:]] == [type(item) for item in reference([raws])[0][1:]]
    assert len(pooled) == 20
