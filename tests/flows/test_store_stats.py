"""flows.store_stats: the store gauges follow the directory and the store's estimate, the
thread survives a failing estimate, and stop() ends it."""

from __future__ import annotations

import math
import threading

from prometheus_client import REGISTRY

from flows import metrics as m
from flows.store_stats import StoreStats, directory_size, start_store_stats
from state.store import RocksStore, StoreHealth


def gauge(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {})


def test_directory_size_counts_files_recursively(tmp_path):
    assert directory_size(tmp_path / "missing") == 0
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 23)
    assert directory_size(tmp_path) == 123


def test_refresh_sets_size_and_count(tmp_path):
    (tmp_path / "000001.sst").write_bytes(b"z" * 4096)
    stats = StoreStats(tmp_path, 60, estimate_count=lambda: 42)
    stats.refresh()
    assert gauge("pulse_store_size_bytes") == 4096
    assert gauge("pulse_profiles_in_store") == 42


def test_without_an_estimate_only_the_size_is_reported(tmp_path):
    m.PROFILES_IN_STORE.set(float("nan"))
    StoreStats(tmp_path, 60).refresh()
    assert gauge("pulse_store_size_bytes") == 0
    assert math.isnan(gauge("pulse_profiles_in_store"))


def test_thread_refreshes_until_stopped_and_survives_errors(tmp_path, caplog):
    calls = []
    refreshed = threading.Event()

    def estimate() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("store is closing")
        if len(calls) >= 4:
            refreshed.set()
        return len(calls)

    stats = start_store_stats(tmp_path, 0.01, estimate_count=estimate)
    try:
        assert refreshed.wait(10), "the thread stopped refreshing"
    finally:
        stats.stop()
    assert not stats._thread.is_alive()
    n = len(calls)
    stats.stop()  # idempotent
    assert len(calls) == n
    assert any("store is closing" in r.getMessage() for r in caplog.records)


def test_against_a_real_rocksdb_store(tmp_path):
    store = RocksStore(tmp_path / "store")
    try:
        stats = start_store_stats(store.path, 60, estimate_count=store.estimate_count)
        stats.stop()
        assert gauge("pulse_store_size_bytes") > 0  # RocksDB's own files
        assert gauge("pulse_profiles_in_store") == 0
    finally:
        store.close()


def test_the_write_path_gauges_follow_rocksdb(tmp_path):
    store = RocksStore(tmp_path / "store")
    try:
        for i in range(50):
            store.raw_apply([("profiles", b"p%d" % i, b"x" * 2000)])
        store._cfs["profiles"].flush()  # one file in level 0 of the profiles family
        StoreStats(store.path, 60, health=store.health).refresh()
        assert gauge("pulse_store_level0_files", {"family": "profiles"}) == 1
        assert gauge("pulse_store_level0_files", {"family": "default"}) == 0
        assert gauge("pulse_store_memtable_bytes", {"family": "profiles"}) > 0  # an empty memtable has a size
        assert gauge("pulse_store_write_stopped") == 0
        assert gauge("pulse_store_delayed_write_rate_bytes") == 0
    finally:
        store.close()


def test_rocksdb_stall_time_is_counted_once_and_across_a_reopened_store(tmp_path):
    readings = iter([0.0, 1.5, 1.5, 4.0, 0.5, 2.0])  # cumulative; the store reopened before 0.5

    def health() -> StoreHealth:
        return StoreHealth(stall_seconds=next(readings), delayed_write_rate=0, write_stopped=False,
                           compactions_running=0, level0_files={}, pending_compaction_bytes={}, memtable_bytes={})
    stats = StoreStats(tmp_path, 60, health=health)
    before = gauge("pulse_store_stall_seconds_total")
    counted = []
    for _ in range(6):
        stats.refresh()
        counted.append(gauge("pulse_store_stall_seconds_total") - before)
    assert counted == [0.0, 1.5, 1.5, 4.0, 4.0, 5.5]
