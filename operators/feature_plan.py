"""Which events and windows the per-profile counters keep: :class:`SeriesSpec` (a series:
an event type and filters), :class:`FeaturePlan` (the series, windows and distinct
attributes that segment definitions need) and the window resolutions.

``operators.features`` keeps the counters themselves (``WindowedCounters``) and describes
the window semantics; it re-exports these names.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import orjson

from operators.events import EVENT_TYPES, Event, LineItem

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
MAX_WINDOW_MS = 90 * DAY_MS
DISTINCT_ATTRS = ("item_id", "category", "brand")
_SPEC_TYPES = frozenset(EVENT_TYPES) | {"any"}
_FILTERS = ("category", "brand", "item_id", "channel", "device", "min_price", "max_price")  # key order
_NO_MATCH: tuple[bool, float, tuple[LineItem, ...]] = (False, 0.0, ())


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

    def _line_predicate(self) -> Callable[[LineItem], bool] | None:
        """Only the filters set, each a closure (a line is checked per series it may count in)."""
        checks: list[Callable[[LineItem], bool]] = []
        cat, brand, item, lo, hi = self.category, self.brand, self.item_id, self.min_price, self.max_price
        if cat is not None:  # that category or a sub-category of it
            n = len(cat)
            checks.append(lambda line: (lc := line.category) is not None and lc.startswith(cat)
                          and (len(lc) == n or lc[n] == "/"))
        if brand is not None:
            checks.append(lambda line: line.brand == brand)
        if item is not None:
            checks.append(lambda line: line.item_id == item)
        if lo is not None:
            checks.append(lambda line: line.price >= lo)
        if hi is not None:
            checks.append(lambda line: line.price <= hi)
        if len(checks) <= 1:
            return checks[0] if checks else None
        every = tuple(checks)
        return lambda line: all(check(line) for check in every)

    def lines_matcher(self) -> Callable[[Event], tuple[LineItem, ...] | None] | None:
        """For events of a type this series counts: ``fn(event)``, the lines it counts
        (all lines without item filters) or None if the event does not match; None when
        the type is the only filter."""
        channel, device, ok = self.channel, self.device, self._line_predicate()
        if channel is None and device is None and ok is None:
            return None

        def matcher(event: Event) -> tuple[LineItem, ...] | None:
            if channel is not None or device is not None:
                ctx = event.context
                if (channel is not None and ctx.channel != channel) or (device is not None and ctx.device != device):
                    return None
            lines = event.items
            if ok is None:
                return lines
            if len(lines) == 1:
                return lines if ok(lines[0]) else None
            return tuple(line for line in lines if ok(line)) or None
        return matcher

    def match(self, event: Event) -> tuple[bool, float, tuple[LineItem, ...]]:
        """``(matched, value, matching lines)``; the lines are all lines without item filters."""
        if self.event_type != "any" and event.type != self.event_type:
            return _NO_MATCH
        matcher = self.lines_matcher()
        lines = event.items if matcher is None else matcher(event)
        if lines is None:
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
        self.by_type = {t: sorted(k for k, s in self.specs.items() if s.event_type in (t, "any")) for t in EVENT_TYPES}
        self._compiled = self._compile()
        canon = [[k, sorted(need[k])] for k in sorted(need)]
        self.fingerprint = hashlib.sha256(orjson.dumps(canon)).hexdigest()[:16]

    def _compile(self) -> dict[str, tuple]:
        """What observe() walks per event type: (key, ``SeriesSpec.lines_matcher`` (None when
        the type is the only filter), ((res, (key, res), (((key, res, attr), attr, kept),
        ...), kept), ...)): keys made once; ``kept``: how long a bucket is kept (the
        longest window reading it)."""
        compiled = {k: (k, s.lines_matcher(),
                        tuple((r, (k, r), tuple((d, d[2], self._keep_d[d]) for d in sorted(self._keep_d)
                                                if d[:2] == (k, r)), self.longest[k][r])
                              for r in self.resolutions[k]))
                    for k, s in self.specs.items()}
        return {t: tuple(compiled[k] for k in keys) for t, keys in self.by_type.items()}

    def __getstate__(self) -> dict:  # the matchers are closures: made again when unpickled
        return {k: v for k, v in self.__dict__.items() if k != "_compiled"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._compiled = self._compile()

    def __repr__(self) -> str:
        return f"FeaturePlan({len(self.specs)} series, fingerprint={self.fingerprint})"


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
