"""Preparing an import's pages (validate, hash, serialise) beside the importing process.

Validation and hashing are Python holding the GIL: in the importing process they compete with
the HTTP reader and the database writer for one core, and the import ran at the speed of that
one core. A large listing is therefore prepared by a few worker processes: the reader thread
hands each page's body (bytes, cheap to send) to a worker as soon as it has read where the next
page is, and the importing process takes the prepared items back in page order, so it only
fetches and writes.

A listing's first pages are prepared in the importing process (small listings never start a
worker), and so are pages that cannot be re-read from their body as they are (an answer read by
the lenient parser, records completed by the client). A worker that dies (killed from outside)
costs speed only: the pages it had are prepared here, and so is everything after.

Why not `concurrent.futures.ProcessPoolExecutor`: on Python 3.11 a worker killed while the
executor's internal threads were busy could leave the import (or its shutdown) waiting forever
(CPython gh-125451 and gh-116685, fixed only from 3.12). Here each worker has one pipe of its
own and nothing else: page k goes to worker k mod N, each worker answers its pages in order,
and a dead worker is an end-of-file on its pipe, so no wait can outlive a worker. The workers
need no watchdog either: they hold no end of their pipe but their own, so when the importing
process goes (even by SIGKILL) they read end-of-file and exit.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess

from pimsync.errors import PimError
from pimsync.pim.models import PimRecord
from pimsync.pim.records import Item, Page
from pimsync.pipeline.overlap import prefetch
from pimsync.staging.prepare import Prepared, prepare_answer, prepare_page, serve_pages

log = logging.getLogger("pimsync.import")

# Pages a listing prepares in the importing process before it starts the workers: a listing of
# up to a thousand records is done before processes would have started.
POOL_AFTER_PAGES = 10

# How long a terminated worker gets to exit before it is killed.
_EXIT_GRACE_SECONDS = 5.0


def _preparing_context() -> SpawnContext | ForkServerContext:
    """How preparing processes are started: from a forkserver, or spawned (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    # forkserver, not fork: the importing process runs threads (reader, writer, heartbeat), and
    # a fork copies their locks in whatever state they are. The server loads only what
    # preparing needs, and every worker is forked from it.
    multiprocessing.set_forkserver_preload(["pimsync.staging.prepare"])
    return multiprocessing.get_context("forkserver")


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    pipe: Connection  # the importing process's end; the worker holds the other one


@dataclass(frozen=True, slots=True)
class _InPool:
    """A page sent to a worker, with what it takes to prepare it here instead."""

    worker: _Worker
    model: type[PimRecord]
    content: bytes
    source: str | None


class PagePreparer:
    """Turns a listing's pages into prepared items, in page order; one per import run."""

    def __init__(self, processes: int, *, pool_after_pages: int | None = None) -> None:
        self._processes = processes
        self._pool_after_pages = POOL_AFTER_PAGES if pool_after_pages is None else pool_after_pages
        self._workers: list[_Worker] | None = None
        self._sent = 0  # pages sent to the workers: the next goes to worker `_sent % N`
        self._broken = False
        self._closed = False
        self._lock = threading.Lock()  # the reader thread starts workers and sends to them
        self.pooled_pages = 0  # pages the workers prepared (the rest were prepared here)

    def prepared(
        self, pages: Iterator[Sequence[Item]], identifier_attribute: str
    ) -> Iterator[list[Prepared]]:
        """Each page of `pages`, read ahead in a thread (overlap.prefetch), prepared.

        A listing that ends early (a stop between batches, an error) ends the workers first,
        for the rest of the run: the reader thread may be waiting on one of them, and prefetch
        waits for the reader.
        """
        handles = prefetch(self._dispatch(pages, identifier_attribute))
        try:
            for handle in handles:
                if isinstance(handle, _InPool):
                    yield self._result(handle, identifier_attribute)
                else:
                    yield prepare_page(handle, identifier_attribute)
        except BaseException:  # GeneratorExit included: the consumer stopped early
            self.close()
            raise
        finally:
            handles.close()

    def _dispatch(
        self, pages: Iterator[Sequence[Item]], identifier_attribute: str
    ) -> Iterator[Sequence[Item] | _InPool]:
        """Runs in the reader thread: a page goes to a worker as soon as it is read."""
        for number, page in enumerate(pages):
            handle = None
            if isinstance(page, Page) and page.content is not None:
                handle = self._send(number, page, page.content, identifier_attribute)
            # Only the body travels on: records parsed here (if any) are let go at once.
            yield page if handle is None else handle

    def _send(
        self, page_number: int, page: Page, content: bytes, identifier_attribute: str
    ) -> _InPool | None:
        """Hand a page to the next worker; None when it is to be prepared here."""
        with self._lock:  # close() does not take the pipes away from under a send
            worker = self._worker_for(page_number)
            if worker is None:
                return None
            try:
                worker.pipe.send((page.model, content, identifier_attribute, page.source))
            except (OSError, ValueError):  # the worker is gone
                self._broke()
                return None
        self._sent += 1
        return _InPool(worker, page.model, content, page.source)

    def _result(self, handle: _InPool, identifier_attribute: str) -> list[Prepared]:
        try:
            prepared: list[Prepared] | PimError = handle.worker.pipe.recv()
        except (EOFError, OSError, ValueError):  # died before (or while) answering
            self._broke()
            return prepare_answer(handle.model, handle.content, identifier_attribute, handle.source)
        if isinstance(prepared, PimError):  # a page with no records to read
            raise prepared
        self.pooled_pages += 1
        return prepared

    def _worker_for(self, page_number: int) -> _Worker | None:
        if (
            self._processes == 0
            or self._broken
            or self._closed
            or page_number < self._pool_after_pages
        ):
            return None
        if self._workers is None:
            context = _preparing_context()
            self._workers = [self._start_worker(context) for _ in range(self._processes)]
        return self._workers[self._sent % len(self._workers)]

    def _start_worker(self, context: SpawnContext | ForkServerContext) -> _Worker:
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(
            target=serve_pages, args=(theirs,), name="pimsync-prepare", daemon=True
        )
        process.start()
        theirs.close()  # the worker's end lives in the worker only: its death is our EOF
        return _Worker(process, ours)

    def _broke(self) -> None:
        if not self._broken and not self._closed:
            self._broken = True
            log.warning("a page preparation process died; the import goes on in this process")

    def close(self) -> None:
        """Stop the workers, whatever they are doing; none is started again afterwards.

        A worker holds nothing worth a goodbye (it only computes), so it is terminated rather
        than asked: that also ends at once a send of the reader thread's that waits on it.
        """
        self._closed = True
        for worker in self._workers or []:
            worker.process.terminate()  # a reader blocked in a send holds the lock: free it
        with self._lock:
            workers, self._workers = self._workers or [], None
        for worker in workers:
            worker.process.terminate()
            worker.process.join(_EXIT_GRACE_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.pipe.close()

    def __enter__(self) -> PagePreparer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
