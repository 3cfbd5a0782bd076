"""The garbage collector, set for a long-running server.

CPython's cyclic collector runs after every 700 net allocations of container objects, and
every hundredth run walks the whole heap: the modules, schemas, models and configuration
the process built at start. A webhook allocates a few thousand short-lived objects (parsed
JSON, models, log events), nearly all freed at once by reference counting; at the default
threshold the collector took about a sixth of the process's CPU time. Here the start-up
heap is frozen out of the collector's walks, and a collection waits for 2,000 net
allocations. Not more: what closed connections leave in reference cycles (aiohttp's
protocol and its buffered body) is freed only by a collection, and a later one lets
refused bodies pile up (tests/test_hostile_traffic.py holds that to 8 MiB per 150).
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle"]

THRESHOLDS = (2000, 10, 10)


def settle() -> None:
    """Freeze what the process has built so far, and collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
