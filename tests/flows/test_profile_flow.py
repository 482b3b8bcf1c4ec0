"""The profile flow with TestingSource/TestingSink: wiring, dead letters, replays, eviction."""

from __future__ import annotations

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord
from operators.events import parse_event
from operators.profile import Profile
from operators.synthetic import ClickstreamGenerator
from state.store import MemoryStore, RocksStore

T0 = 1_795_800_000_000


def synthetic_records(n: int, seed: int = 3, users: int = 40, partitions: int = 2) -> list[RawRecord]:
    gen = ClickstreamGenerator(seed=seed, users=users, invalid_rate=0.02)
    out = []
    offsets = [0] * partitions
    for i in range(n):
        key, value = gen.next_record(T0 + i * 1000)
        part = hash(key) % partitions
        out.append(RawRecord(value, key, f"events/{part}", offsets[part], T0 + i * 1000))
        offsets[part] += 1
    return out


def reference(records: list[RawRecord]) -> dict[str, Profile]:
    """The expected profiles, computed without Bytewax or a store."""
    profiles: dict[str, Profile] = {}
    for r in records:
        ev = parse_event(r.value, now_ms=r.ingest_ms)
        if hasattr(ev, "reason"):
            continue
        profiles.setdefault(ev.profile_key, Profile(ev.profile_key)).apply(ev, r.source, r.offset)
    return profiles


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "store")
    yield s
    s.close()


def run(records, store, idle=60.0):
    dead = []
    run_main(build_flow(TestingSource(records, batch_size=50), TestingSink(dead), store, idle_evict_seconds=idle))
    return dead


def test_flow_state_equals_reference_fold(store):
    records = synthetic_records(3000)
    dead = run(records, store)
    expected = reference(records)
    assert len(expected) > 20
    for pid, prof in expected.items():
        assert store.get(pid) == prof
    invalid = [r for r in records if hasattr(parse_event(r.value, now_ms=r.ingest_ms), "reason")]
    assert [d.record for d in dead] == invalid
    assert len(dead) > 10


def test_dead_letter_carries_reason_bytes_and_position(store):
    good = orjson.dumps({"event_id": "e1", "type": "page_view", "user_id": "u1", "timestamp": T0})
    bad = b'{"event_id": "e2", "type": "page_view", "user_id": "u1", "timestamp": "nope"}'
    dead = run([RawRecord(good, b"u1", "events/0", 0, T0), RawRecord(bad, b"u1", "events/0", 1, T0),
                RawRecord(b"\xff\xfe", None, "events/1", 7, T0)], store)
    assert [(d.error.reason, d.record.value, d.record.source, d.record.offset) for d in dead] == [
        ("bad_timestamp", bad, "events/0", 1),
        ("not_json", b"\xff\xfe", "events/1", 7),
    ]
    assert "nope" in dead[0].error.detail
    assert store.get("u1").counts == {"page_view": 1}


def test_replayed_records_are_not_counted_twice(store):
    records = synthetic_records(600)
    run(records[:400], store)
    # A restart resumes from an older position: records 300..600 arrive (300..399 again).
    run(records[300:], store)
    for pid, prof in reference(records).items():
        assert store.get(pid) == prof


class CountingStore:
    """Counts loads, to see whether profiles were evicted from memory."""

    def __init__(self, inner):
        self.inner = inner
        self.loads = 0

    def get(self, pid):
        self.loads += 1
        return self.inner.get(pid)

    def write_encoded(self, records):
        self.inner.write_encoded(records)


@pytest.mark.parametrize("idle, evicted", [(60.0, False), (0.000001, True)])
def test_idle_profiles_are_evicted_and_reload_from_the_store(store, idle, evicted):
    records = synthetic_records(1500)
    counting = CountingStore(store)
    run(records, counting, idle=idle)
    expected = reference(records)
    # Without eviction each profile is loaded once; with it, again after each idle spell.
    assert (counting.loads > len(expected)) is evicted
    for pid, prof in expected.items():
        assert store.get(pid) == prof
