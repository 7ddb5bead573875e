"""The cyclic garbage collector tuned for a stream of short-lived records."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# The young generation's threshold counts container objects allocated and not yet freed. A
# preparing process holds a page's parsed records (thousands of containers) while it works on
# them: collecting at 50,000 keeps it from traversing the page again and again mid-way. The
# importing process holds few containers; what accumulates there is garbage only the cyclic GC
# frees, the reference cycles httpx leaves per response (about 45 objects each), and at 50,000
# it held about a thousand responses' worth before a collection. At 5,000 the importing
# process's peak RSS over 100k products went from 89 to 84 MB, its GC time unchanged at ~50 ms.
PREPARING_THRESHOLD = 50_000
IMPORTING_THRESHOLD = 5_000


@contextmanager
def gc_tuned_for_streaming(young_threshold: int) -> Iterator[None]:
    """Run the cyclic GC less often while pages stream through.

    An import allocates millions of short-lived dicts; with the default thresholds the young
    generation is traversed every 700 allocations, and everything loaded at start-up with it.
    Freezing the start-up objects and collecting less often cut the time per product by about
    a third in our measurements, and still collects the reference cycles httpx leaves per
    response (so memory stays flat). The old settings come back afterwards. The importing
    process runs its feeds this way, and each preparing process its pages.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
