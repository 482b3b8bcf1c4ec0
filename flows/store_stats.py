"""Store gauges for the processor: profiles in the store, bytes on disk and RocksDB's
write path (stalls, level-0 files, pending compaction), refreshed by a small background
thread (a directory walk and a few RocksDB property reads every few seconds, nothing on
the event path).

    stats = start_store_stats(cfg.store_dir, 10.0, estimate_count=store.estimate_count,
                              health=store.health)
    ...
    stats.stop()      # before store.close(): the thread reads through the store's handle
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from flows import metrics as m
from state.store import StoreHealth

log = logging.getLogger(__name__)


def directory_size(path: str | os.PathLike) -> int:
    """Bytes in the regular files under ``path`` (0 if it does not exist); files that vanish
    during the walk (RocksDB compactions delete them) are skipped."""
    total = 0
    stack = [Path(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


class StoreStats:
    """Refreshes ``pulse_store_size_bytes``, ``pulse_profiles_in_store`` and the write-path
    gauges; see ``start_store_stats``."""

    def __init__(self, store_dir: str | os.PathLike, interval: float,
                 estimate_count: Callable[[], int] | None = None,
                 health: Callable[[], StoreHealth] | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.store_dir = Path(store_dir)
        self.interval = interval
        self._estimate_count = estimate_count
        self._health = health
        self._stall_seen = 0.0  # RocksDB's cumulative stall seconds already counted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pulse-store-stats", daemon=True)
        self._last_error: str | None = None

    def refresh(self) -> None:
        """Update the gauges once (also called by the thread every ``interval`` seconds)."""
        m.STORE_SIZE.set(directory_size(self.store_dir))
        try:
            if self._estimate_count is not None:
                m.PROFILES_IN_STORE.set(self._estimate_count())
            if self._health is not None:
                self._set_health(self._health())
        except Exception as exc:  # a store being closed or reopened: report once, keep going
            text = f"{type(exc).__name__}: {exc}"
            if text != self._last_error:
                self._last_error = text
                log.warning("cannot read the figures of the store at %s (will retry): %s", self.store_dir, text)
        else:
            self._last_error = None

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:  # never let a gauge kill the thread
                log.exception("store statistics refresh failed")
            if self._stop.wait(self.interval):
                return

    def start(self) -> StoreStats:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (idempotent); call before closing the store it reads."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _set_health(self, h: StoreHealth) -> None:
        if h.stall_seconds > self._stall_seen:
            m.STORE_STALL.inc(h.stall_seconds - self._stall_seen)
        self._stall_seen = h.stall_seconds  # lower after the store was reopened: count from there
        _set_gauges(h)


def _set_gauges(h: StoreHealth) -> None:
    m.STORE_DELAYED_RATE.set(h.delayed_write_rate)
    m.STORE_WRITE_STOPPED.set(int(h.write_stopped))
    m.STORE_COMPACTIONS.set(h.compactions_running)
    for gauge, values in ((m.STORE_LEVEL0, h.level0_files), (m.STORE_PENDING, h.pending_compaction_bytes),
                          (m.STORE_MEMTABLES, h.memtable_bytes)):
        for family, value in values.items():
            gauge.labels(family).set(value)


def start_store_stats(store_dir: str | os.PathLike, interval: float = 10.0, *,
                      estimate_count: Callable[[], int] | None = None,
                      health: Callable[[], StoreHealth] | None = None) -> StoreStats:
    """Start refreshing the store gauges now and every ``interval`` seconds (daemon thread).

    ``estimate_count`` gives the number of profiles (``RocksStore.estimate_count``) and
    ``health`` RocksDB's write-path figures (``RocksStore.health``); without them only the
    size on disk is reported. Returns the handle whose ``stop()`` ends the thread.
    """
    return StoreStats(store_dir, interval, estimate_count, health).start()
