"""The live item index: built from a reader's items, rebuilt when the store changed,
swapped atomically.

The server's catch-up loop calls ``refresh(changed, ready)`` after every catch-up; the
index is rebuilt at most every ``refresh_ms`` and only when a catch-up reported new
writes since the last build (the first build happens as soon as the store is ready).
Requests call ``current()`` once and rank that index to the end: a rebuild replaces the
reference, never the arrays a request is using.

A reader whose ``catch_up`` never reports changes (``MemoryStore``: its writes are
visible at once) gets one build; ``rebuild()`` forces another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from serving.errors import StoreUnavailable
from serving.recommend import ItemIndex, build_index
from state.store import StoreNotReady

log = logging.getLogger(__name__)


class LiveItemIndex:
    def __init__(self, reader, refresh_ms: int = 2000, clock: Callable[[], float] = time.monotonic) -> None:
        if refresh_ms < 1:
            raise ValueError(f"refresh_ms must be at least 1, got {refresh_ms}")
        self._reader = reader
        self._refresh_s = refresh_ms / 1000
        self._clock = clock
        self._index: ItemIndex | None = None
        self._dirty = True  # writes landed since the last build (or nothing built yet)
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._build_lock = threading.Lock()

    @property
    def index(self) -> ItemIndex | None:
        """The current index; None until the first build."""
        return self._index

    def _ready(self) -> bool:
        return bool(getattr(self._reader, "ready", True))  # MemoryStore has no `ready`

    def current(self) -> ItemIndex:
        """The index to rank with. Before the catch-up loop's first build, builds it here.

        Raises ``StoreUnavailable`` while the store does not exist or cannot be read.
        """
        index = self._index
        if index is not None:
            return index
        with self._build_lock:
            if self._index is None:
                try:
                    self._build()
                except StoreNotReady as exc:
                    raise StoreUnavailable(
                        "the profile store is not ready yet (the processor has not created it); retry later"
                    ) from exc
            return self._index

    def refresh(self, changed: bool, ready: bool) -> bool:
        """Called after each catch-up: rebuild if due. Returns True if a new index is in place.

        A failed build is logged (once per distinct error) and retried at the next
        interval; the previous index keeps serving meanwhile.
        """
        if changed:
            self._dirty = True
        if not ready or not self._dirty:
            return False
        now = self._clock()
        if self._index is not None and self._last_attempt is not None and now - self._last_attempt < self._refresh_s:
            return False
        self._last_attempt = now
        with self._build_lock:
            try:
                self._build()
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if text != self._last_error:
                    self._last_error = text
                    log.warning("building the item index failed (keeping the previous one; will retry): %s", text)
                return False
        if self._last_error is not None:
            log.info("building the item index works again")
            self._last_error = None
        return True

    def rebuild(self) -> ItemIndex:
        """Build now, whatever the schedule (tests, tools)."""
        with self._build_lock:
            return self._build()

    def _build(self) -> ItemIndex:
        first = self._index is None
        start = time.perf_counter()
        index = build_index(self._reader.iter_items())
        self._index = index  # one reference assignment: requests see the old or the new index
        self._dirty = False
        took_ms = (time.perf_counter() - start) * 1000
        (log.info if first else log.debug)("item index: %d items in %d categories, built in %.1f ms",
                                           len(index), len(index.category_names), took_ms)
        return index
