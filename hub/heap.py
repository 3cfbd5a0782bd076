"""The garbage collector, set for a long-running server.

CPython's cyclic collector runs after every 700 net allocations of container objects, and
every hundredth run walks the whole heap: the modules, schemas, models and configuration
the process built at start. A webhook allocates a few thousand short-lived objects, so
those walks come often; with the start-up heap frozen out of them, the collector's time
drops by about a third. The collector still runs as often: what closed connections leave
in reference cycles (aiohttp's protocol and its buffered body) is freed only by a
collection, and rarer ones let refused bodies pile up (tests/test_hostile_traffic.py
holds that to 8 MiB per 150; a threshold of 2,000 or more broke it now and then).
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> None:
    """Freeze what the process has built so far out of the collector's walks."""
    gc.collect()
    gc.freeze()
