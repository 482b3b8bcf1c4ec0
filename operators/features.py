"""Per-profile windowed behavioural counters: counts, value totals, distinct values, recency.

A :class:`SeriesSpec` selects events; a :class:`FeaturePlan` lists the series and windows
segment definitions need (both in ``operators.feature_plan``, re-exported here); a
:class:`WindowedCounters` (one per profile) keeps their buckets.

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
resolution, at most ``buckets.MAX_DISTINCT_PER_BUCKET`` values. The cap keeps the smallest values
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

from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Any, Iterable

from operators.buckets import (MICRO, DistinctSets, FeatureRecordError, Series, as_int,
                               micros, series_from_columns, series_from_flat, sets_from_flat)
from operators.events import Event
# Re-exported: the plan side lives in operators.feature_plan.
from operators.feature_plan import (DAY_MS, DISTINCT_ATTRS, HOUR_MS, MAX_WINDOW_MS, MINUTE_MS, SECOND_MS,
                                    FeaturePlan, Requirement, SeriesSpec, _res, _value, read_key,
                                    resolution_ms)

__all__ = ["DAY_MS", "DISTINCT_ATTRS", "HOUR_MS", "MAX_WINDOW_MS", "MINUTE_MS", "RECORD_VERSION", "SECOND_MS",
           "FeaturePlan", "Requirement", "SeriesSpec", "WindowedCounters", "read_key", "resolution_ms"]

RECORD_VERSION = 2
READABLE_VERSIONS = (1, 2)
_EMPTY: dict = {}  # shared default for reads; never written


class WindowedCounters:
    """One profile's buckets per ``(key, res)`` (starts, counts, sums in ascending order),
    distinct sets per ``(key, res, attr)`` and ``{key: last ts}``. Reads never change what
    is counted (they may fill the caches of a series)."""

    __slots__ = ("_b", "_d", "_last", "touched", "touched_last", "pending", "window_memo", "_prune_at", "_b_order")

    def __init__(self) -> None:
        self._b: dict[tuple[str, int], Series] = {}
        self._d: dict[tuple[str, int, str], DistinctSets] = {}
        self._last: dict[str, int] = {}
        self.touched: list[str] = []  # the series keys the last observe() matched (not stored)
        self.touched_last: list[int | None] = []  # their last times before it (None: never)
        # For ``SegmentSet.next_change`` (not stored): what it computed last, ``(its set's
        # token, now, windows' instant, thresholds' instants)``, and the series keys
        # observed since (None: recompute).
        self.pending: set[str] = set()
        self.window_memo: tuple | None = None
        # (plan, instant): before the instant nothing can be pruned under that plan (None:
        # nothing ever, no bucket); brought earlier by a new series or a bucket before the
        # first (``_keep_until``); None: not known (prune walks every series).
        self._prune_at: tuple[FeaturePlan, int | None] | None = None
        self._b_order: list[tuple[str, int]] | None = None  # sorted keys of ``_b`` (None: sort again)

    # -- updates ----------------------------------------------------------------------
    def observe(self, event: Event, plan: FeaturePlan) -> bool:
        """Count one event in every series of ``plan`` it matches; True if anything changed."""
        ts = event.ts_ms
        changed = False
        last = self._last
        if self._prune_at is None and not last and not self._b and not self._d:
            self._prune_at = (plan, None)  # nothing stored: nothing to prune until a bucket comes
        touched = self.touched = []
        before = self.touched_last = []
        for key, matcher, layout in plan._compiled.get(event.type, ()):
            if matcher is None:
                lines = event.items
            else:
                lines = matcher(event)
                if lines is None:
                    continue
            touched.append(key)
            self.pending.add(key)
            old = last.get(key)
            before.append(old)
            if old is None or ts > old:
                last[key] = ts
                changed = True
            if not layout:
                continue
            changed = True
            amount = micros(_value(lines))
            for res, bkey, dkeys, kept in layout:
                b = ts - ts % res
                series = self._b.get(bkey)
                if series is None:
                    series = self._b[bkey] = Series(res)
                    self._b_order = None
                    self._keep_until(plan, b + kept)
                elif not series.bs or b < series.bs[0]:
                    self._keep_until(plan, b + kept)
                series.add(b, 1, amount)
                for dkey, attr, dkept in dkeys:
                    for line in lines:
                        v = getattr(line, attr)
                        if v is not None:
                            self._distinct_add(dkey, b, v, plan, dkept)
        return changed

    def _keep_until(self, plan: FeaturePlan | None, t: int) -> None:
        """A first bucket that ``prune`` drops at ``t`` under ``plan``."""
        at = self._prune_at
        if at is not None and at[0] is plan and (at[1] is None or t < at[1]):
            self._prune_at = (plan, t)

    def _distinct_add(self, dkey: tuple[str, int, str], b: int, v: str, plan: FeaturePlan | None,
                      kept: int) -> None:
        sets = self._d.get(dkey)
        if sets is None:
            sets = self._d[dkey] = DistinctSets()
            self._keep_until(plan, b + kept)
        elif not sets.bs or b < sets.bs[0]:
            self._keep_until(plan, b + kept)
        sets.add(b, v)

    def prune(self, plan: FeaturePlan, now: int) -> None:
        """Drop what no registered window can read again at any instant >= ``now``.

        A bucket ``b`` goes at ``b + w`` (``w``: the longest window reading its series), so
        nothing goes before the earliest such instant of the first buckets: remembered for
        ``plan``, a call before it returns at once."""
        at = self._prune_at
        if at is not None and at[0] is plan and (at[1] is None or now < at[1]):
            return
        for key in [k for k in self._last if k not in plan.specs]:
            del self._last[key]
        first = None
        for (key, res), series in list(self._b.items()):
            w = plan.longest.get(key, _EMPTY).get(res)
            if w is None or not series.drop_upto(now - w):
                del self._b[(key, res)]
                self._b_order = None
            elif first is None or series.bs[0] + w < first:
                first = series.bs[0] + w
        for dkey, sets in list(self._d.items()):
            w = plan._keep_d.get(dkey)
            if w is None or not sets.drop_upto(now - w):
                del self._d[dkey]
            elif first is None or sets.bs[0] + w < first:
                first = sets.bs[0] + w
        self._prune_at = (plan, first)

    def absorb(self, other: WindowedCounters) -> None:
        """Merge another profile's counters into this one (identity stitching)."""
        self.window_memo = self._prune_at = None
        for key, ts in other._last.items():
            if ts > self._last.get(key, ts - 1):
                self._last[key] = ts
        for bkey, theirs in other._b.items():
            into = self._b.get(bkey)
            if into is None:
                into = self._b[bkey] = Series(bkey[1])
                self._b_order = None
            for b, c, s in zip(theirs.bs, theirs.cnt, theirs.sm):
                into.add(b, c, s)
        for dkey, theirs in other._d.items():
            for b, values in zip(theirs.bs, theirs.vals):
                for v in values:
                    self._distinct_add(dkey, b, v, None, 0)  # no plan: ``_prune_at`` is None

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

    def lasts(self) -> dict[str, int]:
        """Every series' last event time, by key (read-only)."""
        return self._last

    def series_keys(self):
        """The keys of the series with an event (a view: the others have no buckets)."""
        return self._last.keys()

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
        if not total:
            # A count: value(j) = last - cum[j] falls with j, so the crossing is a bisect of
            # the prefix sums (j in (i, n]; value(n) is 0).
            cum = series.prefix()
            last = cum[-1]
            cur = last - cum[i]
            if op in (">=", "<") or (cur == number and op in ("==", "!=")):
                if cur < number:
                    return None  # already below: it stays so
                j = bisect_right(cum, last - number, i + 1, n + 1)  # first value(j) < number
            elif op in (">", "<=") or cur > number:
                if cur <= number:
                    return None
                j = bisect_left(cum, last - number, i + 1, n + 1)  # first value(j) <= number
                if j <= n and op in ("==", "!=") and last - cum[j] != number:
                    return None  # it jumps over the number: == stays false, != true
            else:
                return None  # == or != below the number: it can only fall further
            return bs[j - 1] + window_ms if j <= n else None
        sm = series.sm[i:]
        if min(sm) < 0:
            return bs[i] + window_ms
        # after the buckets before j left (j = i..n): the sum of the rest, exactly as
        # ``total_from`` computes it (integer millionths, then one division).
        rest = list(accumulate(reversed(sm), initial=0))
        rest.reverse()  # rest[j - i] = sum(sm[j:]) in millionths

        def value(j: int) -> float:
            return rest[j - i] / MICRO
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

    def leaving(self, reads: Iterable[tuple[tuple[str, int], tuple[int, ...]]], at: int) -> list[str]:
        """The keys of the series of ``reads`` (``(bucket key, windows)``, as for
        ``next_change_min``) a bucket of which leaves one of its windows at instant ``at``
        (bucket ``b`` leaves window ``w`` at ``b + w``)."""
        out = []
        for bkey, bs, windows in self._series_read(reads):
            n = len(bs)
            for w in windows:
                i = bisect_left(bs, at - w)
                if i < n and bs[i] == at - w:
                    out.append(bkey[0])
                    break
        return out

    def _series_read(self, reads: Iterable[tuple[tuple[str, int], tuple[int, ...]]]):
        """``(bucket key, bucket starts, windows)`` of the series of ``reads`` that exist."""
        b = self._b
        for bkey, windows in reads:
            series = b.get(bkey)
            if series is not None:
                yield bkey, series.bs, windows

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
        for _bkey, bs, windows in self._series_read(reads):
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
        """``{"v": 2, "last": {key: ts}, "b": [series, ...], "d": [[key, res, attr, [di,
        [values], ...]], ...]}``, everything sorted. A series of ``KEEP_PACKED`` buckets or
        more is ``[key, res, [di, count, sum, ...]]``: ``di`` is the bucket index ``b //
        res`` minus the previous one (the first is absolute), ``sum`` a number; a shorter
        one is its columns ``[key, res, [start, ...], [count, ...], [sum in millionths,
        ...]]``, written by orjson as they are (packing them cost ~2 µs a series, and an
        event changes several). Version 1 records (every series packed) are read too.
        ``encoded``: for an immediate ``orjson.dumps``: the long series' lists and the
        distinct sets as ``orjson.Fragment`` (kept encoded until they change), the short
        series' columns not copied."""
        rec: dict[str, Any] = {"v": RECORD_VERSION, "last": dict(sorted(self._last.items()))}
        if self._b:
            order = self._b_order
            if order is None:
                order = self._b_order = sorted(self._b)
            b = self._b
            rec["b"] = [[k, r, *b[(k, r)].stored(encoded)] for k, r in order]
        if self._d:
            rec["d"] = [[k, r, a, sets.pack_json(r) if encoded else sets.pack(r)]
                        for (k, r, a), sets in sorted(self._d.items(), key=_first)]
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> WindowedCounters:
        version = rec.get("v") if isinstance(rec, dict) else None
        if version not in READABLE_VERSIONS:
            raise FeatureRecordError(f"counters record: expected a dict with v in {READABLE_VERSIONS}")
        out = cls()
        try:
            out._last = {str(k): as_int(ts) for k, ts in rec["last"].items()}
            for entry in rec.get("b", ()):
                key, res, *columns = entry
                res = as_int(res)
                if len(columns) == 3 and version >= 2:
                    out._b[(str(key), res)] = series_from_columns(*columns, res)
                else:
                    (flat,) = columns
                    out._b[(str(key), res)] = series_from_flat(flat, res)
            for key, res, attr, flat in rec.get("d", ()):
                res = as_int(res)
                out._d[(str(key), res, str(attr))] = sets_from_flat(flat, res)
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

