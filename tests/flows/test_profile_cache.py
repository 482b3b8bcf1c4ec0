"""The processor's profile cache: bounded by count and by estimated memory, never
dropping a profile whose write is still in flight."""

from __future__ import annotations

from flows.runtime_state import MEMORY_PER_STORED_BYTE, ProfileCache
from operators.profile import Profile
from state.store import MemoryStore


def filled(n: int) -> MemoryStore:
    store = MemoryStore()
    store.write(Profile(f"user:{i}") for i in range(n))
    return store


def write(cache: ProfileCache, pid: str, seq: int, stored_bytes: int) -> None:
    cache.get_or_create(pid)
    cache.changed(pid, seq, stored_bytes)
    cache.written({seq})


def test_the_count_bound_drops_the_least_recently_used_down_to_ninety_percent():
    cache = ProfileCache(filled(200), capacity=100)
    for i in range(100):
        cache.get(f"user:{i}")
    cache.get("user:0")  # now the most recent
    cache.get("user:100")  # one too many
    assert len(cache) == 90
    kept = set(cache._entries)
    assert "user:0" in kept and "user:100" in kept
    assert "user:1" not in kept and "user:11" not in kept and "user:12" in kept


def test_the_memory_bound_drops_profiles_by_their_written_size():
    budget = 100 * 1000 * MEMORY_PER_STORED_BYTE  # room for 100 records of 1,000 bytes
    cache = ProfileCache(MemoryStore(), capacity=10_000, budget_bytes=budget)
    for i in range(100):
        write(cache, f"user:{i}", i + 1, 1000)
    assert len(cache) == 100 and cache.memory_estimate() == budget
    # One heavy profile (the size of 20 light ones) pushes out the oldest light ones,
    # down to 90% of the budget.
    write(cache, "user:heavy", 1000, 20_000)
    assert cache.memory_estimate() <= budget * 9 // 10
    assert "user:heavy" in cache._entries and "user:99" in cache._entries
    assert "user:0" not in cache._entries
    assert len(cache) == 1 + (budget * 9 // 10 - 20_000 * MEMORY_PER_STORED_BYTE) // (1000 * MEMORY_PER_STORED_BYTE)


def test_a_profile_growing_in_place_is_counted_at_its_latest_size():
    cache = ProfileCache(MemoryStore(), capacity=100, budget_bytes=10**9)
    write(cache, "user:a", 1, 1000)
    write(cache, "user:a", 2, 3000)
    assert cache.memory_estimate() == 3000 * MEMORY_PER_STORED_BYTE
    cache.delete("user:a", 3)
    cache.written({3})
    assert cache.memory_estimate() == 0


def test_loaded_profiles_count_as_the_average_until_written():
    store = filled(3)
    cache = ProfileCache(store, capacity=100, budget_bytes=10**9)
    write(cache, "user:x", 1, 2000)
    cache.get("user:0")
    cache.get("user:1")
    assert cache.memory_estimate() == 3 * 2000 * MEMORY_PER_STORED_BYTE


def test_pinned_profiles_stay_whatever_the_bounds():
    budget = 10 * 1000 * MEMORY_PER_STORED_BYTE
    cache = ProfileCache(MemoryStore(), capacity=10_000, budget_bytes=budget)
    for i in range(30):  # written but not yet landed: pinned
        cache.get_or_create(f"user:{i}")
        cache.changed(f"user:{i}", 1, 1000)
    cache.get_or_create("user:extra")
    assert len(cache) == 31  # over budget, but every written entry is in flight
    cache.written({1})
    assert cache.memory_estimate() <= budget * 9 // 10


def test_rescheduled_timers_do_not_grow_the_heap():
    from flows.runtime_state import Timers

    timers = Timers(MemoryStore())
    for step in range(50_000):  # 10 profiles rescheduled 5,000 times each
        timers.set(f"user:{step % 10}", 1_000_000 + step)
    assert len(timers) == 10 and len(timers._heap) <= 2 * 10 + 1024 + 1
    timers.set("user:3", None)
    assert timers.due(1_000_000 + 49_995) == ["user:0", "user:1", "user:2", "user:4"]
    assert timers.due(10**9) == ["user:5", "user:6", "user:7", "user:8", "user:9"]


def test_loads_past_the_bounds_while_everything_is_pinned_do_not_rescan_the_cache():
    """A batch that reads many profiles (timers falling due after a backlog) pins them all:
    the cache outgrows its bounds until the write lands, and each load must not scan it."""
    cache = ProfileCache(filled(5000), capacity=100)
    cache.batch_seq = 1
    for i in range(5000):
        cache.get(f"user:{i}")
    assert len(cache) == 5000  # all pinned by the batch
    assert cache.scanned < 4 * 5000  # was ~5000^2/2: every load rescanned the pinned entries
    cache.batch_seq = None
    cache.written({1})
    assert len(cache) <= 100


def test_a_cache_stuck_over_its_bound_trims_again_once_it_grew_by_half():
    cache = ProfileCache(filled(400), capacity=100)
    cache.batch_seq = 1
    for i in range(150):
        cache.get(f"user:{i}")
    cache.batch_seq = None  # later loads are not pinned: the next trims drop them
    sizes = []
    for i in range(150, 400):
        cache.get(f"user:{i}")
        sizes.append(len(cache))
    assert max(sizes) <= 150 + 150 // 2 + 1  # not unbounded: the unpinned loads go again
    assert min(sizes[100:]) >= 150  # the pinned ones stay


def test_reads_from_the_store_are_counted_as_loads_and_hits_are_not():
    from prometheus_client import REGISTRY

    def loads() -> float:
        return REGISTRY.get_sample_value("pulse_profile_loads_total")

    cache = ProfileCache(filled(3), capacity=100)
    before = loads()
    cache.get("user:0")
    cache.get("user:0")  # in memory now
    cache.get_or_create("user:new")  # not stored: a read all the same
    cache.get("user:1")
    assert loads() - before == 3
