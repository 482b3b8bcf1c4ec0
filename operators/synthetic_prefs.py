"""A synthetic clickstream with planted preferences, to measure recommendation quality.

Items belong to a category (``synthetic.CATEGORIES``, with the brands and price ranges of
``operators.synthetic``) and, independently, to one of ``clusters`` latent taste
clusters that cut across categories. Item popularity is Zipf-like (weight
``1 / rank ** item_skew`` over a random ranking). Each user likes 1-3 clusters. Users
arrive over time (a fifth at the start, then each new session is a newcomer's with
probability ``new_user_rate`` until all have come), so some interactions come from users
with no history yet; returning users' activity is heavy-tailed (Pareto).

A session is 2-8 product views, each followed by an ``add_to_cart`` with probability
``cart_rate``, and ends in a purchase of the cart with probability ``purchase_rate``.
Each viewed item comes with probability ``cluster_share`` from one of the user's clusters
(by popularity within the cluster), otherwise from global popularity. About
``concurrent`` sessions run at once, so events of different users interleave.

>>> from operators.events import Event, parse_event
>>> import orjson
>>> gen = PreferenceClickstream(seed=7, users=50, items=60, clusters=4)
>>> evs = list(gen.events(5, start_ms=1796205600000))
>>> evs == list(PreferenceClickstream(seed=7, users=50, items=60, clusters=4).events(5, 1796205600000))
True
>>> all(isinstance(parse_event(orjson.dumps(e)), Event) for e in evs)
True
>>> gen.cluster_of(evs[0]["item_id"]) in range(4)
True
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from operators.synthetic import CATEGORIES, brand_of


@dataclass
class _Session:
    user: int
    plan: list[tuple[str, list[int]]]  # (event type, item indexes), in order
    pos: int = 0


@dataclass
class _Picker:
    """Weighted choice among ``ids`` by cumulative weights (bisect)."""

    ids: list[int] = field(default_factory=list)
    cum: list[float] = field(default_factory=list)

    def add(self, ident: int, weight: float) -> None:
        self.ids.append(ident)
        self.cum.append((self.cum[-1] if self.cum else 0.0) + weight)

    def pick(self, rng: random.Random) -> int:
        return self.ids[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


class PreferenceClickstream:
    def __init__(self, seed: int = 7, users: int = 2000, items: int = 1000, clusters: int = 20, *,
                 cluster_share: float = 0.75, item_skew: float = 1.0, new_user_rate: float = 0.1,
                 cart_rate: float = 0.2, purchase_rate: float = 0.4, concurrent: int = 50,
                 mean_gap_ms: int = 200) -> None:
        if users < 1 or clusters < 1 or items < clusters:
            raise ValueError(f"need users >= 1 and items >= clusters >= 1, got users={users}, items={items}, "
                             f"clusters={clusters}")
        for name, value in (("cluster_share", cluster_share), ("new_user_rate", new_user_rate),
                            ("cart_rate", cart_rate), ("purchase_rate", purchase_rate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if concurrent < 1 or mean_gap_ms < 1:
            raise ValueError(f"concurrent and mean_gap_ms must be at least 1, got {concurrent}, {mean_gap_ms}")
        self.seed = seed
        self.cluster_share = cluster_share
        self.new_user_rate = new_user_rate
        self.cart_rate = cart_rate
        self.purchase_rate = purchase_rate
        self.concurrent = concurrent
        self.mean_gap_ms = mean_gap_ms
        rng = random.Random(seed)
        cats = list(CATEGORIES)
        per_category = dict.fromkeys(cats, 0)
        self._items: list[dict] = []
        for _ in range(items):
            category = rng.choice(cats)
            n = per_category[category]
            per_category[category] = n + 1
            lo, hi = CATEGORIES[category]
            item_id = f"{category}:{n:03d}"
            self._items.append({"item_id": item_id, "category": category, "brand": brand_of(item_id),
                                "price": round(lo + (hi - lo) * rng.random(), 2)})
        # Clusters cut across categories: a shuffled round robin (every cluster non-empty).
        order = list(range(items))
        rng.shuffle(order)
        self._cluster = [0] * items
        for pos, idx in enumerate(order):
            self._cluster[idx] = pos % clusters
        rank = list(range(items))
        rng.shuffle(rank)
        self._popular = _Picker()
        self._in_cluster = [_Picker() for _ in range(clusters)]
        for idx in range(items):
            weight = 1.0 / (rank[idx] + 1) ** item_skew
            self._popular.add(idx, weight)
            self._in_cluster[self._cluster[idx]].add(idx, weight)
        self._user_clusters = [tuple(sorted(rng.sample(range(clusters), rng.randint(1, min(3, clusters)))))
                               for _ in range(users)]
        self._activity = [min(rng.paretovariate(1.2), 1000.0) for _ in range(users)]
        self._item_index = {it["item_id"]: i for i, it in enumerate(self._items)}
        self.user_ids = [f"u{i:06d}" for i in range(users)]
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.initial_users = max(1, users // 5)

    # -- the planted truth, for tests and benchmarks ---------------------------------
    def catalog(self) -> list[dict]:
        """One record per item: item_id, category, brand, price, in_stock (True)."""
        return [{**it, "in_stock": True} for it in self._items]

    def clusters_of(self, user_id: str) -> tuple[int, ...]:
        idx = self._user_index.get(user_id)
        if idx is None:
            raise KeyError(f"unknown user {user_id!r}")
        return self._user_clusters[idx]

    def cluster_of(self, item_id: str) -> int:
        idx = self._item_index.get(item_id)
        if idx is None:
            raise KeyError(f"unknown item {item_id!r}")
        return self._cluster[idx]

    # -- the stream ------------------------------------------------------------------
    def events(self, n: int, start_ms: int) -> Iterator[dict]:
        """``n`` event dicts (``operators.events`` shape) from ``start_ms`` on, timestamps
        strictly increasing. Every call starts over: the same arguments, the same events."""
        rng = random.Random(self.seed * 1_000_003 + 1)
        arrived = _Picker()
        for user in range(self.initial_users):
            arrived.add(user, self._activity[user])
        sessions: list[_Session] = []
        seq = itertools.count(1)
        now = start_ms
        for _ in range(n):
            while len(sessions) < self.concurrent:
                sessions.append(self._new_session(rng, arrived, {s.user for s in sessions}))
            slot = rng.randrange(len(sessions))
            session = sessions[slot]
            etype, lines = session.plan[session.pos]
            session.pos += 1
            if session.pos == len(session.plan):
                sessions[slot] = sessions[-1]
                sessions.pop()
            now += rng.randint(1, 2 * self.mean_gap_ms)
            yield self._event(f"pref-{self.seed}-{next(seq)}", etype, self.user_ids[session.user], now, lines)

    def _new_session(self, rng: random.Random, arrived: _Picker, active: set[int]) -> _Session:
        users = len(self._user_clusters)
        if len(arrived.ids) < users and rng.random() < self.new_user_rate:
            user = len(arrived.ids)
            arrived.add(user, self._activity[user])
        else:
            user = arrived.pick(rng)
            for _ in range(5):  # rather someone not in a session already
                if user not in active:
                    break
                user = arrived.pick(rng)
        plan: list[tuple[str, list[int]]] = []
        cart: list[int] = []
        for _ in range(rng.randint(2, 8)):
            item = self._pick_item(rng, user)
            plan.append(("product_view", [item]))
            if rng.random() < self.cart_rate:
                plan.append(("add_to_cart", [item]))
                if item not in cart:
                    cart.append(item)
        if cart and rng.random() < self.purchase_rate:
            plan.append(("purchase", cart))
        return _Session(user, plan)

    def _pick_item(self, rng: random.Random, user: int) -> int:
        if rng.random() < self.cluster_share:
            cluster = rng.choice(self._user_clusters[user])
            return self._in_cluster[cluster].pick(rng)
        return self._popular.pick(rng)

    def _event(self, event_id: str, etype: str, user_id: str, ts: int, lines: list[int]) -> dict:
        base = {"event_id": event_id, "type": etype, "user_id": user_id, "timestamp": ts}
        if etype == "purchase":
            return {**base, "items": [{**self._items[i], "quantity": 1} for i in lines]}
        out = {**base, **self._items[lines[0]]}
        if etype == "add_to_cart":
            out["quantity"] = 1
        return out
