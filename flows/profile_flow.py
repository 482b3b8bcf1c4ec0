"""The profile dataflow: raw records -> validated events -> per-profile state -> RocksDB.

Wiring only; sources and sinks are injected, so tests pass ``TestingSource`` /
``TestingSink`` and production passes Kafka (``flows.kafka_io``) or the generator.

    raw ─ parse ─┬─ invalid ─────────────────────────► dead-letter sink
                 └─ key by profile ─ ProfileLogic ─► StoreSink (one WriteBatch per batch)
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from flows import metrics as m
from flows.records import DeadLetter, ParsedEvent, ProfileChange, RawRecord
from operators.events import InvalidEvent, parse_event
from operators.profile import Profile
from state.codec import encode_profile
from state.store import ProfileStore

_topic_counters: dict[str, Any] = {}


def parse_batch(records: list[RawRecord]) -> list[ParsedEvent | DeadLetter]:
    """Parse a batch; metrics are counted once per batch, not per record."""
    out: list[ParsedEvent | DeadLetter] = []
    per_topic: dict[str, int] = {}
    invalid = 0
    for rec in records:
        result = parse_event(rec.value, now_ms=rec.ingest_ms)
        if isinstance(result, InvalidEvent):
            invalid += 1
            m.INVALID_BY_REASON[result.reason].inc()
            out.append(DeadLetter(rec, result))
        else:
            out.append(ParsedEvent(result, rec.source, rec.offset, rec.ingest_ms))
        per_topic[rec.source] = per_topic.get(rec.source, 0) + 1
    for source, n in per_topic.items():
        counter = _topic_counters.get(source)
        if counter is None:
            counter = _topic_counters[source] = m.EVENTS_IN.labels(source.rsplit("/", 1)[0])
        counter.inc(n)
    if invalid:
        m.INVALID.inc(invalid)
    return out


class ProfileLogic(StatefulBatchLogic[ParsedEvent, ProfileChange, str]):
    """The state of one profile while it is active.

    The profile lives in the store; this object caches it between batches and is
    discarded after ``idle`` of wall-clock inactivity, so memory is bounded by the
    number of recently active profiles. Each applied event records its
    (source, offset) in the profile, so records Bytewax replays after a restart are
    skipped instead of counted twice.
    """

    def __init__(self, store: ProfileStore, idle: timedelta) -> None:
        self._store = store
        self._idle = idle
        self._profile: Profile | None = None
        # Also set before the first batch: a logic rebuilt from a recovery snapshot that
        # never sees another event must still be discarded.
        self._evict_at = datetime.now(timezone.utc) + idle

    def _load(self, profile_id: str) -> Profile:
        profile = self._store.get(profile_id)
        m.PROFILES_IN_MEMORY.inc()
        return profile if profile is not None else Profile(profile_id)

    def on_batch(self, values: list[ParsedEvent]) -> tuple[list[ProfileChange], bool]:
        profile = self._profile
        if profile is None:
            profile = self._profile = self._load(values[0].event.profile_key)
        applied = 0
        oldest_ingest = newest_event = 0
        for pe in values:
            if profile.apply(pe.event, pe.source, pe.offset):
                applied += 1
                if oldest_ingest == 0 or pe.ingest_ms < oldest_ingest:
                    oldest_ingest = pe.ingest_ms
                if pe.event.ts_ms > newest_event:
                    newest_event = pe.event.ts_ms
        skipped = len(values) - applied
        if skipped:
            m.REPLAYED.inc(skipped)
        self._evict_at = datetime.now(timezone.utc) + self._idle
        if not applied:
            return [], self.RETAIN
        m.APPLIED.inc(applied)
        change = ProfileChange(profile.profile_id, encode_profile(profile), applied, oldest_ingest, newest_event)
        return [change], self.RETAIN

    def notify_at(self) -> datetime:
        return self._evict_at

    def on_notify(self) -> tuple[list[ProfileChange], bool]:
        if self._profile is not None:
            m.PROFILES_IN_MEMORY.dec()
        return [], self.DISCARD

    def snapshot(self) -> str:
        # The state itself is in the store; Bytewax's recovery only needs to know the key.
        return self._profile.profile_id if self._profile is not None else ""


class _StorePartition(StatelessSinkPartition[ProfileChange]):
    def __init__(self, store: ProfileStore) -> None:
        self._store = store

    def write_batch(self, items: list[ProfileChange]) -> None:
        t0 = time.perf_counter()
        self._store.write_encoded((c.profile_id, c.record) for c in items)
        m.STORE_WRITE.observe(time.perf_counter() - t0)
        m.PROFILES_WRITTEN.inc(len(items))
        # Once per batch: the batch's oldest record (ingest clock) and newest event (event
        # clock) - the worst-case latency of what this write made visible.
        now_ms = time.time() * 1000
        m.LATENCY_INGEST.observe(max(0.0, (now_ms - min(c.oldest_ingest_ms for c in items)) / 1000))
        m.LATENCY_EVENT.observe(max(0.0, (now_ms - max(c.newest_event_ms for c in items)) / 1000))


class StoreSink(DynamicSink[ProfileChange]):
    """Writes each batch of profile changes to the store in one WriteBatch."""

    def __init__(self, store: ProfileStore) -> None:
        self._store = store

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(self._store)


def build_flow(
    source: Source[RawRecord],
    dlq_sink: Sink[DeadLetter],
    store: ProfileStore,
    *,
    idle_evict_seconds: float = 60.0,
    flow_id: str = "pulse",
) -> Dataflow:
    """The profile flow over ``source``; invalid records go to ``dlq_sink``."""
    idle = timedelta(seconds=idle_evict_seconds)
    flow = Dataflow(flow_id)
    raw = op.input("input", flow, source)
    parsed = op.flat_map_batch("parse", raw, parse_batch)
    split = op.branch("valid", parsed, lambda x: isinstance(x, ParsedEvent))
    op.output("dead_letters", split.falses, dlq_sink)
    keyed = op.key_on("by_profile", split.trues, lambda pe: pe.event.profile_key)
    changes = op.stateful_batch("profile", keyed, lambda _resume: ProfileLogic(store, idle))
    op.output("store", op.map("unkey", changes, lambda kv: kv[1]), StoreSink(store))
    return flow
