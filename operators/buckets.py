"""One series' time buckets, kept by ``operators.features.WindowedCounters``, and their stored form.

A :class:`Series` holds one series' buckets at one resolution (starts, counts, sums in
integer millionths, with running totals for reads); :class:`DistinctSets` holds one
attribute's distinct values per bucket, at most ``MAX_DISTINCT_PER_BUCKET`` each. Both
are written to a profile's record as flat lists ``[di, cell..., di, cell..., ...]``
where ``di`` is the bucket index ``b // res`` minus the previous one (the first is
absolute), or, a short series, as its columns (``WindowedCounters.to_record``); reading
a record checks its shape and raises :class:`FeatureRecordError`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate, repeat
from operator import mul
from typing import Any, Iterable

import orjson

MAX_DISTINCT_PER_BUCKET = 32


class FeatureRecordError(ValueError):
    """A stored counters record does not have the expected shape."""


def add_capped(values: set[str], v: str) -> None:
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
CUM_PATCH = 64  # a middle insert patches at most this many prefix sums, else they are rebuilt on read
# Sums are kept in integer millionths: exact, so they do not depend on the order values were
# added in (a person's events read from two partitions interleave differently per run, and
# a float sum then differed in its last bit). Values are rounded to a millionth.
MICRO = 1_000_000
KEEP_PACKED = 64  # buckets from which a series keeps its stored form (``Series``)


def micros(value: float) -> int:
    """``value`` in integer millionths (what a windowed sum adds)."""
    return round(value * MICRO)


def stored_sum(s: int) -> float | int:
    """A bucket's sum (millionths) as the stored form writes it."""
    return stored_number(s / MICRO)


class Series:
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
                packed += (b // res - (bs[-1] // res if bs else 0), c, stored_sum(s))
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
                packed[-2:] = self.cnt[-1], stored_sum(self.sm[-1])
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
            if len(cum) - j > CUM_PATCH:
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
        packed = pack_cells(self.bs, self.res, [(c, stored_sum(s)) for c, s in zip(self.cnt, self.sm)])
        if len(self.bs) >= KEEP_PACKED:
            self.packed = packed
        return packed

    def stored(self, encoded: bool) -> list:
        """What follows the key and resolution in the record (``WindowedCounters.to_record``):
        the flat list from ``KEEP_PACKED`` buckets on, else the columns."""
        if len(self.bs) >= KEEP_PACKED:
            return [self.pack_json() if encoded else self.pack()]
        if encoded:
            return [self.bs, self.cnt, self.sm]
        return [self.bs.copy(), self.cnt.copy(), self.sm.copy()]

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
        if not isinstance(other, Series):
            return NotImplemented
        return self.bs == other.bs and self.cnt == other.cnt and self.sm == other.sm

    __hash__ = None  # type: ignore[assignment]


class DistinctSets:
    """One series' distinct values of one attribute at one resolution, ascending by start:
    ``bs`` and the parallel list ``vals`` of capped sets; ``packed_json`` the stored form
    encoded, until the next change (a profile's record is written on each of its events,
    and only the sets that event added to changed)."""

    __slots__ = ("bs", "vals", "packed_json")

    def __init__(self, bs: list[int] | None = None, vals: list[set[str]] | None = None) -> None:
        self.bs: list[int] = bs if bs is not None else []
        self.vals: list[set[str]] = vals if vals is not None else []
        self.packed_json: bytes | None = None

    def add(self, b: int, v: str) -> None:
        self.packed_json = None
        bs = self.bs
        if bs and b == bs[-1]:
            add_capped(self.vals[-1], v)
        elif not bs or b > bs[-1]:
            bs.append(b)
            self.vals.append({v})
        else:
            j = bisect_left(bs, b)
            if bs[j] == b:
                add_capped(self.vals[j], v)
            else:
                bs.insert(j, b)
                self.vals.insert(j, {v})

    def drop_upto(self, cutoff: int) -> bool:
        i = bisect_right(self.bs, cutoff)
        if i:
            del self.bs[:i], self.vals[:i]
            self.packed_json = None
        return bool(self.bs)

    def pack(self, res: int) -> list:
        """The stored form at resolution ``res``: ``[di, [values, sorted], ...]``."""
        return pack_cells(self.bs, res, [(sorted(vs),) for vs in self.vals])

    def pack_json(self, res: int) -> orjson.Fragment:
        """``pack(res)`` encoded (``res`` is the one of the series' key: always the same)."""
        if self.packed_json is None:
            self.packed_json = exact_bytes(orjson.dumps(self.pack(res)))
        return orjson.Fragment(self.packed_json)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DistinctSets):
            return NotImplemented
        return self.bs == other.bs and self.vals == other.vals

    __hash__ = None  # type: ignore[assignment]


def ascending(cells: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Cells as written by ``to_record`` are strictly ascending; any other order (a
    hand-made record) reads as a mapping would: sorted, the last of equal starts wins."""
    if all(cells[i][0] < cells[i + 1][0] for i in range(len(cells) - 1)):
        return cells
    return sorted(dict(cells).items())


def as_int(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise FeatureRecordError(f"counters record: expected an integer, got {x!r}")
    return x


def as_strs(values: Any) -> set[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise FeatureRecordError(f"counters record: expected a list of strings, got {values!r:.80}")
    return set(values)


def stored_number(s: float) -> float | int:
    return int(s) if s.is_integer() and abs(s) < 2**53 else s  # an integral sum is stored as an int (shorter)


def pack_cells(starts: list[int], res: int, cells: list[tuple]) -> list:
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


def series_from_flat(flat: list, res: int) -> Series:
    """A series from its stored flat list ``[di, count, sum, ...]``. Columns of plain
    integers with ascending starts (what ``to_record`` writes) are read column-wise;
    anything else goes through the checked, cell-by-cell reading."""
    if type(flat) is list and len(flat) % 3 == 0:
        steps, cnt, sums = flat[0::3], flat[1::3], flat[2::3]
        if (set(map(type, steps)) | set(map(type, cnt)) <= _INT and set(map(type, sums)) <= _NUMBER
                and min(steps[1:], default=1) > 0):
            series = Series(res, list(map(res.__mul__, accumulate(steps))), cnt,
                            list(map(round, map(mul, sums, repeat(MICRO)))))
            if len(cnt) >= KEEP_PACKED:
                series.packed = flat.copy()  # already the stored form
            return series
    cells = ascending([(b, (as_int(flat[i + 1]), micros(float(flat[i + 2])))) for i, b in unpack(flat, res, 3)])
    return Series(res, [b for b, _ in cells], [c for _, (c, _) in cells], [s for _, (_, s) in cells])


def series_from_columns(bs: list, cnt: list, sm: list, res: int) -> Series:
    """A series from its stored columns: starts (ascending multiples of ``res``), counts
    and sums in millionths, all integers."""
    if not (type(bs) is list and type(cnt) is list and type(sm) is list and len(bs) == len(cnt) == len(sm)):
        raise FeatureRecordError("counters record: a series' columns must be three lists of one length")
    if not set(map(type, bs)) | set(map(type, cnt)) | set(map(type, sm)) <= _INT:
        raise FeatureRecordError("counters record: a series' columns must hold integers")
    if res <= 0 or any(b % res for b in bs) or any(a >= b for a, b in zip(bs, bs[1:])):
        raise FeatureRecordError(f"counters record: bucket starts {bs!r:.80} are not ascending multiples of {res}")
    return Series(res, bs, cnt, sm)


def unpack(flat: list, res: int, stride: int) -> Iterable[tuple[int, int]]:
    if not isinstance(flat, list) or len(flat) % stride:
        raise FeatureRecordError(f"counters record: bucket list of length {len(flat)} is not in groups of {stride}")
    idx = 0
    for i in range(0, len(flat), stride):
        idx += as_int(flat[i])
        yield i, idx * res


def sets_from_flat(flat: list, res: int) -> DistinctSets:
    """Distinct sets from their stored flat list ``[di, [values], ...]``."""
    cells = ascending([(b, as_strs(flat[i + 1])) for i, b in unpack(flat, res, 2)])
    return DistinctSets([b for b, _ in cells], [v for _, v in cells])
