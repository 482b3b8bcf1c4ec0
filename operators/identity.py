"""Deterministic identity stitching: typed aliases -> one profile id.

Aliases are typed strings: ``user:<id>``, ``email:<hash>``, ``phone:<hash>``,
``device:<id>``, ``anon:<id>``. Aliases that belong together form a *cluster*; its
profile id is its strongest alias (a ``user:`` alias if it has one, then email, phone,
device, anon; ties by string order), so the id of the final cluster does not depend on
the order in which links were learnt.

Rules:

* Only ``login`` and ``identify`` events link: every alias they carry joins one cluster,
  merging clusters that were separate (chains like device A -> anon B -> user C end in
  one profile whatever the order).
* Other events route to the cluster of their strongest known alias; an event whose
  aliases are all unknown starts a cluster with its strongest alias.
* Two different ``user:`` aliases are never merged (``conflict``): the event's own user
  cluster takes the aliases that do not belong to another user.
* A cluster holds at most ``max_aliases`` aliases; links beyond are refused (``capped``).

``IdentityIndex`` is the pure logic over a pluggable lookup (the store); it returns the
changes to persist, which the caller writes atomically with the profile changes.

>>> idx = IdentityIndex(lookup=lambda alias: None, members_of=lambda pid: None)
>>> idx.route("view", ("anon:b",)).profile_id
'anon:b'
>>> r = idx.route("login", ("user:c", "anon:b"))
>>> r.profile_id, r.merged_from
('user:c', ('anon:b',))
>>> idx.route("view", ("anon:b",)).profile_id
'user:c'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

ALIAS_KINDS = ("user", "email", "phone", "device", "anon")
_RANK = {kind: i for i, kind in enumerate(ALIAS_KINDS)}
LINKING_TYPES = frozenset(("login", "identify"))


def alias_kind(alias: str) -> str:
    return alias.split(":", 1)[0]


def is_alias(text: str) -> bool:
    return alias_kind(text) in _RANK and ":" in text


def canonical(aliases: Iterable[str]) -> str:
    """The profile id of a cluster: its strongest alias."""
    return min(aliases, key=lambda a: (_RANK[alias_kind(a)], a))


@dataclass(frozen=True)
class Routing:
    """Where an event goes, and what identity changes it causes."""

    profile_id: str
    merged_from: tuple[str, ...] = ()  # profile ids whose state moves into profile_id
    # alias -> profile id to write, profile id -> member aliases to write (None = delete)
    alias_updates: dict[str, str | None] = field(default_factory=dict)
    member_updates: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    conflict: bool = False
    capped: bool = False


class IdentityIndex:
    """Alias -> profile id with cluster membership, over a store lookup, with a bounded
    in-memory cache. Changes are applied to the cache at once and returned for the caller
    to persist; ``pin``/``written`` keep unwritten entries in memory."""

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        members_of: Callable[[str], tuple[str, ...] | None],
        *,
        max_aliases: int = 50,
        cache_size: int = 200_000,
    ) -> None:
        self._lookup = lookup
        self._members_of = members_of
        self.max_aliases = max_aliases
        self._cache_size = cache_size
        self._alias: dict[str, str | None] = {}
        self._members: dict[str, tuple[str, ...]] = {}
        self._pinned: dict[str, int] = {}  # alias or "m:"+pid -> sequence of its last change
        self._seq = 0
        # Profiles merged into another, for events routed before the merge: old -> new.
        # Filled by whoever carries out the merge, once the state has moved.
        self.moved: dict[str, str] = {}

    # -- lookups through the cache ------------------------------------------------------
    def profile_of(self, alias: str) -> str | None:
        if alias in self._alias:
            return self._alias[alias]
        pid = self._lookup(alias)
        self._alias[alias] = pid
        self._trim()
        return pid

    def members(self, pid: str) -> tuple[str, ...]:
        got = self._members.get(pid)
        if got is None:
            got = self._members_of(pid) or ()
            self._members[pid] = got
        return got

    def current(self, pid: str) -> str:
        """Follow merges: the profile id that now holds ``pid``'s state."""
        seen = 0
        while pid in self.moved and seen < 64:
            pid = self.moved[pid]
            seen += 1
        return pid

    # -- routing ------------------------------------------------------------------------
    def route(self, event_type: str, aliases: tuple[str, ...]) -> Routing:
        if event_type not in LINKING_TYPES:
            for a in aliases:  # strongest first: stop at the first known alias
                pid = self.profile_of(a)
                if pid is not None:
                    return Routing(pid)
            pid = aliases[0]
            return self._apply(Routing(pid, alias_updates={pid: pid}, member_updates={pid: (pid,)}))
        return self._link(aliases, {a: self.profile_of(a) for a in aliases})

    def _link(self, aliases: tuple[str, ...], known: dict[str, str | None]) -> Routing:
        # The clusters this event touches, and the aliases it brings that nobody has yet.
        clusters: dict[str, tuple[str, ...]] = {}
        for a in aliases:
            pid = known[a]
            if pid is not None and pid not in clusters:
                clusters[pid] = self.members(pid) or (a,)
        fresh = [a for a in aliases if known[a] is None]
        users_of = {pid: {m for m in members if alias_kind(m) == "user"} for pid, members in clusters.items()}
        event_users = [a for a in aliases if alias_kind(a) == "user"]
        anchor_user = event_users[0] if event_users else None
        conflict = False
        joined: list[str] = []
        users_in = set([anchor_user] if anchor_user else [])
        # Merge clusters in a fixed order (by their ids) so the outcome is order-independent.
        for pid in sorted(clusters, key=lambda p: (_RANK[alias_kind(p)], p)):
            their_users = users_of[pid]
            if their_users and users_in and not their_users <= users_in:
                conflict = True
                continue
            users_in |= their_users
            joined.append(pid)
        fresh = [a for a in fresh if not (alias_kind(a) == "user" and users_in and a not in users_in)]
        members = sorted({m for pid in joined for m in clusters[pid]} | set(fresh))
        capped = False
        if len(members) > self.max_aliases:
            # Keep the largest cluster whole and refuse what does not fit.
            capped = True
            base = max(joined, key=lambda p: len(clusters[p]), default=None)
            keep = set(clusters[base]) if base else set()
            for pid in joined:
                if pid != base and len(keep) + len(clusters[pid]) <= self.max_aliases:
                    keep |= set(clusters[pid])
            for a in fresh:
                if len(keep) < self.max_aliases:
                    keep.add(a)
            joined = [p for p in joined if set(clusters[p]) <= keep]
            members = sorted(keep)
        if not members:  # everything conflicted: route by the strongest alias alone
            pid = known[aliases[0]] or aliases[0]
            return Routing(pid, conflict=conflict, capped=capped)
        target = canonical(members)
        merged_from = tuple(p for p in joined if p != target)
        owner = {m: pid for pid in joined for m in clusters[pid]}
        alias_updates = {a: target for a in members if owner.get(a) != target}
        member_updates: dict[str, tuple[str, ...] | None] = {p: None for p in merged_from}
        if tuple(members) != self.members(target):
            member_updates[target] = tuple(members)
        if not alias_updates and not member_updates:
            return Routing(target, conflict=conflict, capped=capped)
        return self._apply(Routing(target, merged_from, alias_updates, member_updates, conflict, capped))

    def erase(self, pid: str) -> Routing:
        """Forget a cluster: every alias and the member list go."""
        members = self.members(pid) or (pid,)
        return self._apply(Routing(pid, alias_updates={a: None for a in members}, member_updates={pid: None}))

    # -- cache bookkeeping --------------------------------------------------------------
    def _apply(self, r: Routing) -> Routing:
        self._seq += 1  # the number of this change: ``sequence`` right after routing
        for a, pid in r.alias_updates.items():
            self._alias[a] = pid
            self._pinned[a] = self._seq
        for pid, members in r.member_updates.items():
            if members is None:
                self._members[pid] = ()
            else:
                self._members[pid] = members
            self._pinned["m:" + pid] = self._seq
        self._trim()
        return r

    @property
    def sequence(self) -> int:
        return self._seq

    def written(self, seqs: set[int]) -> None:
        """The store now holds the changes numbered ``seqs``: entries whose latest change
        is one of them may be evicted (writes can land in any order)."""
        if seqs:
            self._pinned = {k: s for k, s in self._pinned.items() if s not in seqs}

    def _trim(self) -> None:
        if len(self._alias) > self._cache_size:
            for a in list(self._alias)[: len(self._alias) - self._cache_size // 2]:
                if a not in self._pinned:
                    del self._alias[a]
        if len(self._members) > self._cache_size:
            for pid in list(self._members)[: len(self._members) - self._cache_size // 2]:
                if "m:" + pid not in self._pinned:
                    del self._members[pid]
        if len(self.moved) > self._cache_size:
            for old in list(self.moved)[: len(self.moved) // 2]:
                del self.moved[old]
