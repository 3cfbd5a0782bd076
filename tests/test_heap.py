"""The collector settings of a serving process (``hub/heap.py``)."""

from __future__ import annotations

import gc

from hub import heap


def test_settle_freezes_the_start_up_heap_and_cycles_are_still_collected() -> None:
    thresholds = gc.get_threshold()
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == thresholds
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
