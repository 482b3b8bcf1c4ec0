"""Keeping Python's cyclic garbage collector from stalling the processor.

The profile cache holds millions of small objects (about 140 per cached profile). A full
collection walks every one of them holding the GIL — 2.6 s for 20,000 cached profiles,
measured — and CPython runs one each time the old generation has grown by a quarter,
which a cache that keeps loading and dropping profiles does every few seconds. In the
soak these were multi-second stalls, long enough for the metrics endpoint to time out.

Profiles, items and the caches hold no reference cycles: reference counting frees them
when they are dropped. So while the flow runs, ``GcFreezer`` moves whatever survived
into CPython's permanent generation (``gc.freeze``) every ``interval_s``; collections
then look only at what was allocated since. The cost is that a reference cycle created
before a freeze is not collected until ``unfreeze`` (at the end of the run); the soak's
RSS figure is what shows whether that matters.

The youngest generation is also collected less often while the flow runs: CPython
collects it every 700 new container objects, and a profile update allocates hundreds
that reference counting frees moments later, so most collections walked objects about
to die anyway. In the segments benchmark's flow (60,000 events, 20 segments) the
collector took 1.13 s in 1,708 collections at 700, 0.33 s in 91 at 10,000, 0.14 s in 7
at 100,000 (20 ms per collection on average there; the pause at ``GEN0_THRESHOLD``,
between the last two, was not measured). With it, the same benchmark ran 26% faster
without segments and 14% faster with them.

``gc.freeze`` moves the generations' lists at once (it does not walk them), so freezing
often costs nothing, and what survives a batch (new profiles in the cache, their counters)
is not walked again by the collections that follow. Every second rather than every five:
main-thread CPU per event in that benchmark, alternating runs, 58.5 / 61.1 -> 55.3 / 56.5
µs more with segments than without (0.25 s: 56.1 / 54.7, no better). No reference cycle
is left behind by the flow to freeze: with the collector off, a collection after a run of
20,000 events (segments and models on) found no garbage.
"""

from __future__ import annotations

import gc
import threading

FREEZE_INTERVAL_S = 1.0
GEN0_THRESHOLD = 50_000


class GcFreezer:
    """``with GcFreezer(): run the flow`` — freezes the heap now and every ``interval_s``,
    and collects the youngest generation every ``gen0_threshold`` new objects; both
    undone at the end."""

    def __init__(self, interval_s: float = FREEZE_INTERVAL_S, gen0_threshold: int = GEN0_THRESHOLD) -> None:
        self.interval_s = interval_s
        self.gen0_threshold = gen0_threshold
        self._saved_threshold = gc.get_threshold()
        self.freezes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pulse-gc-freezer", daemon=True)

    def __enter__(self) -> GcFreezer:
        self._saved_threshold = gc.get_threshold()
        gc.set_threshold(self.gen0_threshold, *self._saved_threshold[1:])
        self._freeze()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        gc.unfreeze()
        gc.set_threshold(*self._saved_threshold)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._freeze()

    def _freeze(self) -> None:
        gc.freeze()
        self.freezes += 1
