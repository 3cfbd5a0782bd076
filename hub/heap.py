"""The garbage collector, set for a long-running server.

CPython's cyclic collector runs after every 700 net allocations of container objects, and
every hundredth run walks the whole heap: the modules, schemas, models and configuration
the process built at start. A webhook allocates a few thousand short-lived objects (parsed
JSON, models, log events), nearly all freed at once by reference counting; at the default
threshold the collector then takes about a sixth of the process's CPU time. Here the
start-up heap is frozen out of the collector's walks, and a collection waits for 10,000
net allocations: cycles are still collected, later and in fewer, cheaper rounds.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle"]

THRESHOLDS = (10_000, 10, 10)


def settle() -> None:
    """Freeze what the process has built so far, and collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
