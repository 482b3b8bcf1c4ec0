"""The processor's in-memory working set, shared by the steps of one flow.

Profiles and identity links are cached (bounded, least recently used first) in front of
the store. A changed entry stays pinned in memory until the store sink reports that its
write landed, so a reload can never read an older version than the flow already has.
One lock serializes the profile step across Bytewax workers (threads of one process).
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from collections import OrderedDict

from operators.identity import IdentityIndex
from operators.items import ItemStats
from operators.profile import Policy, Profile
import orjson

from operators.attribution import Totals
from operators.experiments import ExperimentSet
from operators.features import FeaturePlan
from operators.segments import SegmentSet, empty
from operators.triggers import SegmentEngine
from flows import metrics as m
from flows.learning import Learner
from state.store import ProfileStore, encode_ms, members_prefix, meta_key, parse_experiment_key, parse_timer_key

WATERMARK_META = "wm/"  # + source: the highest event time processed from it
OUTBOX_SEQ_META = "outbox_seq"
SEGMENTS_META = "segments"
CHANGELOG_SEQ_META = "changelog_seq"  # JSON {segment id: version} the memberships were computed with

_DELETED = None  # a cached tombstone: deleted, write pending


# A decoded profile takes about this many bytes of process memory per byte of its stored
# record (34 KB against 6.8 KB for profiles of ~40 events, measured with a deep sizeof).
MEMORY_PER_STORED_BYTE = 5


class ProfileCache:
    """Profiles in memory, least recently used first, bounded by a count and by an
    estimate of their memory (``MEMORY_PER_STORED_BYTE`` times the stored record's size,
    known each time a profile is written; a profile loaded and not yet written counts as
    the average). Entries with a write in flight are never dropped, nor, while
    ``batch_seq`` is set, any entry read since: the step may still change them."""

    def __init__(self, store: ProfileStore, capacity: int, budget_bytes: int | None = None) -> None:
        self._store = store
        self._capacity = capacity
        self._budget = budget_bytes if budget_bytes is not None else 1 << 62
        self._entries: OrderedDict[str, Profile | None] = OrderedDict()
        self._pinned: dict[str, int] = {}
        self._bytes: dict[str, int] = {}  # estimated memory of entries written at least once
        self._total = 0  # sum of self._bytes
        self.batch_seq: int | None = None  # the write of the batch being computed
        # Set when a trim could not get under the bounds (too many entries pinned): the
        # size past which to try again. Until then, or until a write lands, loads do not
        # scan the cache again (a batch reading many profiles made every load rescan the
        # pinned entries: quadratic, seen after a backlog when many timers fell due).
        self._retry_at: tuple[int, int] | None = None
        self.scanned = 0  # entries the trims have looked at (tests)

    def __len__(self) -> int:
        return len(self._entries)

    def memory_estimate(self) -> int:
        """Estimated bytes of the cached profiles."""
        unsized = len(self._entries) - len(self._bytes)
        return self._total + unsized * self._average()

    def _average(self) -> int:
        return self._total // len(self._bytes) if self._bytes else 0

    def get(self, pid: str) -> Profile | None:
        """The profile (cached, else from the store), or None if there is none."""
        entries = self._entries
        if self.batch_seq is not None:
            self._pinned[pid] = self.batch_seq
        if pid in entries:
            entries.move_to_end(pid)
            return entries[pid]
        m.PROFILE_LOADS.inc()
        profile = self._store.get(pid)
        entries[pid] = profile
        self._trim()
        return profile

    def get_or_create(self, pid: str) -> Profile:
        profile = self.get(pid)
        if profile is None:
            profile = Profile(pid)
            self._entries[pid] = profile
        return profile

    def changed(self, pid: str, seq: int, stored_bytes: int | None = None) -> None:
        """``pid`` changed in write ``seq``; ``stored_bytes``: its encoded record's size."""
        self._pinned[pid] = seq
        if stored_bytes is not None:
            self._total += stored_bytes * MEMORY_PER_STORED_BYTE - self._bytes.get(pid, 0)
            self._bytes[pid] = stored_bytes * MEMORY_PER_STORED_BYTE

    def delete(self, pid: str, seq: int) -> None:
        self._entries[pid] = _DELETED
        self._pinned[pid] = seq
        self._total -= self._bytes.pop(pid, 0)

    def written(self, seqs: set[int]) -> None:
        """Writes ``seqs`` landed: entries whose latest change is among them may go."""
        self._pinned = {pid: s for pid, s in self._pinned.items() if s not in seqs}
        self._retry_at = None
        self._trim()

    def _trim(self) -> None:
        """Past either bound, drop the least recently used unpinned entries down to 90%
        of it (so the scan runs once per tenth of the cache, not per load)."""
        entries = self._entries
        over_count = len(entries) > self._capacity
        estimate = self.memory_estimate()
        over_bytes = estimate > self._budget
        if not (over_count or over_bytes):
            return
        if self._retry_at is not None and len(entries) < self._retry_at[0] and estimate < self._retry_at[1]:
            return
        keep_n = self._capacity - self._capacity // 10 if over_count else len(entries)
        keep_b = self._budget - self._budget // 10 if over_bytes else estimate
        n, b, average = len(entries), estimate, self._average()
        victims = []
        scanned = 0
        for pid in entries:
            if n <= keep_n and b <= keep_b:
                break
            scanned += 1
            if pid in self._pinned:
                continue
            victims.append(pid)
            n -= 1
            b -= self._bytes.get(pid, average)
        self.scanned += scanned
        # Short of the target: everything else is pinned. Try again once a write landed, or
        # the cache grew by half (at least a tenth of the bound): the scans then cost O(1)
        # per load.
        left = len(entries) - len(victims)
        self._retry_at = None if (n <= keep_n and b <= keep_b) else (
            left + max(1, self._capacity // 10, left // 2),
            b + max(1, min(self._budget, 1 << 40) // 10, b // 2))
        sizes = self._bytes
        for pid in victims:
            del entries[pid]
            self._total -= sizes.pop(pid, 0)


class ItemTable:
    """Item statistics in front of the store (bounded like the profile cache)."""

    def __init__(self, store: ProfileStore, capacity: int) -> None:
        self._store = store
        self._capacity = capacity
        self._entries: OrderedDict[str, ItemStats] = OrderedDict()
        self._pinned: dict[str, int] = {}

    def get(self, item_id: str) -> ItemStats:
        entries = self._entries
        item = entries.get(item_id)
        if item is not None:
            entries.move_to_end(item_id)
            return item
        item = self._store.get_item(item_id) or ItemStats(item_id)
        entries[item_id] = item
        if len(entries) > self._capacity:
            for key in list(entries)[: len(entries) - self._capacity + self._capacity // 10]:
                if key not in self._pinned:
                    del entries[key]
        return item

    def changed(self, item_id: str, seq: int) -> None:
        self._pinned[item_id] = seq

    def written(self, seqs: set[int]) -> None:
        self._pinned = {k: s for k, s in self._pinned.items() if s not in seqs}


class Timers:
    """When each profile next needs a look because time alone may change a segment.

    Every pending instant is in memory (a heap with lazy deletion, ~100 bytes per profile
    with a pending instant) and in the store (``t`` keys, written with the profile), from
    where it is loaded at start."""

    def __init__(self, store: ProfileStore) -> None:
        self._at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self.backlog = False  # the last ``due`` left instants before its bound
        scan = getattr(store, "scan", None)
        if scan is not None:
            for key, _value in scan(b"t"):
                at, pid = parse_timer_key(key)
                self._at[pid] = at
                self._heap.append((at, pid))
            heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._at)

    def get(self, pid: str) -> int | None:
        return self._at.get(pid)

    def set(self, pid: str, at: int | None) -> None:
        if at is None:
            self._at.pop(pid, None)
            return
        if self._at.get(pid) == at:
            return
        self._at[pid] = at
        heap = self._heap
        heapq.heappush(heap, (at, pid))
        if len(heap) > 2 * len(self._at) + 1024:
            # Rescheduling leaves the old entries behind (lazy deletion); without this the
            # heap would grow with every event, not with the profiles.
            self._heap = [(when, key) for key, when in self._at.items()]
            heapq.heapify(self._heap)

    def due(self, before_ms: int, limit: int | None = None) -> list[str]:
        """Profiles with an instant before ``before_ms`` (removed from the heap), at most
        ``limit`` of them; ``backlog`` then tells whether more were due."""
        out = []
        heap = self._heap
        while heap and heap[0][0] < before_ms:
            if limit is not None and len(out) >= limit:
                break
            at, pid = heapq.heappop(heap)
            if self._at.get(pid) == at:
                out.append(pid)
        self.backlog = bool(heap) and heap[0][0] < before_ms
        return out


class Clocks:
    """Event time per source: ``read`` (parse step, stamps records) and ``processed``
    (moved by heartbeats once every record before them was processed: what timers may
    fire below). Both start from the store's record of what was processed, so records
    re-read after a restart are stamped no lower than when they were first processed."""

    def __init__(self, store: ProfileStore) -> None:
        self.read: dict[str, int] = {}
        self.processed: dict[str, int] = {}
        self.finished: set[str] = set()  # ended sources (exit-at-end): they hold nothing back
        # Events parsed / processed per source since start, and heartbeats waiting until
        # every event parsed before them has been processed.
        self.parsed: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.pending: list = []
        scan = getattr(store, "scan", None)
        if scan is not None:
            prefix = meta_key(WATERMARK_META)
            for key, value in scan(prefix):
                source = key[len(prefix):].decode("utf-8")
                self.read[source] = self.processed[source] = int.from_bytes(value, "big")

    def stamp(self, source: str, ts_ms: int) -> int:
        wm = self.read.get(source, 0)
        if ts_ms > wm:
            self.read[source] = wm = ts_ms
        return wm

    def floor(self) -> int | None:
        """The lowest processed watermark over the live sources seen (None before any);
        once every source has ended, the highest."""
        live = [wm for source, wm in self.processed.items() if source not in self.finished]
        if live:
            return min(live)
        return max(self.processed.values()) if self.processed else None

    def all_finished(self) -> bool:
        """Every source seen has ended (a bounded input was read to its end)."""
        return bool(self.processed) and all(s in self.finished for s in self.processed)

    def meta(self, sources) -> dict[bytes, bytes]:
        return {meta_key(WATERMARK_META + s): encode_ms(self.processed[s]) for s in sources}


class ProcessorState:
    """What the profile step shares: store, caches, identity index, privacy policy,
    segment engine, model learner, timers and clocks."""

    def __init__(self, store: ProfileStore, *, policy: Policy, max_aliases: int, cache_profiles: int,
                 cache_bytes: int | None = None, segments: SegmentSet | None = None, lateness_ms: int = 10 * 60_000, pii_key: bytes = b"",
                 extra_requirements: tuple = (), experiments=None, learner: Learner | None = None) -> None:
        self.store = store
        self.learner = learner if learner is not None else Learner(None, None)
        self.experiments = experiments if experiments is not None else ExperimentSet()
        self.experiment_by_id = self.experiments.by_id
        self.experiment_totals: dict[tuple[str, str, int], Totals] = {}
        scan = getattr(store, "scan", None)
        if scan is not None:
            for key, value in scan(b"x"):
                self.experiment_totals[parse_experiment_key(key)] = Totals.from_record(orjson.loads(value))
        self.pii_key = pii_key
        segments = segments or empty()
        if segments.segments or extra_requirements:
            # Content rules (served from the store) read counters too: the flow keeps them.
            plan = segments.plan if not extra_requirements else FeaturePlan(
                [*segments.plan.requirements, *extra_requirements])
            policy = dataclasses.replace(policy, plan=plan)
        self.policy = policy
        self.segments = segments
        self.engine = SegmentEngine(segments, policy)
        self.lateness_ms = lateness_ms
        self.timers = Timers(store)
        self.clocks = Clocks(store)
        get_meta = getattr(store, "get_meta", None)
        raw_seq = get_meta(OUTBOX_SEQ_META) if get_meta else None
        self.outbox_seq = 0 if raw_seq is None else int.from_bytes(raw_seq, "big")
        self.listeners: list = []  # called after triggers landed in the store (the outbox drain)
        # The changelog (flows.changelog): whether the sink writes its entries, their sequence,
        # and who to wake once they are in the store.
        self.changelog = False
        raw_cl = get_meta(CHANGELOG_SEQ_META) if get_meta else None
        self.changelog_seq = 0 if raw_cl is None else int.from_bytes(raw_cl, "big")
        self.changelog_listeners: list = []
        self.sizes: dict[str, int] = {}  # segment id -> members (counted from the store at start)
        scan = getattr(store, "scan", None)
        if scan is not None and segments.segments:
            for seg in segments.segments:
                self.sizes[seg.id] = sum(1 for _ in scan(members_prefix(seg.id)))
                m.SEGMENT_MEMBERS.labels(seg.id).set(self.sizes[seg.id])
        self.profiles = ProfileCache(store, cache_profiles, cache_bytes)
        self.items = ItemTable(store, cache_profiles)
        self.identity = IdentityIndex(store.profile_of, store.members_of, max_aliases=max_aliases,
                                      cache_size=cache_profiles * 2)
        self.lock = threading.Lock()
        self._write_seq = 0

    def triggers_written(self, triggers) -> None:
        """Called by the store sink once triggers are in the store: metrics only."""
        for trig in triggers:
            self.sizes[trig.segment_id] = self.sizes.get(trig.segment_id, 0) + (1 if trig.transition == "entered" else -1)
            m.SEGMENT_TRANSITIONS.labels(trig.segment_id, trig.transition).inc()
        for seg_id in {t.segment_id for t in triggers}:
            if seg_id in self.segments.by_id:
                m.SEGMENT_MEMBERS.labels(seg_id).set(self.sizes[seg_id])
        for listener in self.listeners:
            listener()

    def next_seq(self) -> int:
        self._write_seq += 1
        return self._write_seq

    def written(self, write_seqs: set[int], identity_seqs: set[int]) -> None:
        """Called by the store sink after a WriteBatch landed."""
        with self.lock:
            self.profiles.written(write_seqs)
            self.items.written(write_seqs)
            self.identity.written(identity_seqs)
