"""The cyclic garbage collector tuned for a stream of short-lived records."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_tuned_for_streaming() -> Iterator[None]:
    """Run the cyclic GC less often while pages stream through.

    An import allocates millions of short-lived dicts; with the default thresholds the young
    generation is traversed every 700 allocations, and everything loaded at start-up with it.
    Freezing the start-up objects and collecting every 50,000 allocations cut the time per
    product by about a third in our measurements, and still collects the reference cycles
    httpx leaves per response (so memory stays flat). The old settings come back afterwards.
    The importing process runs its feeds this way, and each preparing process its pages.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
