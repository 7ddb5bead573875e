"""Overlapping an import's three kinds of work: reading the PIM, preparing records, writing.

An import is a loop of fetch (waiting on the PIM), prepare (validate, hash: Python holding the
GIL) and write (SQLite and the PostgreSQL driver release the GIL while they work). Run in one
thread they add up; here the fetch runs ahead in a reader thread (`prefetch`) and each batch is
written in a writer thread while the next one is prepared (`OneInFlight`), so the waits and the
database's own work happen beside the Python work instead of after it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(pages: Iterator[T], depth: int = 3) -> Generator[T, None, None]:
    """Read `pages` in a background thread, at most `depth` ahead of the consumer.

    While the consumer prepares and writes one page, the next ones are already on their way:
    the PIM's latency and our own work overlap instead of adding up. The reader only fetches,
    parses and hands pages on (validation is the consumer's, or the preparing processes'), so
    it asks for the next page as soon as it knows where it is. An exception in the reader is
    raised in the consumer; a consumer that stops early stops the reader.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        buffer.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            buffer.put(exc)

    reader = threading.Thread(target=read, name="pimsync-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # The reader may be blocked putting its last page or its end marker into a full
        # buffer: empty it, so it sees the stop and ends now rather than at the join's timeout.
        while True:
            try:
                buffer.get_nowait()
            except queue.Empty:
                break
        reader.join(timeout=5)


class OneInFlight:
    """Runs calls one at a time in a background thread, while the caller prepares the next.

    `submit` first waits for the call in flight, so at most one runs and they run in order;
    a call's exception is raised in the caller at the next `submit` or `wait`. The caller never
    touches what the call in flight uses (the staging connection) until it has waited for it.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future[None] | None = None

    def submit(self, call: Callable[[], None]) -> None:
        self.wait()
        self._pending = self._pool.submit(call)

    def wait(self) -> None:
        """Wait for the call in flight; raise its exception, if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the call in flight, whatever its outcome, and stop the thread.

        A caller that is failing closes without `wait`: its own exception is the one to raise,
        and the call in flight must have finished before anyone rolls its connection back.
        """
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.exception()
        self._pool.shutdown(wait=True)
