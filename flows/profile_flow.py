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

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, Sink, StatelessSinkPartition

from flows import metrics as m
from flows.records import DeadLetter, EraseRequest, ParsedEvent, ParsedExposure, RawRecord, Routed, StoreWrite, Tick
from flows.changelog import changelog_entry, changelog_key
from flows.cluster import to_owner
from flows.parse import parse_batch, parse_control, parse_exposure
from flows.runtime_state import CHANGELOG_SEQ_META, OUTBOX_SEQ_META, SEGMENTS_META, ProcessorState
from operators.events import DEFAULT_OPTIONS, InvalidEvent, ParseOptions
from operators import attribution
from operators.identity import is_alias
from operators.items import WEIGHTS
from operators.pii import scrub_record
from operators.profile import APPLIED, DUPLICATE, REPLAYED, Policy, event_digest
from operators.segments import SegmentSet
from operators.triggers import CAUSE_ERASED, CAUSE_MERGED, ENTERED
from state.codec import encode_item, encode_profile
from state.store import (ProfileStore, encode_members, encode_ms, experiment_key, member_key, members_prefix, meta_key,
                         outbox_key, timer_key)

TOO_LATE = "too_late"
# Profiles whose timers fall due that one batch handles (``ProfileStep._ticks``).
TIMERS_PER_BATCH = 500

log = logging.getLogger(__name__)


class IdentityRouter:
    """Maps each event (or erase request) to its profile id, learning links as it goes."""

    def __init__(self, state: ProcessorState) -> None:
        self._state = state

    def __call__(self, item: ParsedEvent | EraseRequest | Tick) -> Routed:
        st = self._state
        if type(item) is Tick:
            return Routed(None, 0, tick=item)
        with st.lock:
            idx = st.identity
            if type(item) is ParsedExposure:
                routing = idx.route("exposure", (item.unit,))
                return Routed(routing, idx.sequence, exposure=item)
            if isinstance(item, EraseRequest):
                alias = item.alias if is_alias(item.alias) else "user:" + item.alias
                pid = idx.profile_of(alias) or alias
                routing = idx.erase(pid)
                return Routed(routing, idx.sequence, erase=item)
            routing = idx.route(item.event.type, item.event.aliases)
            if routing.conflict:
                m.IDENTITY_CONFLICTS.inc()
            if routing.capped:
                m.IDENTITY_CAPPED.inc()
                log.warning("alias cap (%d) reached for a profile; link refused", idx.max_aliases)
            if routing.merged_from:
                m.IDENTITY_MERGES.inc(len(routing.merged_from))
            return Routed(routing, idx.sequence, event=item)


class ProfileLogic:
    """Applies a batch, in stream order, to the profiles in the shared working set.

    The state is in ``ProcessorState`` (cache in front of the store), not in Bytewax:
    the step is a plain batch map, so records are handled in the order they were read,
    whatever profile they belong to. That order is what makes segment transitions a
    function of the input (a keyed step may run one key's records before another's
    that were read earlier), and an event routed before a merge finds its profile
    where the merge put it.
    """

    def __init__(self, state: ProcessorState) -> None:
        self._state = state

    def __call__(self, values: list[Routed]) -> list[StoreWrite]:
        st = self._state
        engine = st.engine
        with st.lock:
            write = StoreWrite(write_seq=st.next_seq())
            # Every profile this batch reads stays in memory until its write lands.
            st.profiles.batch_seq = write.write_seq
            dirty: set[str] = set()
            dirty_items: set[str] = set()
            outcomes: dict[str, int] = {}
            sources: set[str] = set()
            for item in values:
                if item.tick is not None:
                    st.clocks.pending.append(item.tick)
                    continue
                if item.routing.alias_updates or item.routing.member_updates:
                    write.identity_seqs.add(item.seq)
                if item.erase is not None:
                    self._erase(item, write, dirty)
                    continue
                if item.exposure is not None:
                    self._identity(item, write)
                    self._exposure(item, write, dirty)
                    continue
                self._identity(item, write)
                pid = st.identity.current(item.routing.profile_id)
                # Pinned by the read (batch_seq): loading other profiles in this batch must
                # not evict it (a later record of it would reload the stored, older version).
                profile = st.profiles.get_or_create(pid)
                pe = item.event
                for old in item.routing.merged_from:
                    merged = st.profiles.get(old)
                    if merged is not None and old != pid and engine.active:
                        # The record's watermark has passed for every profile it touches, the
                        # absorbed one included: its time changes before it come first, so the
                        # outcome does not depend on whether a heartbeat fired them earlier.
                        if not profile.is_applied(pe.source, pe.offset):
                            self._emit(pid, engine.advance(profile, pe.watermark_ms), write)
                            self._emit(old, engine.advance(merged, pe.watermark_ms), write)
                        self._emit(old, engine.leave_all(merged, CAUSE_MERGED, max(merged.clock_ms, pe.watermark_ms)),
                                   write)
                    if merged is not None and profile.absorb(merged, st.policy):
                        dirty.add(pid)
                    # Only now may events still routed to ``old`` go to ``pid``: had they
                    # gone there before the absorb, a crash between the two writes could
                    # count them in both profiles.
                    st.identity.moved[old] = pid
                    if old != pid:
                        write.profiles[old] = None
                        st.profiles.delete(old, write.write_seq)
                        self._unschedule(old, write)
                        dirty.discard(old)
                st.clocks.done[pe.source] = st.clocks.done.get(pe.source, 0) + 1
                outcome = self._apply(profile, pe, write, dirty, merged=bool(item.routing.merged_from))
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if outcome == APPLIED:
                    dirty.add(pid)
                    self._items(profile, pe.event, dirty_items, write.write_seq)
                    if write.oldest_ingest_ms == 0 or pe.ingest_ms < write.oldest_ingest_ms:
                        write.oldest_ingest_ms = pe.ingest_ms
                    write.newest_event_ms = max(write.newest_event_ms, pe.event.ts_ms)
            if st.clocks.pending or st.timers.backlog:
                self._ticks(write, dirty, sources)
            for item_id in dirty_items:
                write.items[item_id] = encode_item(st.items.get(item_id))
                st.items.changed(item_id, write.write_seq)
            for pid in dirty:
                profile = st.profiles.get(pid)
                if profile is None:
                    continue
                profile.compact(st.policy)
                write.profiles[pid] = encoded = encode_profile(profile)
                st.profiles.changed(pid, write.write_seq, len(encoded))
                self._schedule(pid, self._wake(profile), write)
            st.learner.maybe_save(write.raw, force=st.clocks.all_finished())
            if sources:
                write.raw.update(st.clocks.meta(sources))
            if write.triggers:
                write.raw[meta_key(OUTBOX_SEQ_META)] = encode_ms(st.outbox_seq)
            m.PROFILES_IN_MEMORY.set(len(st.profiles))
            m.PROFILE_CACHE_BYTES.set(st.profiles.memory_estimate())
            m.TIMERS_PENDING.set(len(st.timers))
            st.profiles.batch_seq = None
        for outcome, n in outcomes.items():
            m.OUTCOME[outcome].inc(n)
        if not (write.profiles or write.aliases or write.members or write.erasures or write.items or write.raw
                or write.dead_letters):
            st.written({write.write_seq}, set())  # nothing to write: unpin what this batch pinned
            return []
        return [write]

    def _apply(self, profile, pe: ParsedEvent, write: StoreWrite, dirty: set[str], merged: bool = False) -> str:
        """One event: time transitions due before its watermark, then the event itself."""
        st = self._state
        engine = st.engine
        event = pe.event
        if profile.is_applied(pe.source, pe.offset):
            return REPLAYED
        if engine.active and profile.next_check_ms is not None and profile.next_check_ms < pe.watermark_ms:
            self._emit(profile.profile_id, engine.advance(profile, pe.watermark_ms), write)
            dirty.add(profile.profile_id)
        if event.ts_ms < pe.watermark_ms - st.lateness_ms:
            if event_digest(event.event_id) in profile.seen:
                return DUPLICATE
            m.LATE_DROPPED.inc()
            self._too_late(pe, write)
            return TOO_LATE
        if engine.active and event.ts_ms < pe.watermark_ms:
            engine.catch_up(profile, pe.watermark_ms)
        outcome = profile.apply(event, pe.source, pe.offset, st.policy)
        if outcome == APPLIED and st.experiments.experiments:
            self._totals(attribution.on_event(profile, event, st.experiment_by_id), write)
        if outcome == APPLIED and engine.active:
            if event.ts_ms < profile.clock_ms:
                m.LATE_APPLIED.inc()
            self._emit(profile.profile_id, engine.on_event(profile, event.event_id, event.ts_ms, event.type,
                                                           full=merged), write)
        return outcome

    def backfill(self, chunk: int = 1000) -> int:
        """Bring stored memberships in line with the segment definitions, once, before the
        flow starts: added or changed segments get their members (``entered`` triggers
        flagged backfill), removed ones lose theirs silently. Returns the triggers written."""
        st = self._state
        store = st.store
        stored_raw = store.get_meta(SEGMENTS_META)
        stored = {} if stored_raw is None else orjson.loads(stored_raw)
        current = {seg.id: seg.version for seg in st.segments.segments}
        if stored == current:
            return 0
        log.info("segment definitions changed (%d stored, %d now): recomputing memberships", len(stored), len(current))
        total = 0
        write = StoreWrite()

        def flush() -> None:
            nonlocal write
            store.apply(write.profiles, raw=write.raw)
            if write.triggers:
                st.triggers_written(write.triggers)
            write = StoreWrite()

        for profile in store.iter_profiles():
            pid = profile.profile_id
            before = (dict(profile.segments), profile.next_check_ms)
            if st.engine.active:
                triggers = st.engine.backfill(profile)
            else:
                triggers, profile.segments, profile.next_check_ms = [], {}, None
            self._emit(pid, triggers, write)
            total += len(triggers)
            if (profile.segments, profile.next_check_ms) != before:
                write.profiles[pid] = encode_profile(profile)
                self._schedule(pid, self._wake(profile), write)
            if len(write.profiles) >= chunk:
                write.raw[meta_key(OUTBOX_SEQ_META)] = encode_ms(st.outbox_seq)
                flush()
        for seg_id in set(stored) - set(current):
            for key, _value in store.scan(members_prefix(seg_id)):
                write.raw[key] = None
        write.raw[meta_key(OUTBOX_SEQ_META)] = encode_ms(st.outbox_seq)
        write.raw[meta_key(SEGMENTS_META)] = orjson.dumps(current)
        flush()
        log.info("segment backfill wrote %d triggers", total)
        return total

    def _exposure(self, item: Routed, write: StoreWrite, dirty: set[str]) -> None:
        """Enrol the profile in the experiment variant it was shown (first exposure wins)."""
        st = self._state
        ex = item.exposure
        pid = st.identity.current(item.routing.profile_id)
        profile = st.profiles.get_or_create(pid)
        st.profiles.changed(pid, write.write_seq)
        if profile.is_applied(ex.source, ex.offset):
            m.OUTCOME[REPLAYED].inc()
            return
        profile.positions[ex.source] = ex.offset
        dirty.add(pid)
        exp = st.experiment_by_id.get(ex.experiment_id)
        if exp is None or all(v.id != ex.variant_id for v in exp.variants):
            m.EXPOSURES_UNKNOWN.inc()
            return
        m.EXPOSURES_IN.inc()
        self._totals(attribution.on_exposure(profile, exp, ex.variant_id, ex.ts_ms), write)

    def _totals(self, deltas, write: StoreWrite) -> None:
        """Per experiment, variant and day: the changes, into memory and this WriteBatch."""
        if not deltas:
            return
        totals = self._state.experiment_totals
        for exp_id, variant, day, change in deltas:
            key = (exp_id, variant, day)
            current = totals.get(key)
            if current is None:
                current = totals[key] = attribution.Totals()
            current.add(change)
            write.raw[experiment_key(exp_id, variant, day)] = orjson.dumps(current.to_record())
            m.experiment_gauges(exp_id, variant, change)

    def _too_late(self, pe: ParsedEvent, write: StoreWrite) -> None:
        st = self._state
        rec = pe.record or RawRecord(None, None, pe.source, pe.offset, pe.ingest_ms)
        value, _ = scrub_record(rec.value, st.pii_key)
        key, _ = scrub_record(rec.key, st.pii_key)
        behind = pe.watermark_ms - pe.event.ts_ms
        write.dead_letters.append(DeadLetter(
            RawRecord(value, key, rec.source, rec.offset, rec.ingest_ms),
            InvalidEvent(TOO_LATE, f"event time {pe.event.ts_ms} is {behind} ms behind its partition's watermark "
                                   f"{pe.watermark_ms}; processor.lateness_ms allows {st.lateness_ms} ms"),
        ))

    def _ticks(self, write: StoreWrite, dirty: set[str], sources: set[str]) -> None:
        """Source heartbeats whose preceding records have all been processed (Bytewax may
        run the tick's key before the keys of records read before it) move their
        source's processed watermark; profiles whose next instant every source has
        passed get it. Never earlier: a record not yet processed could precede it."""
        st = self._state
        clocks = st.clocks
        ready = [t for t in clocks.pending if clocks.done.get(t.source, 0) >= t.upto]
        if not ready and not st.timers.backlog:
            return
        clocks.pending = [t for t in clocks.pending if clocks.done.get(t.source, 0) < t.upto]
        for tick in ready:
            if tick.final:
                clocks.finished.add(tick.source)
            if tick.watermark_ms > clocks.processed.get(tick.source, 0):
                clocks.processed[tick.source] = tick.watermark_ms
                sources.add(tick.source)
        floor = clocks.floor()
        if floor is None:
            return
        m.WATERMARK_LAG.set(max(0.0, time.time() - floor / 1000))
        if not (st.engine.active or st.learner.active):
            return
        # At most TIMERS_PER_BATCH profiles per batch, the others in the next batches: a
        # floor that jumps (a lagging partition catching up, a restart) can make thousands
        # due at once, each a load, an evaluation and a write, and the events of the batch
        # would wait for all of them. Deferring changes no transition (each is computed at
        # its own instant, and an event of a deferred profile first advances it to its
        # watermark). When every source has ended, all of them, so none is left behind.
        limit = None if clocks.all_finished() else TIMERS_PER_BATCH
        due = st.timers.due(floor, limit)
        if due:
            m.TIME_VISITS.inc(len(due))
        m.TIMERS_BEHIND.set(1 if st.timers.backlog else 0)
        for pid in due:
            profile = st.profiles.get(pid)
            if profile is None:
                self._unschedule(pid, write)
                continue
            st.profiles.changed(pid, write.write_seq)
            if st.engine.active:
                self._emit(pid, st.engine.advance(profile, floor), write)
            st.learner.advance(profile, floor)
            dirty.add(pid)

    def _emit(self, pid: str, triggers: list, write: StoreWrite) -> None:
        """Triggers into the outbox and the membership index, in this batch's WriteBatch."""
        if not triggers:
            return
        st = self._state
        now_ms = int(time.time() * 1000)
        for trig in triggers:
            st.outbox_seq += 1
            rec = trig.to_record()
            rec["written_ms"] = now_ms  # for the publish-latency metric
            write.raw[outbox_key(st.outbox_seq)] = orjson.dumps(rec)
            write.raw[member_key(trig.segment_id, pid)] = (encode_ms(trig.at_ms) if trig.transition == ENTERED
                                                          else None)
            write.triggers.append(trig)

    def _wake(self, profile) -> int | None:
        """The profile's next timer: its next segment instant or model label deadline."""
        at = profile.next_check_ms
        deadline = self._state.learner.next_deadline(profile)
        if deadline is not None and (at is None or deadline < at):
            return deadline
        return at

    def _schedule(self, pid: str, at: int | None, write: StoreWrite) -> None:
        timers = self._state.timers
        old = timers.get(pid)
        if old == at:
            return
        if old is not None:
            write.raw[timer_key(old, pid)] = None
        if at is not None:
            write.raw[timer_key(at, pid)] = b""
        timers.set(pid, at)

    def _unschedule(self, pid: str, write: StoreWrite) -> None:
        self._schedule(pid, None, write)

    def _items(self, profile, event, dirty_items: set[str], write_seq: int) -> None:
        """Item popularity from applied (hence deduplicated, consented) behaviour, then
        what the event teaches the models (``flows.learning``)."""
        st = self._state
        items = st.items
        if event.type in WEIGHTS:
            for line in event.items:
                items.changed(line.item_id, write_seq)  # pinned before the next load can evict it
                items.get(line.item_id).observe(event.type, event.ts_ms, quantity=line.quantity,
                                                category=line.category, price=line.price, brand=line.brand)
                dirty_items.add(line.item_id)
        if st.learner.active:
            dirty_items |= st.learner.on_event(profile, event, _PinnedItems(items, write_seq))

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
        profile = st.profiles.get(pid)
        existed = profile is not None
        if existed and st.engine.active:
            self._emit(pid, st.engine.leave_all(profile, CAUSE_ERASED, profile.clock_ms), write)
        write.profiles[pid] = None
        st.profiles.delete(pid, write.write_seq)
        self._unschedule(pid, write)
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


class _PinnedItems:
    """``ItemTable.get`` that pins each item for the batch first (a later load in the same
    batch must not evict an item the model step changed)."""

    __slots__ = ("_items", "_seq")

    def __init__(self, items, seq: int) -> None:
        self._items, self._seq = items, seq

    def get(self, item_id: str):
        self._items.changed(item_id, self._seq)
        return self._items.get(item_id)


class _StorePartition(StatelessSinkPartition[StoreWrite]):
    def __init__(self, store: ProfileStore, state: ProcessorState) -> None:
        self._store = store
        self._state = state

    def write_batch(self, items: list[StoreWrite]) -> None:
        profiles: dict[str, bytes | None] = {}
        aliases: dict[str, str | None] = {}
        members: dict[str, bytes | None] = {}
        item_stats: dict[str, bytes] = {}
        raw: dict[bytes, bytes | None] = {}
        for w in items:  # later writes win, as they would one by one
            profiles.update(w.profiles)
            aliases.update(w.aliases)
            members.update(w.members)
            item_stats.update(w.items)
            raw.update(w.raw)
        st = self._state
        entry = changelog_entry(profiles, aliases, members, item_stats, raw) if st.changelog else None
        if entry is not None:
            st.changelog_seq += 1
            raw[changelog_key(st.changelog_seq)] = entry
            raw[meta_key(CHANGELOG_SEQ_META)] = encode_ms(st.changelog_seq)
        t0 = time.perf_counter()
        self._store.apply(profiles, aliases, members, item_stats, raw)
        if entry is not None:
            for listener in st.changelog_listeners:
                listener()
        m.STORE_WRITE.observe(time.perf_counter() - t0)
        triggers = [t for w in items for t in w.triggers]
        if triggers:
            self._state.triggers_written(triggers)
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
    cache_bytes: int | None = None,
    control: Source[RawRecord] | None = None,
    erasure_sink: Sink[dict] | None = None,
    exposures: Source[RawRecord] | None = None,
    flow_id: str = "pulse",
    segments: SegmentSet | None = None,
    lateness_ms: int = 10 * 60_000,
    experiments=None,
    state: ProcessorState | None = None,
    learner=None,
    owner: str | None = None,
    extra_requirements: tuple = (),
) -> Dataflow:
    """The profile flow over ``source``; invalid records go to ``dlq_sink``; erase
    requests come from ``control`` and their records go to ``erasure_sink``. Segment
    triggers go to the store's outbox (``flows.outbox`` publishes them). With ``owner``
    (a routing key, ``flows.cluster``), every input's records first move to the worker
    it routes to: the flow runs in several processes and only that one holds the store.
    ``extra_requirements``: counters kept beside the segments' (``ProcessorState``)."""
    if state is None:
        state = ProcessorState(store, policy=policy or Policy(), max_aliases=max_aliases,
                               cache_profiles=cache_profiles, cache_bytes=cache_bytes, segments=segments,
                               lateness_ms=lateness_ms, pii_key=options.pii_key,
                               extra_requirements=extra_requirements, experiments=experiments, learner=learner)
    flow = Dataflow(flow_id)

    def read(step_id: str, src: Source[RawRecord]):
        records = op.input(step_id, flow, src)
        return records if owner is None else to_owner(f"{step_id}_to_owner", records, owner, state)

    raw = read("input", source)
    parsed = op.flat_map_batch("parse", raw, lambda batch: parse_batch(batch, options, state))
    split = op.branch("valid", parsed, lambda x: type(x) is not DeadLetter)
    dead = split.falses
    work = split.trues
    if control is not None:
        commands = op.branch("valid_control", op.map("parse_control", read("control", control),
                                                     parse_control), lambda x: isinstance(x, EraseRequest))
        work = op.merge("with_control", work, commands.trues)
        dead = op.merge("all_dead_letters", dead, commands.falses)
    if exposures is not None:
        seen = op.branch("valid_exposures", op.map("parse_exposure", read("exposures", exposures),
                                                   parse_exposure), lambda x: type(x) is ParsedExposure)
        work = op.merge("with_exposures", work, seen.trues)
        dead = op.merge("dead_with_exposures", dead, seen.falses)
    routed = op.map("identity", work, IdentityRouter(state))
    writes = op.flat_map_batch("profile", routed, ProfileLogic(state))
    op.output("store", writes, StoreSink(store, state))
    # Too-late events are dead-lettered once their batch is in the store (at least once).
    late = op.flat_map("late_records", writes, lambda w: w.dead_letters)
    op.output("dead_letters", op.merge("dead_and_late", dead, late), dlq_sink)
    if erasure_sink is not None:
        op.output("erasures", op.flat_map("erase_records", writes, lambda w: w.erasures), erasure_sink)
    return flow
