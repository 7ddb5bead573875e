"""Preparing an import's pages (validate, hash, serialise) beside the importing process.

Validation and hashing are Python holding the GIL: in the importing process they compete with
the HTTP reader and the database writer for one core, and the import ran at the speed of that
one core. A large listing is therefore prepared by a pool of processes: the reader thread
hands each page's body (bytes, cheap to send) to the pool as soon as it has read where the next
page is, and the importing process takes the prepared items back in page order, so it only
fetches and writes.

A listing's first pages are prepared in the importing process (small listings never start a
pool), and so are pages that cannot be re-read from their body as they are (an answer read by
the lenient parser, records completed by the client). A pool that breaks (a worker killed) is
left for the rest of the run: its pages are prepared here, and nothing is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext

from pimsync.pim.models import PimRecord
from pimsync.pim.records import Item, Page
from pimsync.pipeline.overlap import prefetch
from pimsync.staging.prepare import Prepared, prepare_answer, prepare_page, start_preparing

log = logging.getLogger("pimsync.import")

# Pages a listing prepares in the importing process before it starts the pool: a listing of
# up to a thousand records is done before processes would have started.
POOL_AFTER_PAGES = 10


@dataclass(frozen=True, slots=True)
class _InPool:
    """A page handed to the pool, with what it takes to prepare it here instead."""

    future: Future[list[Prepared]]
    model: type[PimRecord]
    content: bytes


class PagePreparer:
    """Turns a listing's pages into prepared items, in page order; one per import run."""

    def __init__(self, processes: int, *, pool_after_pages: int | None = None) -> None:
        self._processes = processes
        self._pool_after_pages = POOL_AFTER_PAGES if pool_after_pages is None else pool_after_pages
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self.pooled_pages = 0  # pages the pool prepared (the rest were prepared here)

    def prepared(
        self, pages: Iterator[Sequence[Item]], identifier_attribute: str
    ) -> Iterator[list[Prepared]]:
        """Each page of `pages`, read ahead in a thread (overlap.prefetch), prepared."""
        for handle in prefetch(self._dispatch(pages, identifier_attribute)):
            if isinstance(handle, _InPool):
                yield self._result(handle, identifier_attribute)
            else:
                yield prepare_page(handle, identifier_attribute)

    def _dispatch(
        self, pages: Iterator[Sequence[Item]], identifier_attribute: str
    ) -> Iterator[Sequence[Item] | _InPool]:
        """Runs in the reader thread: a page goes to the pool as soon as it is read."""
        for number, page in enumerate(pages):
            if (
                not isinstance(page, Page)
                or page.content is None
                or (pool := self._pool_for(number)) is None
            ):
                yield page
                continue
            content = page.content
            try:
                future = pool.submit(prepare_answer, page.model, content, identifier_attribute)
            except BrokenProcessPool:
                self._broke()
                yield page
                continue
            # Only the body travels on: the records parsed here are let go at once.
            yield _InPool(future, page.model, content)

    def _result(self, handle: _InPool, identifier_attribute: str) -> list[Prepared]:
        try:
            prepared = handle.future.result()
        except BrokenProcessPool:
            self._broke()
            return prepare_answer(handle.model, handle.content, identifier_attribute)
        self.pooled_pages += 1
        return prepared

    def _pool_for(self, page_number: int) -> ProcessPoolExecutor | None:
        if self._processes == 0 or self._broken or page_number < self._pool_after_pages:
            return None
        if self._pool is None:
            context: BaseContext = multiprocessing.get_context("spawn")  # Windows: no forkserver
            if "forkserver" in multiprocessing.get_all_start_methods():
                # forkserver, not fork: this process runs threads (reader, writer, heartbeat),
                # and a fork copies their locks in whatever state they are. The server loads
                # only what preparing needs, and every worker is forked from it.
                context = multiprocessing.get_context("forkserver")
                multiprocessing.set_forkserver_preload(["pimsync.staging.prepare"])
            self._pool = ProcessPoolExecutor(
                self._processes,
                mp_context=context,
                initializer=start_preparing,
                initargs=(os.getpid(),),
            )
        return self._pool

    def _broke(self) -> None:
        if not self._broken:
            self._broken = True
            log.warning("a page preparation process died; the import goes on in this process")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PagePreparer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
