"""The profile flow with TestingSource/TestingSink: wiring, dead letters, replays, eviction."""

from __future__ import annotations

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord
from operators.events import InvalidEvent, parse_event
from operators.synthetic import ClickstreamGenerator
from state.store import MemoryStore, RocksStore

T0 = 1_795_800_000_000


def synthetic_records(n: int, seed: int = 3, users: int = 40, partitions: int = 2, step_ms: int = 1000) -> list[RawRecord]:
    gen = ClickstreamGenerator(seed=seed, users=users, invalid_rate=0.02)
    out = []
    offsets = [0] * partitions
    for i in range(n):
        key, value = gen.next_record(T0 + i * step_ms)
        part = hash(key) % partitions
        out.append(RawRecord(value, key, f"events/{part}", offsets[part], T0 + i * step_ms))
        offsets[part] += 1
    return out


def person_of(alias: str) -> str:
    """Ground truth from the generator: u000123 and anon-<seed>-000123 are one person."""
    return alias[-6:]


def reference(records: list[RawRecord], seed: int = 3) -> dict[str, dict]:
    """Expected per-profile totals, computed from the raw log without the flow's code:
    every valid event counted once; a person's anonymous and user events end in one
    profile if (and only if) a valid login linked them."""
    valid = [ev for r in records if not isinstance(ev := parse_event(r.value, now_ms=r.ingest_ms), InvalidEvent)]
    linked = {person_of(ev.user_id) for ev in valid if ev.type == "login"}
    profiles: dict[str, dict] = {}
    for ev in valid:
        person = person_of(ev.user_id or ev.anonymous_id)
        if person in linked or ev.user_id:
            pid = f"user:u{person}"
        else:
            pid = f"anon:anon-{seed}-{person}"
        p = profiles.setdefault(pid, {"counts": {}, "spend": 0.0, "orders": 0, "first": ev.ts_ms, "last": 0})
        p["counts"][ev.type] = p["counts"].get(ev.type, 0) + 1
        if ev.type == "purchase":
            p["orders"] += 1
            p["spend"] += sum(i.price * i.quantity for i in ev.items)
        p["first"] = min(p["first"], ev.ts_ms)
        p["last"] = max(p["last"], ev.ts_ms)
    return profiles


def assert_matches_reference(store, records, seed=3):
    expected = reference(records, seed)
    assert len(expected) > 20
    for pid, exp in expected.items():
        got = store.get(pid)
        assert got is not None, pid
        assert got.counts == exp["counts"], pid
        assert got.orders == exp["orders"] and got.total_spend == pytest.approx(exp["spend"], abs=0.05), pid
        assert (got.first_seen_ms, got.last_seen_ms) == (exp["first"], exp["last"]), pid
    # Nothing else: every profile in the store is one of the people.
    assert store.count() == len(expected)


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "store")
    yield s
    s.close()


def run(records, store, cache_profiles=100_000, cache_bytes=None):
    dead = []
    run_main(build_flow(TestingSource(records, batch_size=50), TestingSink(dead), store,
                        cache_profiles=cache_profiles, cache_bytes=cache_bytes))
    return dead


@pytest.mark.parametrize("cache_profiles, cache_bytes", [(100_000, None), (50, None), (100_000, 200_000)])
def test_large_stream_with_logins_equals_reference(cache_profiles, cache_bytes):
    # With a cache of 50 profiles (100 identity links) for 2,000 people, or a memory
    # budget of ~200 KB (some 40 small profiles), profiles and links are evicted and
    # reloaded all the time, merges included.
    records = synthetic_records(40_000, seed=11, users=2000, partitions=3, step_ms=10)
    store = CountingStore(MemoryStore())
    run(records, store, cache_profiles=cache_profiles, cache_bytes=cache_bytes)
    assert (store.loads > 4000) is (cache_profiles < 100 or cache_bytes is not None)
    assert_matches_reference(store, records, seed=11)


def test_flow_state_equals_reference(store):
    records = synthetic_records(3000)
    dead = run(records, store)
    assert_matches_reference(store, records)
    invalid = [r for r in records if isinstance(parse_event(r.value, now_ms=r.ingest_ms), InvalidEvent)]
    assert [d.record.offset for d in dead] == [r.offset for r in invalid]
    assert len(dead) > 10


def test_dead_letter_carries_reason_bytes_and_position(store):
    good = orjson.dumps({"event_id": "e1", "type": "page_view", "user_id": "u1", "timestamp": T0})
    bad = b'{"event_id": "e2", "type": "page_view", "user_id": "u1", "timestamp": "nope"}'
    dead = run([RawRecord(good, b"u1", "events/0", 0, T0), RawRecord(bad, b"u1", "events/0", 1, T0),
                RawRecord(b"\xff\xfe", None, "events/1", 7, T0)], store)
    assert [(d.error.reason, d.record.value, d.record.source, d.record.offset) for d in dead] == [
        ("bad_timestamp", bad, "events/0", 1),
        ("bad_encoding", b"\xff\xfe", "events/1", 7),
    ]
    assert "nope" in dead[0].error.detail
    assert store.get("user:u1").counts == {"page_view": 1}


def test_dead_letters_never_carry_raw_pii(store):
    bad = orjson.dumps({"event_id": "e2", "type": "identify", "email": "Alice@Example.com",
                        "phone": "+49 30 1234567", "timestamp": "nope"})
    dead = run([RawRecord(bad, b"Alice@Example.com", "events/0", 0, T0)], store)
    assert len(dead) == 1
    assert b"Alice" not in dead[0].record.value and b"1234567" not in dead[0].record.value
    assert b"Alice" not in dead[0].record.key
    assert orjson.loads(dead[0].record.value)["email"] == "<redacted>"


def test_replayed_and_duplicated_records_are_not_counted_twice(store):
    records = synthetic_records(600)
    run(records[:400], store)
    # A restart resumes from an older position: records 300..600 arrive (300..399 again),
    # and a producer retry sends 50 records again at new offsets.
    retries = [RawRecord(r.value, r.key, r.source, 10_000 + i, r.ingest_ms) for i, r in enumerate(records[100:150])]
    run(records[300:] + retries, store)
    assert_matches_reference(store, records)
    # Item statistics count each view, cart and purchase exactly once too.
    expected: dict[str, list[int]] = {}
    for r in records:
        ev = parse_event(r.value, now_ms=r.ingest_ms)
        if isinstance(ev, InvalidEvent) or ev.type not in ("product_view", "add_to_cart", "purchase"):
            continue
        for line in ev.items:
            counts = expected.setdefault(line.item_id, [0, 0, 0])
            slot = ("product_view", "add_to_cart", "purchase").index(ev.type)
            counts[slot] += line.quantity if ev.type == "purchase" else 1
    assert len(expected) > 20
    for item_id, counts in expected.items():
        got = store.get_item(item_id)
        assert [got.views, got.carts, got.purchases] == counts, item_id
        assert got.popularity(T0 + 600_000) > 0


class CountingStore:
    """Counts profile loads, to see whether profiles left memory."""

    def __init__(self, inner):
        self.inner = inner
        self.loads = 0

    def get(self, pid):
        self.loads += 1
        return self.inner.get(pid)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("cache_profiles, evicted", [(100_000, False), (20, True)])
def test_memory_is_bounded_and_evicted_profiles_reload_from_the_store(store, cache_profiles, evicted):
    records = synthetic_records(1500)
    counting = CountingStore(store)
    run(records, counting, cache_profiles=cache_profiles)
    people = len(reference(records))
    # Without eviction a profile is loaded at most once (plus merged ones); with a small
    # cache, again after each eviction - and nothing is lost either way.
    assert (counting.loads > 2 * people) is evicted
    assert_matches_reference(store, records)
