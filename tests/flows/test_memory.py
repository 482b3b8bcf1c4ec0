"""GcFreezer: survivors leave the collector's reach while the flow runs, and come back
after it."""

from __future__ import annotations

import gc
import time

from flows.memory import GcFreezer


def test_freezes_at_start_and_periodically_and_unfreezes_at_the_end():
    kept = [{"n": i} for i in range(10_000)]  # long-lived, like cached profiles
    assert gc.get_freeze_count() == 0
    with GcFreezer(interval_s=0.05) as freezer:
        assert gc.get_freeze_count() >= len(kept)
        deadline = time.monotonic() + 10
        while freezer.freezes < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert freezer.freezes >= 3
    assert gc.get_freeze_count() == 0
    assert len(kept) == 10_000


def test_frozen_objects_are_out_of_the_collectors_reach_until_the_end():
    kept = [[i] for i in range(1000)]
    with GcFreezer(interval_s=60):
        tracked = {id(o) for o in gc.get_objects()}  # what a collection would walk
        assert id(kept) not in tracked and id(kept[0]) not in tracked
        young = [[1]]
        assert id(young) in {id(o) for o in gc.get_objects()}
    assert id(kept) in {id(o) for o in gc.get_objects()}


def test_the_youngest_generation_is_collected_less_often_while_the_flow_runs():
    before = gc.get_threshold()
    with GcFreezer(interval_s=60, gen0_threshold=25_000):
        assert gc.get_threshold() == (25_000, *before[1:])
        gc.collect()
        young = [[i] for i in range(5_000)]  # fewer than the threshold: no collection yet
        assert gc.get_count()[0] >= len(young)
    assert gc.get_threshold() == before
