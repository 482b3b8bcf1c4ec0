"""Per-profile windowed behavioural counters: counts, value totals, distinct values, recency.

A :class:`SeriesSpec` selects events; a :class:`FeaturePlan` lists the series and windows
segment definitions need; a :class:`WindowedCounters` (one per profile) keeps their buckets.

Window semantics (exact; other modules and the reference tests rely on them):

- ``resolution_ms(W)`` is 1 s for W <= 1 h, 1 min for W <= 60 h, 1 h for W <= 90 days
  (``MAX_WINDOW_MS``); windows under 1 s or over 90 days are refused (``ValueError``).
- An event at ``ts`` lands in bucket ``b = ts - ts % res`` at every resolution that a
  registered window of its series uses.
- ``count(key, W, now)`` = number of matching events whose bucket (at ``resolution_ms(W)``)
  has ``b > now - W``; ``total`` sums their values, ``distinct`` counts distinct line
  attributes in those buckets. Reads happen at ``now >= ts`` only, so a bucket leaves the
  window exactly at instant ``b + W``: windows up to 1 h are exact to the second, longer
  ones to the minute (<= 60 h) or the hour (<= 90 days), never coarser than 1/60 of W.
- ``next_change(key, W, now)`` = ``min(b + W)`` over the buckets in the window: the next
  instant at which time alone changes count/total/distinct (``None`` if nothing is in it).
- ``last(key)`` = the latest ``ts`` of a matching event, whatever the windows.
- Value of an event = sum of ``price * quantity`` over its matching lines.

Memory per series, after ``prune``: at most 3600 second buckets, 3600 minute buckets and
2160 hour buckets, each a count, a sum and, per distinct attribute needed at that
resolution, at most ``MAX_DISTINCT_PER_BUCKET`` values. The cap keeps the smallest values
(so content never depends on arrival order); beyond it ``distinct`` saturates (a lower bound).

>>> from operators.events import parse_event
>>> plan = FeaturePlan([(SeriesSpec("purchase", category="outdoor"), 10 * MINUTE_MS, "item_id")])
>>> c = WindowedCounters()
>>> e = parse_event(b'{"event_id":"e1","type":"purchase","user_id":"u1","timestamp":1795773600500,'
...                 b'"items":[{"item_id":"a","category":"outdoor/tents","price":9.5,"quantity":2},'
...                 b'{"item_id":"b","category":"books","price":3}]}')
>>> c.observe(e, plan)
True
>>> key, w, now = "purchase|category=outdoor", 10 * MINUTE_MS, 1795773600500
>>> c.count(key, w, now), c.total(key, w, now), c.distinct(key, "item_id", w, now)  # 2 x 9.5, not the book
(1, 19.0, 1)
>>> c.next_change(key, w, now)    # bucket 1795773600000 + 10 min
1795774200000
>>> c.count(key, w, 1795774199999), c.count(key, w, 1795774200000)
(1, 0)
>>> WindowedCounters.from_record(c.to_record()) == c
True
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import mul
from typing import Any, Iterable

import orjson

from operators.events import EVENT_TYPES, Event, LineItem

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MAX_WINDOW_MS = 90 * DAY_MS
MAX_DISTINCT_PER_BUCKET = 32
DISTINCT_ATTRS = ("item_id", "category", "brand")
RECORD_VERSION = 1
_SPEC_TYPES = frozenset(EVENT_TYPES) | {"any"}
_ITEM_FILTERS = ("category", "brand", "item_id", "min_price", "max_price")
_FILTERS = ("category", "brand", "item_id", "channel", "device", "min_price", "max_price")  # key order
_NO_MATCH: tuple[bool, float, tuple[LineItem, ...]] = (False, 0.0, ())
_EMPTY: dict = {}  # shared default for reads; never written


class FeatureRecordError(ValueError):
    """A stored counters record does not have the expected shape."""


def resolution_ms(window_ms: int) -> int:
    """Bucket size used for a window.

    >>> resolution_ms(HOUR_MS), resolution_ms(HOUR_MS + 1), resolution_ms(60 * HOUR_MS + 1)
    (1000, 60000, 3600000)
    """
    if isinstance(window_ms, bool) or not isinstance(window_ms, int):
        raise ValueError(f"window {window_ms!r} must be an integer number of milliseconds")
    if window_ms < SECOND_MS:
        raise ValueError(f"window {window_ms} ms is shorter than the minimum {SECOND_MS} ms")
    if window_ms <= HOUR_MS:
        return SECOND_MS
    if window_ms <= 60 * HOUR_MS:
        return MINUTE_MS
    if window_ms <= MAX_WINDOW_MS:
        return HOUR_MS
    raise ValueError(f"window {window_ms} ms is longer than the maximum {MAX_WINDOW_MS} ms (90 days)")


def _value(lines: tuple[LineItem, ...]) -> float:
    v = 0.0
    for line in lines:
        v += line.price * line.quantity
    return v


@dataclass(frozen=True)
class SeriesSpec:
    """Which events a series counts. ``key`` is its canonical, stable name.

    >>> SeriesSpec("product_view", category="outdoor", min_price=100.0).key
    'product_view|category=outdoor|min_price=100'
    """

    event_type: str
    category: str | None = None
    brand: str | None = None
    item_id: str | None = None
    channel: str | None = None
    device: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    key: str = field(init=False, repr=False, compare=False)
    _items: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.event_type not in _SPEC_TYPES:
            raise ValueError(f"series event_type {self.event_type!r} is not one of: any, {', '.join(EVENT_TYPES)}")
        parts = [self.event_type]
        for name in _FILTERS:
            value = getattr(self, name)
            if value is None:
                continue
            if name.endswith("_price"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"series filter {name}={value!r} must be a finite number")
                value = str(int(value)) if float(value).is_integer() else repr(float(value))
            elif not isinstance(value, str) or not value or "|" in value or "=" in value:
                raise ValueError(f"series filter {name}={value!r} must be a non-empty string without '|' or '='")
            parts.append(f"{name}={value}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"series {'|'.join(parts)!r}: min_price is above max_price")
        object.__setattr__(self, "key", "|".join(parts))
        object.__setattr__(self, "_items", any(getattr(self, n) is not None for n in _ITEM_FILTERS))

    def _line_ok(self, line: LineItem) -> bool:
        cat, lc = self.category, line.category
        return ((cat is None or (lc is not None and lc.startswith(cat)
                                 and (len(lc) == len(cat) or lc[len(cat)] == "/")))
                and (self.brand is None or line.brand == self.brand)
                and (self.item_id is None or line.item_id == self.item_id)
                and (self.min_price is None or line.price >= self.min_price)
                and (self.max_price is None or line.price <= self.max_price))

    def match(self, event: Event) -> tuple[bool, float, tuple[LineItem, ...]]:
        """``(matched, value, matching lines)``; the lines are all lines without item filters."""
        if self.event_type != "any" and event.type != self.event_type:
            return _NO_MATCH
        ctx = event.context
        if (self.channel is not None and ctx.channel != self.channel) or \
                (self.device is not None and ctx.device != self.device):
            return _NO_MATCH
        lines = event.items
        if self._items:
            lines = tuple(line for line in lines if self._line_ok(line))
            if not lines:
                return _NO_MATCH
        return True, _value(lines), lines


Requirement = tuple[SeriesSpec, "int | None", "str | None"]


class FeaturePlan:
    """The series, windows and distinct attributes to keep; built once, then read-only.

    Per series key: ``specs``, ``windows`` (frozenset), ``distinct_attrs`` (frozenset),
    ``resolutions`` (sorted tuple), ``longest`` (resolution -> longest window using it).
    ``by_type[t]`` lists the keys of every series an event of type ``t`` can match (its
    own type's series and the ``"any"`` ones). The plan always holds one unfiltered series
    per event type and ``"any"``, so ``last`` of every type is available.

    >>> plan = FeaturePlan([(SeriesSpec("search"), HOUR_MS, None), (SeriesSpec("search"), 2 * DAY_MS, None)])
    >>> plan.resolutions["search"], plan.longest["search"], plan.windows["purchase"]
    ((1000, 60000), {1000: 3600000, 60000: 172800000}, frozenset())
    >>> plan.by_type["search"]
    ['any', 'search']
    """

    def __init__(self, requirements: Iterable[Requirement]) -> None:
        requirements = tuple(requirements)
        self.requirements = requirements  # as given: a plan for more needs starts from these
        self.specs: dict[str, SeriesSpec] = {}
        need: dict[str, set[tuple[int, str]]] = {}  # key -> {(window, distinct attr or "")}
        base = [(SeriesSpec(t), None, None) for t in ("any", *EVENT_TYPES)]
        for n, (spec, window, attr) in enumerate([*base, *requirements], start=-len(base)):
            if not isinstance(spec, SeriesSpec):
                raise ValueError(f"requirement {n}: expected a SeriesSpec, got {type(spec).__name__}")
            self.specs.setdefault(spec.key, spec)
            need.setdefault(spec.key, set())
            if attr is not None and (attr not in DISTINCT_ATTRS or window is None):
                raise ValueError(f"requirement {n} ({spec.key}): distinct {attr!r} needs a window and one of: "
                                 f"{', '.join(DISTINCT_ATTRS)}")
            if window is not None:
                resolution_ms(window)
                need[spec.key].add((window, attr or ""))
        self.windows = {k: frozenset(w for w, _ in reqs) for k, reqs in need.items()}
        self.distinct_attrs = {k: frozenset(a for _, a in reqs if a) for k, reqs in need.items()}
        self.longest: dict[str, dict[int, int]] = {k: {} for k in need}
        self._keep_d: dict[tuple[str, int, str], int] = {}  # (key, res, attr) -> longest distinct window
        for key, reqs in need.items():
            for w, attr in sorted(reqs):
                self.longest[key][resolution_ms(w)] = w
                if attr:
                    self._keep_d[(key, resolution_ms(w), attr)] = w
        self.resolutions = {k: tuple(sorted(v)) for k, v in self.longest.items()}
        # What observe() walks per event type: (key, spec or None when the type is the only
        # filter, ((res, (key, res), (((key, res, attr), attr), ...)), ...)): keys made once.
        compiled = {k: (k, s if s._items or s.channel or s.device else None,
                        tuple((r, (k, r), tuple((d, d[2]) for d in sorted(self._keep_d) if d[:2] == (k, r)))
                              for r in self.resolutions[k]))
                    for k, s in self.specs.items()}
        self.by_type = {t: sorted(k for k, s in self.specs.items() if s.event_type in (t, "any")) for t in EVENT_TYPES}
        self._compiled = {t: tuple(compiled[k] for k in keys) for t, keys in self.by_type.items()}
        canon = [[k, sorted(need[k])] for k in sorted(need)]
        self.fingerprint = hashlib.sha256(orjson.dumps(canon)).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"FeaturePlan({len(self.specs)} series, fingerprint={self.fingerprint})"


def _add_capped(values: set[str], v: str) -> None:
    """Keep the ``MAX_DISTINCT_PER_BUCKET`` smallest values: independent of arrival order."""
    if v in values:
        return
    if len(values) < MAX_DISTINCT_PER_BUCKET:
        values.add(v)
        return
    top = max(values)
    if v < top:
        values.remove(top)
        values.add(v)


# A window's buckets are a suffix of the sorted starts (``b > now - W``; reads happen at
# ``now >= ts``), so every read is one bisect: a count is a difference of two prefix sums,
# ``next_change`` is the first start in the window plus ``W``.
_CUM_PATCH = 64  # a middle insert patches at most this many prefix sums, else they are rebuilt on read
# Sums are kept in integer millionths: exact, so they do not depend on the order values were
# added in (a person's events read from two partitions interleave differently per run, and
# a float sum then differed in its last bit). Values are rounded to a millionth.
MICRO = 1_000_000
KEEP_PACKED = 64  # buckets from which a series keeps its stored form (``_Series``)


def micros(value: float) -> int:
    """``value`` in integer millionths (what a windowed sum adds)."""
    return round(value * MICRO)


def _stored_sum(s: int) -> float | int:
    """A bucket's sum (millionths) as the stored form writes it."""
    return _sum(s / MICRO)


_RES: dict[int, int] = {}  # window -> resolution, for windows already checked


def _res(window_ms: int) -> int:
    r = _RES.get(window_ms)
    if r is None or type(window_ms) is not int:
        r = resolution_ms(window_ms)
        if type(window_ms) is int and len(_RES) < 4096:
            _RES[window_ms] = r
    return r


def read_key(key: str, window_ms: int) -> tuple[str, int]:
    """The bucket key of series ``key`` read over ``window_ms`` (for the ``*_at`` reads)."""
    return key, resolution_ms(window_ms)


class _Series:
    """One series' buckets at one resolution, ascending by start: parallel lists of starts
    ``bs``, counts ``cnt`` and value sums ``sm`` (in millionths, ``MICRO``); ``cum`` holds
    the prefix sums of ``cnt`` (one longer; ``cum[i]`` minus ``cum[j]`` counts buckets
    ``j..i-1``), or None until the next read rebuilds it; ``tot`` caches the last window
    total as ``(start index, total)``. ``res`` is the series' resolution (part of its
    key). ``packed`` is the stored form's flat list (None until first needed): kept up to date as buckets are added at
    the end and dropped from the start, so a heavy profile's busiest series (a thousand
    one-second buckets) is not re-packed on every event; ``packed_json`` is it encoded,
    until the next change (an event changes a few of a profile's series; the others are
    not packed again). Only series of ``KEEP_PACKED`` buckets or more keep the list:
    re-packing a short one costs little, and keeping it would cost memory in every
    cached profile."""

    __slots__ = ("bs", "cnt", "sm", "cum", "tot", "packed", "packed_json", "res")

    def __init__(self, res: int, bs: list[int] | None = None, cnt: list[int] | None = None,
                 sm: list[int] | None = None) -> None:
        self.res = res
        self.bs: list[int] = bs if bs is not None else []
        self.cnt: list[int] = cnt if cnt is not None else []
        self.sm: list[int] = sm if sm is not None else []
        self.cum: list[int] | None = None if bs else [0]
        self.tot: tuple[int, float] | None = None
        self.packed: list | None = None
        self.packed_json: bytes | None = None

    def add(self, b: int, c: int, s: int) -> None:
        bs = self.bs
        self.tot = self.packed_json = None
        cum = self.cum
        packed = self.packed
        if not bs or b > bs[-1]:
            if packed is not None:
                res = self.res
                packed += (b // res - (bs[-1] // res if bs else 0), c, _stored_sum(s))
            bs.append(b)
            self.cnt.append(c)
            self.sm.append(s)
            if cum is not None:
                cum.append(cum[-1] + c)
            return
        if b == bs[-1]:
            self.cnt[-1] += c
            self.sm[-1] += s
            if packed is not None:
                packed[-2:] = self.cnt[-1], _stored_sum(self.sm[-1])
            if cum is not None:
                cum[-1] += c
            return
        self.packed = None  # an earlier bucket (a late event): packed again when next needed
        j = bisect_left(bs, b)  # < len(bs): b < bs[-1]
        if bs[j] == b:
            self.cnt[j] += c
            self.sm[j] += s
        else:
            bs.insert(j, b)
            self.cnt.insert(j, c)
            self.sm.insert(j, s)
            if cum is not None:
                cum.insert(j + 1, cum[j])
        if cum is not None:
            if len(cum) - j > _CUM_PATCH:
                self.cum = None
            else:
                for k in range(j + 1, len(cum)):
                    cum[k] += c

    def drop_upto(self, cutoff: int) -> bool:
        """Delete buckets ``b <= cutoff``; False if none is left."""
        i = bisect_right(self.bs, cutoff)
        if i:
            del self.bs[:i], self.cnt[:i], self.sm[:i]
            if self.cum is not None:
                del self.cum[:i]  # differences of the remaining prefix sums are unchanged
            self.tot = self.packed_json = None
            packed = self.packed
            if packed is not None:
                if len(self.bs) < KEEP_PACKED:
                    self.packed = None
                else:
                    del packed[:3 * i]
                    packed[0] = self.bs[0] // self.res  # the first index is absolute
        return bool(self.bs)

    def _packed(self) -> list:
        if self.packed is not None:
            return self.packed
        packed = _pack(self.bs, self.res, [(c, _stored_sum(s)) for c, s in zip(self.cnt, self.sm)])
        if len(self.bs) >= KEEP_PACKED:
            self.packed = packed
        return packed

    def pack(self) -> list:
        return self._packed().copy()

    def pack_json(self) -> orjson.Fragment:
        if self.packed_json is None:
            self.packed_json = exact_bytes(orjson.dumps(self._packed()))
        return orjson.Fragment(self.packed_json)

    def prefix(self) -> list[int]:
        """``cum``, rebuilt if a middle insert dropped it."""
        cum = self.cum
        if cum is None:
            cum = self.cum = list(accumulate(self.cnt, initial=0))
        return cum

    def count_from(self, i: int) -> int:
        cum = self.prefix()
        return cum[-1] - cum[i]

    def total_from(self, i: int) -> float:
        tot = self.tot
        if tot is not None and tot[0] == i:
            return tot[1]
        v = sum(self.sm[i:]) / MICRO if i < len(self.sm) else 0.0
        self.tot = (i, v)
        return v

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Series):
            return NotImplemented
        return self.bs == other.bs and self.cnt == other.cnt and self.sm == other.sm

    __hash__ = None  # type: ignore[assignment]


class _Sets:
    """One series' distinct values of one attribute at one resolution, ascending by start:
    ``bs`` and the parallel list ``vals`` of capped sets."""

    __slots__ = ("bs", "vals")

    def __init__(self, bs: list[int] | None = None, vals: list[set[str]] | None = None) -> None:
        self.bs: list[int] = bs if bs is not None else []
        self.vals: list[set[str]] = vals if vals is not None else []

    def add(self, b: int, v: str) -> None:
        bs = self.bs
        if bs and b == bs[-1]:
            _add_capped(self.vals[-1], v)
        elif not bs or b > bs[-1]:
            bs.append(b)
            self.vals.append({v})
        else:
            j = bisect_left(bs, b)
            if bs[j] == b:
                _add_capped(self.vals[j], v)
            else:
                bs.insert(j, b)
                self.vals.insert(j, {v})

    def drop_upto(self, cutoff: int) -> bool:
        i = bisect_right(self.bs, cutoff)
        if i:
            del self.bs[:i], self.vals[:i]
        return bool(self.bs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Sets):
            return NotImplemented
        return self.bs == other.bs and self.vals == other.vals

    __hash__ = None  # type: ignore[assignment]


class WindowedCounters:
    """One profile's buckets per ``(key, res)`` (starts, counts, sums in ascending order),
    distinct sets per ``(key, res, attr)`` and ``{key: last ts}``. Reads never change what
    is counted (they may fill the caches of a series)."""

    __slots__ = ("_b", "_d", "_last", "touched", "pending", "window_memo")

    def __init__(self) -> None:
        self._b: dict[tuple[str, int], _Series] = {}
        self._d: dict[tuple[str, int, str], _Sets] = {}
        self._last: dict[str, int] = {}
        self.touched: list[str] = []  # the series keys the last observe() matched (not stored)
        # For ``SegmentSet.next_change`` (not stored): what it computed last, ``(its set's
        # token, now, windows' instant, thresholds' instants)``, and the series keys
        # observed since (None: recompute).
        self.pending: set[str] = set()
        self.window_memo: tuple | None = None

    # -- updates ----------------------------------------------------------------------
    def observe(self, event: Event, plan: FeaturePlan) -> bool:
        """Count one event in every series of ``plan`` it matches; True if anything changed."""
        ts = event.ts_ms
        changed = False
        last = self._last
        touched = self.touched = []
        for key, spec, layout in plan._compiled.get(event.type, ()):
            if spec is None:
                lines, value = event.items, None
            else:
                ok, value, lines = spec.match(event)
                if not ok:
                    continue
            touched.append(key)
            self.pending.add(key)
            old = last.get(key)
            if old is None or ts > old:
                last[key] = ts
                changed = True
            if not layout:
                continue
            changed = True
            amount = micros(_value(lines) if value is None else value)
            for res, bkey, dkeys in layout:
                b = ts - ts % res
                series = self._b.get(bkey)
                if series is None:
                    series = self._b[bkey] = _Series(res)
                series.add(b, 1, amount)
                for dkey, attr in dkeys:
                    for line in lines:
                        v = getattr(line, attr)
                        if v is not None:
                            self._distinct_add(dkey, b, v)
        return changed

    def _distinct_add(self, dkey: tuple[str, int, str], b: int, v: str) -> None:
        sets = self._d.get(dkey)
        if sets is None:
            sets = self._d[dkey] = _Sets()
        sets.add(b, v)

    def prune(self, plan: FeaturePlan, now: int) -> None:
        """Drop what no registered window can read again at any instant >= ``now``."""
        for key in [k for k in self._last if k not in plan.specs]:
            del self._last[key]
        for (key, res), series in list(self._b.items()):
            w = plan.longest.get(key, _EMPTY).get(res)
            if w is None or not series.drop_upto(now - w):
                del self._b[(key, res)]
        for dkey, sets in list(self._d.items()):
            w = plan._keep_d.get(dkey)
            if w is None or not sets.drop_upto(now - w):
                del self._d[dkey]

    def absorb(self, other: WindowedCounters) -> None:
        """Merge another profile's counters into this one (identity stitching)."""
        self.window_memo = None
        for key, ts in other._last.items():
            if ts > self._last.get(key, ts - 1):
                self._last[key] = ts
        for bkey, theirs in other._b.items():
            into = self._b.get(bkey)
            if into is None:
                into = self._b[bkey] = _Series(bkey[1])
            for b, c, s in zip(theirs.bs, theirs.cnt, theirs.sm):
                into.add(b, c, s)
        for dkey, theirs in other._d.items():
            for b, values in zip(theirs.bs, theirs.vals):
                for v in values:
                    self._distinct_add(dkey, b, v)

    # -- reads ------------------------------------------------------------------------
    def count(self, key: str, window_ms: int, now: int) -> int:
        return self.count_at((key, _res(window_ms)), window_ms, now)

    def total(self, key: str, window_ms: int, now: int) -> float:
        return self.total_at((key, _res(window_ms)), window_ms, now)

    def distinct(self, key: str, attr: str, window_ms: int, now: int) -> int:
        if attr not in DISTINCT_ATTRS:
            raise ValueError(f"distinct attribute {attr!r} is not one of: {', '.join(DISTINCT_ATTRS)}")
        return self.distinct_at((key, _res(window_ms), attr), window_ms, now)

    def last(self, key: str) -> int | None:
        return self._last.get(key)

    def next_change(self, key: str, window_ms: int, now: int) -> int | None:
        return self.next_change_at((key, _res(window_ms)), window_ms, now)

    # The same reads with the bucket key ``read_key(key, window_ms)`` (or ``(*read_key(..),
    # attr)`` for distinct) made once by the caller: what compiled segment conditions use.
    def count_at(self, bkey: tuple[str, int], window_ms: int, now: int) -> int:
        series = self._b.get(bkey)
        if series is None:
            return 0
        return series.count_from(bisect_right(series.bs, now - window_ms))

    def total_at(self, bkey: tuple[str, int], window_ms: int, now: int) -> float:
        series = self._b.get(bkey)
        if series is None:
            return 0.0
        return series.total_from(bisect_right(series.bs, now - window_ms))

    def distinct_at(self, dkey: tuple[str, int, str], window_ms: int, now: int) -> int:
        sets = self._d.get(dkey)
        if sets is None:
            return 0
        i = bisect_right(sets.bs, now - window_ms)
        vals = sets.vals
        n = len(vals)
        if i >= n:
            return 0
        if i == n - 1:
            return len(vals[i])
        return len(set().union(*vals[i:]))

    def next_change_at(self, bkey: tuple[str, int], window_ms: int, now: int) -> int | None:
        series = self._b.get(bkey)
        if series is None:
            return None
        bs = series.bs
        i = bisect_right(bs, now - window_ms)
        return bs[i] + window_ms if i < len(bs) else None

    def flip_at(self, bkey: tuple[str, int], window_ms: int, op: str, number: float, now: int,
                total: bool = False) -> int | None:
        """The first instant after ``now`` at which ``count_at(bkey, window_ms, t) op
        number`` (``total_at`` if ``total``) differs from its value at ``now`` if no
        event comes, or None if it never does. With no event, the value only falls, a
        bucket at a time, as buckets leave the window (bucket ``b`` at ``b + window``), so
        a comparison changes at most once (twice for ``==``, ``!=``), where the value
        crosses the number. A sum with a negative bucket is not monotone: the instant of
        the first bucket leaving stands for it."""
        series = self._b.get(bkey)
        if series is None:
            return None
        bs = series.bs
        i = bisect_right(bs, now - window_ms)
        n = len(bs)
        if i >= n:
            return None
        if total:
            sm = series.sm[i:]
            if min(sm) < 0:
                return bs[i] + window_ms
            # after the buckets before j left (j = i..n): the sum of the rest, exactly as
            # ``total_from`` computes it (integer millionths, then one division).
            rest = list(accumulate(reversed(sm), initial=0))
            rest.reverse()  # rest[j - i] = sum(sm[j:]) in millionths

            def value(j: int) -> float:
                return rest[j - i] / MICRO
        else:
            cum = series.prefix()
            last = cum[-1]

            def value(j: int) -> float:
                return last - cum[j]
        cur = value(i)
        # ``falls(j)``: true from some j on (values fall with j); the first such j > i is
        # the change, if the comparison's value there differs from now's.
        if op in (">=", "<"):
            falls, differs = (lambda j: value(j) < number), True
        elif op in (">", "<="):
            falls, differs = (lambda j: value(j) <= number), True
        elif cur == number:  # == or != : the value leaves the number
            falls, differs = (lambda j: value(j) < number), True
        elif cur > number:  # == or != : the value may reach the number
            falls, differs = (lambda j: value(j) <= number), False
        else:
            return None
        if falls(i):
            return None  # already past the crossing: it stays so
        lo, hi = i + 1, n  # value(n) is 0: search the first j in (i, n] with falls(j)
        if not falls(hi):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if falls(mid):
                hi = mid
            else:
                lo = mid + 1
        if not differs and value(lo) != number:
            return None  # it jumps over the number: == stays false, != true
        return bs[lo - 1] + window_ms

    def last_change_before(self, reads: Iterable[tuple[tuple[str, int], tuple[int, ...]]], until: int) -> int | None:
        """The latest instant < ``until`` at which a bucket left one of the windows of
        ``reads`` (as for ``next_change_min``), or None."""
        b = self._b
        # bs[j - 1] + w < until with j = bisect_left(bs, until - w): the last bucket to leave before it
        return max((series.bs[j - 1] + w for bkey, windows in reads if (series := b.get(bkey)) is not None
                    for w in windows if (j := bisect_left(series.bs, until - w))), default=None)

    def next_change_min(self, reads: Iterable[tuple[tuple[str, int], tuple[int, ...]]], now: int) -> int | None:
        """The smallest ``next_change`` over ``reads``: ``(read_key(key, w), (w, ...))``
        pairs, every window of a bucket key listed with it."""
        best = None
        b = self._b
        for bkey, windows in reads:
            series = b.get(bkey)
            if series is None:
                continue
            bs = series.bs
            n = len(bs)
            for w in windows:
                i = bisect_right(bs, now - w)
                if i < n:
                    t = bs[i] + w
                    if best is None or t < best:
                        best = t
        return best

    # -- stored form --------------------------------------------------------------------
    def to_record(self, encoded: bool = False) -> dict[str, Any]:
        """``{"v": 1, "last": {key: ts}, "b": [[key, res, [di, count, sum, ...]], ...],
        "d": [[key, res, attr, [di, [values], ...]], ...]}``, everything sorted; ``di`` is
        the bucket index ``b // res`` minus the previous one (the first is absolute).
        ``encoded``: the bucket lists as ``orjson.Fragment`` (kept encoded until the series
        changes; for ``orjson.dumps``)."""
        rec: dict[str, Any] = {"v": RECORD_VERSION, "last": dict(sorted(self._last.items()))}
        if self._b:
            rec["b"] = [[k, r, ser.pack_json() if encoded else ser.pack()]
                        for (k, r), ser in sorted(self._b.items(), key=_first)]
        if self._d:
            rec["d"] = [[k, r, a, _pack(sets.bs, r, [(sorted(vs),) for vs in sets.vals])]
                        for (k, r, a), sets in sorted(self._d.items(), key=_first)]
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> WindowedCounters:
        if not isinstance(rec, dict) or rec.get("v") != RECORD_VERSION:
            raise FeatureRecordError(f"counters record: expected a dict with v={RECORD_VERSION}")
        out = cls()
        try:
            out._last = {str(k): _int(ts) for k, ts in rec["last"].items()}
            for key, res, flat in rec.get("b", ()):
                res = _int(res)
                out._b[(str(key), res)] = _series(flat, res)
            for key, res, attr, flat in rec.get("d", ()):
                res = _int(res)
                cells = _ascending([(b, _strs(flat[i + 1])) for i, b in _unpack(flat, res, 2)])
                out._d[(str(key), res, str(attr))] = _Sets([b for b, _ in cells], [v for _, v in cells])
        except FeatureRecordError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise FeatureRecordError(f"counters record: {exc!r}") from exc
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WindowedCounters):
            return NotImplemented
        return self._last == other._last and self._b == other._b and self._d == other._d

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"WindowedCounters({len(self._last)} series, {sum(len(s.bs) for s in self._b.values())} buckets)"


def _first(item: tuple) -> Any:
    return item[0]


def _ascending(cells: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Cells as written by ``to_record`` are strictly ascending; any other order (a
    hand-made record) reads as a mapping would: sorted, the last of equal starts wins."""
    if all(cells[i][0] < cells[i + 1][0] for i in range(len(cells) - 1)):
        return cells
    return sorted(dict(cells).items())


def _int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise FeatureRecordError(f"counters record: expected an integer, got {x!r}")
    return x


def _strs(values: Any) -> set[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise FeatureRecordError(f"counters record: expected a list of strings, got {values!r:.80}")
    return set(values)


def _sum(s: float) -> float | int:
    return int(s) if s.is_integer() and abs(s) < 2**53 else s  # an integral sum is stored as an int (shorter)


def _pack(starts: list[int], res: int, cells: list[tuple]) -> list:
    flat: list = []
    prev = 0
    for b, cell in zip(starts, cells):
        flat.append(b // res - prev)
        flat.extend(cell)
        prev = b // res
    return flat


def exact_bytes(raw: bytes) -> bytes:
    """A copy of ``raw`` in an allocation of its own size: what ``orjson.dumps`` returns
    sits in a buffer of at least 4 KB, too much to keep for a short value."""
    return memoryview(raw).tobytes()


_INT = frozenset((int,))
_NUMBER = frozenset((int, float))


def _series(flat: list, res: int) -> _Series:
    """A series from its stored flat list ``[di, count, sum, ...]``. Columns of plain
    integers with ascending starts (what ``to_record`` writes) are read column-wise;
    anything else goes through the checked, cell-by-cell reading."""
    if type(flat) is list and len(flat) % 3 == 0:
        steps, cnt, sums = flat[0::3], flat[1::3], flat[2::3]
        if (set(map(type, steps)) | set(map(type, cnt)) <= _INT and set(map(type, sums)) <= _NUMBER
                and min(steps[1:], default=1) > 0):
            series = _Series(res, list(map(res.__mul__, accumulate(steps))), cnt,
                             list(map(round, map(mul, sums, repeat(MICRO)))))
            if len(cnt) >= KEEP_PACKED:
                series.packed = flat.copy()  # already the stored form
            return series
    cells = _ascending([(b, (_int(flat[i + 1]), micros(float(flat[i + 2])))) for i, b in _unpack(flat, res, 3)])
    return _Series(res, [b for b, _ in cells], [c for _, (c, _) in cells], [s for _, (_, s) in cells])


def _unpack(flat: list, res: int, stride: int) -> Iterable[tuple[int, int]]:
    if not isinstance(flat, list) or len(flat) % stride:
        raise FeatureRecordError(f"counters record: bucket list of length {len(flat)} is not in groups of {stride}")
    idx = 0
    for i in range(0, len(flat), stride):
        idx += _int(flat[i])
        yield i, idx * res
