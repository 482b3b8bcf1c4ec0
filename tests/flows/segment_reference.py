"""A reference evaluator for real-time segments, written independently of the streaming code.

Nothing here imports ``operators.*`` or ``flows.*``: feature values are recomputed by brute
force from the list of raw events (the JSON dicts that were sent), each segment condition is
a hand-written Python function over that list, and the documented semantics are
implemented from their description:

- Per partition, the watermark of a record is the max event time of the valid records of
  the partition up to and including it.
- An event is too late if ``ts < watermark - lateness``: dead-lettered, changes nothing
  (unless its event id was already accepted by the profile: then it is a duplicate, which
  is not dead-lettered). Duplicates (an event id already accepted) change nothing.
- Each profile has a clock ``c``. For each of its records, first the time transitions: while
  the earliest instant ``X > c`` at which time alone may change a membership is below the
  record's watermark, ``c = X`` and every segment is evaluated at ``c`` (cause ``time``).
  Then, if the event is accepted, ``c = max(c, ts)`` and every segment is evaluated at ``c``
  (cause: the event id). At the end of the input the same time loop runs for every profile
  up to the final watermark.
- ``count(T, W)`` at ``t`` counts the events of type T whose ``q(ts) > t - W`` with
  ``q(ts) = ts - ts % r``, ``r`` = 1 s (W <= 1 h), 1 min (W <= 60 h), 1 h (beyond).
  ``sum`` adds ``price * quantity`` of the (matching) lines. ``since(T) >= D`` is true when
  there never was such an event, or ``t - last >= D``; ``since(T) < D`` / ``<= D`` are false
  without such an event; ``since(T) > D`` is true without one.
- The instants at which time alone may change a membership: ``q_W(ts) + W`` for every
  (series, window) a condition uses and every matching event, and ``last + D`` (``last + D
  + 1`` for ``>``/``<=``) for every since-comparison. These must be exactly the instants the
  definitions use (no extra ones): the clock visits them, and an accepted late event is
  evaluated at the clock.

The generator makes a long randomized stream: sessions, idle gaps of minutes to weeks,
events a little out of order (late but accepted), far out of order (too late), duplicate
event ids and a few invalid records.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_795_800_000_000

# -- the segments, as the flow gets them ----------------------------------------------------
SEGMENTS_YAML = """
segments:
  - id: cart_abandoner
    condition: count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0
  - id: hot_browser
    condition: count(product_view, 1h) >= 4 or count(search, 10m) >= 3
  - id: cart_waiter
    condition: count(add_to_cart, 2h) >= 1 and since(add_to_cart) >= 30m and since(purchase) >= 30m
  - id: outdoor_fan
    condition: count(product_view, 7d, category="outdoor") >= 3 or sum(purchase, 30d, category="outdoor") >= 150
  - id: big_spender
    condition: sum(purchase, 30d) >= 400
  - id: lapsed
    condition: since(any) >= 14d
  - id: outdoor_prospect
    condition: segment("outdoor_fan") and not segment("big_spender") and count(purchase, 2d) == 0
  - id: winback
    condition: since(purchase) >= 3d and since(purchase) < 20d and not (count(any, 24h) >= 1)
  - id: hesitant
    condition: count(remove_from_cart, 6h) >= 2 or (count(add_to_cart, 24h) >= 3 and count(purchase, 24h) == 0)
  - id: loyal
    condition: count(purchase, 90d) >= 3
  - id: quiet_searcher
    condition: count(search, 48h) >= 2 and since(search) > 1h and since(page_view) <= 2h
"""


# -- brute-force features over raw events ---------------------------------------------------
def resolution(w: int) -> int:
    if w <= HOUR:
        return SEC
    if w <= 60 * HOUR:
        return MIN
    return HOUR


def lines(e: dict) -> list[dict]:
    if "items" in e:
        return e["items"]
    return [e] if "item_id" in e else []


def cat_ok(line: dict, cat: str | None) -> bool:
    if cat is None:
        return True
    c = line.get("category")
    return c is not None and (c == cat or c.startswith(cat + "/"))


def matching_lines(e: dict, typ: str, cat: str | None) -> list[dict] | None:
    """The lines an event contributes to series (typ, cat), or None if it does not match."""
    if typ != "any" and e["type"] != typ:
        return None
    ls = lines(e)
    if cat is None:
        return ls
    ls = [x for x in ls if cat_ok(x, cat)]
    return ls or None


class Ev:
    """An accepted event: its JSON doc, plus what the reads need, derived from the doc once:
    its bucket start at each resolution (``q``), and per series (type, category filter) the
    value of its matching lines, or None if it does not match (``m``)."""

    __slots__ = ("doc", "ts", "q", "m")

    def __init__(self, doc: dict) -> None:
        self.doc = doc
        self.ts = ts = doc["timestamp"]
        self.q = {r: ts - ts % r for r in (SEC, MIN, HOUR)}
        self.m = _Match(doc)


class _Match(dict):
    def __init__(self, doc: dict) -> None:
        super().__init__()
        self.doc = doc

    def __missing__(self, key: tuple[str, str | None]) -> float | None:
        ls = matching_lines(self.doc, *key)
        v = self[key] = None if ls is None else sum(float(x.get("price", 0)) * x.get("quantity", 1) for x in ls)
        return v


class Events(list):
    """A profile's accepted events (appended only); remembers ``last`` until the next append."""

    def __init__(self) -> None:
        super().__init__()
        self.lasts: dict = {}

    def append(self, e: Ev) -> None:
        super().append(e)
        self.lasts = {}


def count(evs: list[Ev], typ: str, w: int, t: int, cat: str | None = None) -> int:
    r, cut, key = resolution(w), t - w, (typ, cat)
    return sum(1 for e in evs if e.m[key] is not None and e.q[r] > cut)


def total(evs: list[Ev], typ: str, w: int, t: int, cat: str | None = None) -> float:
    r, cut, key = resolution(w), t - w, (typ, cat)
    s = 0  # in millionths: sums are exact to a millionth, whatever the order of the values
    for e in evs:
        v = e.m[key]
        if v is not None and e.q[r] > cut:
            s += round(v * 1_000_000)
    return s / 1_000_000


def last(evs: Events, typ: str, cat: str | None = None) -> int | None:
    key = (typ, cat)
    got = evs.lasts.get(key, 0)
    if got == 0:
        ts = [e.ts for e in evs if e.m[key] is not None]
        got = evs.lasts[key] = max(ts) if ts else None
    return got


def since_ge(evs, typ, d, t):
    x = last(evs, typ)
    return x is None or t - x >= d


def since_gt(evs, typ, d, t):
    x = last(evs, typ)
    return x is None or t - x > d


def since_lt(evs, typ, d, t):
    x = last(evs, typ)
    return x is not None and t - x < d


def since_le(evs, typ, d, t):
    x = last(evs, typ)
    return x is not None and t - x <= d


# -- the conditions, by hand (``seg`` holds the segments evaluated before, at the same t) ----
Cond = Callable[[list, int, dict], bool]
CONDITIONS: list[tuple[str, Cond]] = [
    ("cart_abandoner", lambda evs, t, seg: count(evs, "add_to_cart", 10 * MIN, t) >= 1
     and count(evs, "purchase", 10 * MIN, t) == 0),
    ("hot_browser", lambda evs, t, seg: count(evs, "product_view", HOUR, t) >= 4
     or count(evs, "search", 10 * MIN, t) >= 3),
    ("cart_waiter", lambda evs, t, seg: count(evs, "add_to_cart", 2 * HOUR, t) >= 1
     and since_ge(evs, "add_to_cart", 30 * MIN, t) and since_ge(evs, "purchase", 30 * MIN, t)),
    ("outdoor_fan", lambda evs, t, seg: count(evs, "product_view", 7 * DAY, t, "outdoor") >= 3
     or total(evs, "purchase", 30 * DAY, t, "outdoor") >= 150),
    ("big_spender", lambda evs, t, seg: total(evs, "purchase", 30 * DAY, t) >= 400),
    ("lapsed", lambda evs, t, seg: since_ge(evs, "any", 14 * DAY, t)),
    ("outdoor_prospect", lambda evs, t, seg: seg["outdoor_fan"] and not seg["big_spender"]
     and count(evs, "purchase", 2 * DAY, t) == 0),
    ("winback", lambda evs, t, seg: since_ge(evs, "purchase", 3 * DAY, t) and since_lt(evs, "purchase", 20 * DAY, t)
     and not count(evs, "any", DAY, t) >= 1),
    ("hesitant", lambda evs, t, seg: count(evs, "remove_from_cart", 6 * HOUR, t) >= 2
     or (count(evs, "add_to_cart", DAY, t) >= 3 and count(evs, "purchase", DAY, t) == 0)),
    ("loyal", lambda evs, t, seg: count(evs, "purchase", 90 * DAY, t) >= 3),
    ("quiet_searcher", lambda evs, t, seg: count(evs, "search", 2 * DAY, t) >= 2
     and since_gt(evs, "search", HOUR, t) and since_le(evs, "page_view", 2 * HOUR, t)),
]

# Every (series, window) of a count/sum above, and every (series, offset) of a since
# comparison (D for >= and <, D + 1 for > and <=): the instants time alone may change things.
WINDOWS: list[tuple[str, int, str | None]] = [
    ("add_to_cart", 10 * MIN, None), ("purchase", 10 * MIN, None),
    ("product_view", HOUR, None), ("search", 10 * MIN, None),
    ("add_to_cart", 2 * HOUR, None),
    ("product_view", 7 * DAY, "outdoor"), ("purchase", 30 * DAY, "outdoor"),
    ("purchase", 30 * DAY, None),
    ("purchase", 2 * DAY, None),
    ("any", DAY, None),
    ("remove_from_cart", 6 * HOUR, None), ("add_to_cart", DAY, None), ("purchase", DAY, None),
    ("purchase", 90 * DAY, None),
    ("search", 2 * DAY, None),
]
SINCES: list[tuple[str, int]] = [
    ("add_to_cart", 30 * MIN), ("purchase", 30 * MIN),
    ("any", 14 * DAY),
    ("purchase", 3 * DAY), ("purchase", 20 * DAY),
    ("search", HOUR + 1), ("page_view", 2 * HOUR + 1),
]


def window_instants(e: Ev) -> list[int]:
    """The instants at which event ``e`` leaves the windows it is counted in."""
    return [e.q[resolution(w)] + w for typ, w, cat in WINDOWS if e.m[(typ, cat)] is not None]


def next_instant(p: RefProfile) -> int | None:
    """The earliest instant > the clock at which time alone may change a membership."""
    c = p.clock
    best = min((x for x in p.instants if x > c), default=None)
    for typ, d in SINCES:
        x = last(p.events, typ)
        if x is not None and x + d > c and (best is None or x + d < best):
            best = x + d
    return best


# -- the reference run ----------------------------------------------------------------------
@dataclass
class RefProfile:
    events: Events = field(default_factory=Events)  # accepted, in arrival order
    instants: list[int] = field(default_factory=list)  # window_instants of every accepted event
    ids: set[str] = field(default_factory=set)
    clock: int = 0
    members: dict[str, int] = field(default_factory=dict)  # segment -> entered at


@dataclass
class RefResult:
    transitions: dict[str, list[tuple]]  # profile id -> [(pid, segment, transition, at, cause)]
    too_late: list[int]  # offsets
    duplicates: list[int]
    late_accepted: list[int]  # accepted with ts below the profile's clock
    members: dict[tuple[str, str], int]  # (segment, profile) -> entered at
    profiles: dict[str, RefProfile]
    final_watermark: int


def evaluate(pid: str, p: RefProfile, t: int, cause: str, out: list[tuple]) -> None:
    seg: dict[str, bool] = {}
    for sid, cond in CONDITIONS:
        now = seg[sid] = bool(cond(p.events, t, seg))
        if now and sid not in p.members:
            p.members[sid] = t
            out.append((pid, sid, "entered", t, cause))
        elif not now and sid in p.members:
            del p.members[sid]
            out.append((pid, sid, "exited", t, cause))


def advance(pid: str, p: RefProfile, until: int, out: list[tuple]) -> None:
    while True:
        x = next_instant(p)
        if x is None or x >= until:
            return
        p.clock = x
        evaluate(pid, p, x, "time", out)


def reference(docs: list[dict | None], lateness_ms: int) -> RefResult:
    """``docs[i]`` is the event at offset i of the one partition, or None for an invalid record."""
    profiles: dict[str, RefProfile] = {}
    trans: dict[str, list[tuple]] = {}
    too_late, dups, late_ok = [], [], []
    wm = 0
    for offset, e in enumerate(docs):
        if e is None:
            continue
        ts = e["timestamp"]
        wm = max(wm, ts)
        pid = "user:" + e["user_id"]
        p = profiles.setdefault(pid, RefProfile())
        out = trans.setdefault(pid, [])
        advance(pid, p, wm, out)
        if e["event_id"] in p.ids:
            dups.append(offset)
            continue
        if ts < wm - lateness_ms:
            too_late.append(offset)
            continue
        if ts < p.clock:
            late_ok.append(offset)
        ev = Ev(e)
        p.events.append(ev)
        p.instants.extend(window_instants(ev))
        p.ids.add(e["event_id"])
        p.clock = max(p.clock, ts)
        evaluate(pid, p, p.clock, e["event_id"], out)
    for pid, p in profiles.items():
        advance(pid, p, wm, trans[pid])
    members = {(sid, pid): at for pid, p in profiles.items() for sid, at in p.members.items()}
    return RefResult({k: v for k, v in trans.items() if v}, too_late, dups, late_ok, members, profiles, wm)


# -- the randomized stream ------------------------------------------------------------------
CATEGORIES = ["outdoor", "outdoor/tents", "outdoor/boots", "outdoorsy", "books", "kitchen/knives", "garden"]
CAT_WEIGHTS = [3, 4, 3, 2, 3, 2, 2]


@dataclass
class Stream:
    docs: list[dict | None]  # per offset: the event sent, or None for an invalid record
    raw: list[tuple[bytes | dict, str, int]]  # per offset: (doc to serialize, key user, ingest ms)
    invalid: list[int]  # offsets of the invalid records


def _line(rng: random.Random, with_price: bool = True) -> dict:
    item = {"item_id": f"sku-{rng.randrange(400)}", "category": rng.choices(CATEGORIES, CAT_WEIGHTS)[0]}
    if with_price:
        item["price"] = rng.choice([5, 12.5, 20, 35, 49.5, 60, 99, 120, 180.25, 250])
    return item


def _session(rng: random.Random, start: int) -> list[tuple[int, dict]]:
    """(ts, fields) of one session."""
    out: list[tuple[int, dict]] = []
    t = start

    def step():
        nonlocal t
        r = rng.random()
        if r < 0.25:
            t += rng.randrange(0, 2 * SEC)  # bursts within a second
        elif r < 0.75:
            t += rng.randrange(2 * SEC, 60 * SEC)
        elif r < 0.93:
            t += rng.randrange(MIN, 8 * MIN)
        else:
            t += rng.randrange(10 * MIN, 50 * MIN)  # a pause mid-session
        return t

    out.append((t, {"type": "page_view", "context": {"device": rng.choice(["mobile", "desktop"])}}))
    kind = rng.random()
    for _ in range(rng.randrange(0, 4)):
        out.append((step(), {"type": "search", "query": rng.choice(["tent", "boots", "knife", "novel"])}))
    for _ in range(rng.randrange(1, 6)):
        out.append((step(), {"type": "product_view", **_line(rng)}))
        if rng.random() < 0.15:
            out.append((step(), {"type": "page_view"}))
    if kind < 0.55:  # a cart
        carted = []
        for _ in range(rng.randrange(1, 4)):
            line = _line(rng)
            line["quantity"] = rng.choice([1, 1, 1, 2, 3])
            carted.append(line)
            out.append((step(), {"type": "add_to_cart", **line}))
        if rng.random() < 0.3:
            gone = rng.choice(carted)
            out.append((step(), {"type": "remove_from_cart", "item_id": gone["item_id"],
                                 "category": gone["category"]}))
            if rng.random() < 0.4:
                out.append((step(), {"type": "remove_from_cart", "item_id": carted[0]["item_id"]}))
        if rng.random() < 0.55:
            if rng.random() < 0.3:
                t += rng.randrange(20 * MIN, 3 * HOUR)  # thinks it over
            if len(carted) > 1 or rng.random() < 0.3:
                extra = [_line(rng) for _ in range(rng.randrange(0, 3))]
                for x in extra:
                    x["quantity"] = rng.choice([1, 2])
                out.append((step(), {"type": "purchase", "order_id": f"o{rng.randrange(10**9)}",
                                     "items": [dict(x) for x in carted + extra]}))
            else:
                out.append((step(), {"type": "purchase", **carted[0]}))
    return out


def generate(seed: int, users: int, lateness_ms: int, span_days: int = 100) -> Stream:
    rng = random.Random(seed)
    events: list[tuple[int, int, dict]] = []  # (arrival, seq, doc)
    seq = 0
    end = T0 + span_days * DAY
    for u in range(users):
        uid = f"u{u:05d}"
        t = T0 + rng.randrange(0, span_days * DAY // 2) + rng.randrange(1000)
        n = 0
        sessions = 1 + min(int(rng.expovariate(1 / 2.2)), 12)
        for _ in range(sessions):
            if t >= end:
                break
            for ts, fields in _session(rng, t):
                n += 1
                doc = {"event_id": f"{uid}-{n}", "type": fields.pop("type"), "user_id": uid, "timestamp": ts,
                       **fields}
                r = rng.random()
                if r < 0.85:
                    delay = 0
                elif r < 0.95:
                    delay = rng.randrange(SEC, lateness_ms * 9 // 10)  # out of order, mostly accepted
                elif r < 0.97:
                    delay = rng.randrange(lateness_ms // 2, 2 * lateness_ms)  # around the limit
                else:
                    delay = rng.randrange(2 * lateness_ms, 3 * DAY)  # far behind: too late
                events.append((ts + delay, seq, doc))
                seq += 1
                if rng.random() < 0.03:  # a producer retry: the same event again
                    again = rng.choice([rng.randrange(0, 30 * SEC), rng.randrange(MIN, 3 * lateness_ms)])
                    events.append((ts + delay + again, seq, doc))
                    seq += 1
                t = ts
            g = rng.random()
            if g < 0.2:
                t += rng.randrange(5 * MIN, 50 * MIN)
            elif g < 0.5:
                t += rng.randrange(HOUR, 12 * HOUR)
            elif g < 0.8:
                t += rng.randrange(DAY, 5 * DAY)
            else:
                t += rng.randrange(7 * DAY, 30 * DAY)  # long idle gaps
    events.sort(key=lambda x: (x[0], x[1]))
    docs: list[dict | None] = []
    raw: list[tuple] = []
    invalid: list[int] = []
    for i, (arrival, _seq, doc) in enumerate(events):
        if i % 997 == 500:  # an invalid record now and then, some from real users
            bad = dict(doc, event_id=f"bad-{i}")
            kind = (i // 997) % 4
            if kind == 0:
                bad["type"] = "page_vue"
            elif kind == 1:
                bad["timestamp"] = arrival + 3 * DAY  # in the future of ingestion: would move the watermark
            elif kind == 2:
                del bad["event_id"]
            else:
                bad["timestamp"] = arrival + 2 * DAY
                bad["type"] = "purchase"
                bad["items"] = [{"item_id": "x", "price": -5}]
            invalid.append(len(docs))
            docs.append(None)
            raw.append((bad, doc["user_id"], arrival))
        docs.append(doc)
        raw.append((doc, doc["user_id"], arrival))
    return Stream(docs, raw, invalid)
