"""The profile dataflow: raw records -> validated events -> identity -> profiles -> RocksDB.

Wiring only; sources and sinks are injected, so tests pass ``TestingSource`` /
``TestingSink`` and production passes Kafka (``flows.kafka_io``) or the generator.

    raw ─ parse ─┬─ invalid ─ scrub PII ─────────────────────────────► dead-letter sink
                 └─ identity ─ key by profile ─ ProfileLogic ─┬─► StoreSink (one WriteBatch)
    control ─ erase requests ─┘                               └─► erasure sink (optional)

Exactly-once effects on at-least-once input: every event id is remembered per profile
(``Policy.dedupe_horizon_ms``), so records Bytewax replays after a restart, and
duplicates sent by producers, change nothing. Identity changes are written in the same
WriteBatch as the profile changes they cause.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from flows import metrics as m
from flows.quality_metrics import observe_batch
from flows.records import DeadLetter, EraseRequest, ParsedEvent, RawRecord, Routed, StoreWrite
from flows.runtime_state import ProcessorState
from operators.events import DEFAULT_OPTIONS, InvalidEvent, ParseOptions, parse_event
from operators.identity import is_alias
from operators.items import WEIGHTS
from operators.pii import scrub_record
from operators.profile import APPLIED, Policy
from state.codec import encode_item, encode_profile
from state.store import ProfileStore, encode_members

log = logging.getLogger(__name__)
_topic_counters: dict[str, Any] = {}


def parse_batch(records: list[RawRecord], options: ParseOptions = DEFAULT_OPTIONS) -> list[ParsedEvent | DeadLetter]:
    """Parse a batch; metrics are counted once per batch, not per record. Invalid records
    keep their bytes for the dead-letter topic, with raw PII scrubbed out."""
    out: list[ParsedEvent | DeadLetter] = []
    per_topic: dict[str, int] = {}
    invalid = 0
    for rec in records:
        result = parse_event(rec.value, now_ms=rec.ingest_ms, options=options)
        if isinstance(result, InvalidEvent):
            invalid += 1
            m.INVALID_BY_REASON[result.reason].inc()
            value, _removed = scrub_record(rec.value, options.pii_key)
            key, _removed = scrub_record(rec.key, options.pii_key)  # producers may key by email
            if value is not rec.value or key is not rec.key:
                rec = RawRecord(value, key, rec.source, rec.offset, rec.ingest_ms)
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
    observe_batch(records, out)
    return out


def parse_control(rec: RawRecord) -> EraseRequest | DeadLetter:
    """A control-topic record: ``{"command": "erase", "alias": "...", "request_id": "..."}``."""
    try:
        doc = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError as exc:
        return DeadLetter(rec, InvalidEvent("not_json", f"control record is not JSON: {exc}"))
    if not isinstance(doc, dict) or doc.get("command") != "erase":
        return DeadLetter(rec, InvalidEvent("bad_field", "control record needs \"command\": \"erase\""))
    alias, request_id = doc.get("alias"), doc.get("request_id")
    if not isinstance(alias, str) or not alias.strip() or len(alias) > 300:
        return DeadLetter(rec, InvalidEvent("bad_field", "control record needs a non-empty string 'alias'"))
    if not isinstance(request_id, str):
        request_id = f"{rec.source}@{rec.offset}"
    return EraseRequest(alias.strip(), request_id, rec.ingest_ms)


class IdentityRouter:
    """Maps each event (or erase request) to its profile id, learning links as it goes."""

    def __init__(self, state: ProcessorState) -> None:
        self._state = state

    def __call__(self, item: ParsedEvent | EraseRequest) -> tuple[str, Routed]:
        st = self._state
        with st.lock:
            idx = st.identity
            if isinstance(item, EraseRequest):
                alias = item.alias if is_alias(item.alias) else "user:" + item.alias
                pid = idx.profile_of(alias) or alias
                routing = idx.erase(pid)
                return pid, Routed(routing, idx.sequence, erase=item)
            routing = idx.route(item.event.type, item.event.aliases)
            if routing.conflict:
                m.IDENTITY_CONFLICTS.inc()
            if routing.capped:
                m.IDENTITY_CAPPED.inc()
                log.warning("alias cap (%d) reached for a profile; link refused", idx.max_aliases)
            if routing.merged_from:
                m.IDENTITY_MERGES.inc(len(routing.merged_from))
            return routing.profile_id, Routed(routing, idx.sequence, event=item)


class ProfileLogic(StatefulBatchLogic[Routed, StoreWrite, None]):
    """Applies a key's batch to the profiles in the shared working set.

    The state is in ``ProcessorState`` (cache in front of the store), not in this object,
    so the logic is discarded after every batch: Bytewax keeps nothing per key, and an
    event routed before a merge finds its profile where the merge put it.
    """

    def __init__(self, state: ProcessorState) -> None:
        self._state = state

    def on_batch(self, values: list[Routed]) -> tuple[list[StoreWrite], bool]:
        st = self._state
        with st.lock:
            write = StoreWrite(write_seq=st.next_seq())
            dirty: set[str] = set()
            dirty_items: set[str] = set()
            outcomes: dict[str, int] = {}
            for item in values:
                if item.routing.alias_updates or item.routing.member_updates:
                    write.identity_seqs.add(item.seq)
                if item.erase is not None:
                    self._erase(item, write, dirty)
                    continue
                self._identity(item, write)
                pid = st.identity.current(item.routing.profile_id)
                profile = st.profiles.get_or_create(pid)
                for old in item.routing.merged_from:
                    merged = st.profiles.get(old)
                    if merged is not None and profile.absorb(merged, st.policy):
                        dirty.add(pid)
                    # Only now may events still routed to ``old`` go to ``pid``: had they
                    # gone there before the absorb, a crash between the two writes could
                    # count them in both profiles.
                    st.identity.moved[old] = pid
                    if old != pid:
                        write.profiles[old] = None
                        st.profiles.delete(old, write.write_seq)
                        dirty.discard(old)
                pe = item.event
                outcome = profile.apply(pe.event, pe.source, pe.offset, st.policy)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if outcome == APPLIED:
                    dirty.add(pid)
                    self._items(pe.event, dirty_items)
                    if write.oldest_ingest_ms == 0 or pe.ingest_ms < write.oldest_ingest_ms:
                        write.oldest_ingest_ms = pe.ingest_ms
                    write.newest_event_ms = max(write.newest_event_ms, pe.event.ts_ms)
            for item_id in dirty_items:
                write.items[item_id] = encode_item(st.items.get(item_id))
                st.items.changed(item_id, write.write_seq)
            for pid in dirty:
                profile = st.profiles.get(pid)
                profile.compact(st.policy)
                write.profiles[pid] = encode_profile(profile)
                st.profiles.changed(pid, write.write_seq)
            m.PROFILES_IN_MEMORY.set(len(st.profiles))
        for outcome, n in outcomes.items():
            m.OUTCOME[outcome].inc(n)
        if not (write.profiles or write.aliases or write.members or write.erasures or write.items):
            return [], self.DISCARD
        return [write], self.DISCARD

    def _items(self, event, dirty_items: set[str]) -> None:
        """Item popularity from applied (hence deduplicated, consented) behaviour."""
        if event.type not in WEIGHTS:
            return
        for line in event.items:
            self._state.items.get(line.item_id).observe(event.type, event.ts_ms, quantity=line.quantity,
                                                        category=line.category, price=line.price)
            dirty_items.add(line.item_id)

    def snapshot(self) -> None:
        return None  # never called: the logic is discarded after every batch

    def _identity(self, item: Routed, write: StoreWrite) -> None:
        r = item.routing
        write.aliases.update(r.alias_updates)
        for pid, members in r.member_updates.items():
            write.members[pid] = None if members is None else encode_members(members)

    def _erase(self, item: Routed, write: StoreWrite, dirty: set[str]) -> None:
        st = self._state
        pid = st.identity.current(item.routing.profile_id)
        aliases = [a for a, target in item.routing.alias_updates.items() if target is None]
        self._identity(item, write)
        existed = st.profiles.get(pid) is not None
        write.profiles[pid] = None
        st.profiles.delete(pid, write.write_seq)
        dirty.discard(pid)
        write.erasures.append({
            "request_id": item.erase.request_id,
            "alias": item.erase.alias,
            "profile_id": pid,
            "aliases": sorted(aliases),
            "found": existed,
            "erased_ms": int(time.time() * 1000),
        })
        m.ERASURES.inc()


class _StorePartition(StatelessSinkPartition[StoreWrite]):
    def __init__(self, store: ProfileStore, state: ProcessorState) -> None:
        self._store = store
        self._state = state

    def write_batch(self, items: list[StoreWrite]) -> None:
        profiles: dict[str, bytes | None] = {}
        aliases: dict[str, str | None] = {}
        members: dict[str, bytes | None] = {}
        item_stats: dict[str, bytes] = {}
        for w in items:  # later writes win, as they would one by one
            profiles.update(w.profiles)
            aliases.update(w.aliases)
            members.update(w.members)
            item_stats.update(w.items)
        t0 = time.perf_counter()
        self._store.apply(profiles, aliases, members, item_stats)
        m.STORE_WRITE.observe(time.perf_counter() - t0)
        self._state.written({w.write_seq for w in items}, set().union(*(w.identity_seqs for w in items)))
        m.PROFILES_WRITTEN.inc(sum(1 for v in profiles.values() if v is not None))
        # Once per batch: the batch's oldest record (ingest clock) and newest event (event
        # clock) - the worst-case latency of what this write made visible.
        now_ms = time.time() * 1000
        ingest = [w.oldest_ingest_ms for w in items if w.oldest_ingest_ms]
        if ingest:
            m.LATENCY_INGEST.observe(max(0.0, (now_ms - min(ingest)) / 1000))
            m.LATENCY_EVENT.observe(max(0.0, (now_ms - max(w.newest_event_ms for w in items)) / 1000))


class StoreSink(DynamicSink[StoreWrite]):
    """Writes each batch of changes to the store in one WriteBatch."""

    def __init__(self, store: ProfileStore, state: ProcessorState) -> None:
        self._store = store
        self._state = state

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(self._store, self._state)


def build_flow(
    source: Source[RawRecord],
    dlq_sink: Sink[DeadLetter],
    store: ProfileStore,
    *,
    options: ParseOptions = DEFAULT_OPTIONS,
    policy: Policy | None = None,
    max_aliases: int = 50,
    cache_profiles: int = 100_000,
    control: Source[RawRecord] | None = None,
    erasure_sink: Sink[dict] | None = None,
    flow_id: str = "pulse",
) -> Dataflow:
    """The profile flow over ``source``; invalid records go to ``dlq_sink``; erase
    requests come from ``control`` and their records go to ``erasure_sink``."""
    state = ProcessorState(store, policy=policy or Policy(), max_aliases=max_aliases, cache_profiles=cache_profiles)
    flow = Dataflow(flow_id)
    raw = op.input("input", flow, source)
    parsed = op.flat_map_batch("parse", raw, lambda batch: parse_batch(batch, options))
    split = op.branch("valid", parsed, lambda x: isinstance(x, ParsedEvent))
    dead = split.falses
    work = split.trues
    if control is not None:
        commands = op.branch("valid_control", op.map("parse_control", op.input("control", flow, control),
                                                     parse_control), lambda x: isinstance(x, EraseRequest))
        work = op.merge("with_control", work, commands.trues)
        dead = op.merge("all_dead_letters", dead, commands.falses)
    op.output("dead_letters", dead, dlq_sink)
    routed = op.map("identity", work, IdentityRouter(state))
    writes = op.stateful_batch("profile", routed, lambda _resume: ProfileLogic(state))
    writes = op.map("unkey", writes, lambda kv: kv[1])
    op.output("store", writes, StoreSink(store, state))
    if erasure_sink is not None:
        op.output("erasures", op.flat_map("erase_records", writes, lambda w: w.erasures), erasure_sink)
    return flow
