"""The processor's in-memory working set, shared by the steps of one flow.

Profiles and identity links are cached (bounded, least recently used first) in front of
the store. A changed entry stays pinned in memory until the store sink reports that its
write landed, so a reload can never read an older version than the flow already has.
One lock serializes the profile step across Bytewax workers (threads of one process).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from operators.identity import IdentityIndex
from operators.items import ItemStats
from operators.profile import Policy, Profile
from state.store import ProfileStore

_DELETED = None  # a cached tombstone: deleted, write pending


class ProfileCache:
    def __init__(self, store: ProfileStore, capacity: int) -> None:
        self._store = store
        self._capacity = capacity
        self._entries: OrderedDict[str, Profile | None] = OrderedDict()
        self._pinned: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, pid: str) -> Profile | None:
        """The profile (cached, else from the store), or None if there is none."""
        entries = self._entries
        if pid in entries:
            entries.move_to_end(pid)
            return entries[pid]
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

    def changed(self, pid: str, seq: int) -> None:
        self._pinned[pid] = seq

    def delete(self, pid: str, seq: int) -> None:
        self._entries[pid] = _DELETED
        self._pinned[pid] = seq

    def written(self, seqs: set[int]) -> None:
        """Writes ``seqs`` landed: entries whose latest change is among them may go."""
        self._pinned = {pid: s for pid, s in self._pinned.items() if s not in seqs}
        self._trim()

    def _trim(self) -> None:
        excess = len(self._entries) - self._capacity
        if excess <= 0:
            return
        for pid in list(self._entries)[: excess + self._capacity // 10]:
            if pid not in self._pinned:
                del self._entries[pid]


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


class ProcessorState:
    """What the profile step shares: store, caches, identity index, privacy policy."""

    def __init__(self, store: ProfileStore, *, policy: Policy, max_aliases: int, cache_profiles: int) -> None:
        self.store = store
        self.policy = policy
        self.profiles = ProfileCache(store, cache_profiles)
        self.items = ItemTable(store, cache_profiles)
        self.identity = IdentityIndex(store.profile_of, store.members_of, max_aliases=max_aliases,
                                      cache_size=cache_profiles * 2)
        self.lock = threading.Lock()
        self._write_seq = 0

    def next_seq(self) -> int:
        self._write_seq += 1
        return self._write_seq

    def written(self, write_seqs: set[int], identity_seqs: set[int]) -> None:
        """Called by the store sink after a WriteBatch landed."""
        with self.lock:
            self.profiles.written(write_seqs)
            self.items.written(write_seqs)
            self.identity.written(identity_seqs)
