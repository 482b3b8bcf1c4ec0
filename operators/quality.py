"""Data quality, as plain numbers: per-field issues and input volume against its recent level.

Pure logic (no metrics library): ``flows.quality_metrics`` turns the results into
Prometheus series.

**Field issues.** ``count_field_issues(results)`` counts, for a batch of validation
results, ``(field, issue)`` pairs:

- an invalid record contributes exactly one pair, for the first problem validation found
  (it stops there): ``("event_id", "missing")``, ``("timestamp", "invalid")``, ...;
  records that are not a JSON object at all (or too large, or not UTF-8) count as
  ``("record", "invalid")``;
- a valid event contributes one ``"missing"`` pair per optional field that personalization
  uses and the event lacks: ``context.device``, ``context.channel``, ``context.geo``, and
  ``category`` for each line item without one.

So "missing" on a required field means the record was dead-lettered; on an optional field
it means the event was applied without it. ``identity`` stands for "none of the identity
fields" (user id, anonymous id, device id, email). Field names are array-index free
(``items[3].price`` counts as ``items[].price``) and limited to ``KNOWN_FIELDS``; anything
else counts as ``other``, so the label set stays bounded.

>>> from operators.events import parse_event
>>> good = parse_event(b'{"event_id":"e1","type":"page_view","user_id":"u1","timestamp":1795773600000,'
...                    b'"context":{"device":"mobile"}}')
>>> bad = parse_event(b'{"type":"page_view","user_id":"u1","timestamp":1795773600000}')
>>> sorted(count_field_issues([good, bad]).items())
[(('context.channel', 'missing'), 1), (('context.geo', 'missing'), 1), (('event_id', 'missing'), 1)]

**Volume.** ``VolumeMonitor`` counts records per minute of their *ingestion* time (the
broker's append time), so a processor catching up on a backlog, or replaying after a
restart, does not look like a traffic spike. A minute is final once a record at least
``grace_minutes`` + 1 minutes newer has been seen; its count then updates an exponentially
weighted moving average (the recent level). ``ratio()`` is the last final minute divided by
the level before it: about 1 normally, near 0 when traffic collapses, large on a flood.
Records for a minute already final are counted in ``late`` and not in the volume.

>>> v = VolumeMonitor(half_life_minutes=10, warmup_minutes=3)
>>> for minute in range(12):
...     v.learn_many([minute * 60_000 + 1] * 100)
>>> v.level_per_minute(), v.ratio()
(100.0, 1.0)
>>> v.learn_many([12 * 60_000] * 10); v.learn_one(14 * 60_000)
>>> round(v.last_per_minute()), round(v.ratio(), 2)
(10, 0.1)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from operators.events import Context, Event, InvalidEvent

MISSING = "missing"
INVALID = "invalid"
ISSUES = (MISSING, INVALID)

KNOWN_FIELDS = frozenset((
    "record",
    "event_id",
    "type",
    "user_id",
    "anonymous_id",
    "device_id",
    "email",
    "phone",
    "identity",
    "timestamp",
    "item_id",
    "category",
    "price",
    "quantity",
    "items",
    "items[]",
    "items[].item_id",
    "items[].category",
    "items[].price",
    "items[].quantity",
    "query",
    "context",
    "context.device",
    "context.channel",
    "context.geo",
    "context.geo.country",
    "context.geo.city",
    "context.geo.lat",
    "context.geo.lon",
    "consent",
))
OTHER = "other"

# Validation messages name the field as `field 'x'` / `fields 'x' and 'y'` / `items[3] ...`.
_QUOTED_FIELD = re.compile(r"\bfields? '([^']{1,80})'")
_LEADING_ITEMS = re.compile(r"^items\[\d+\]")
_INDEX = re.compile(r"\[\d+\]")
# Reasons whose problem is the whole record, not one field.
_RECORD_REASONS = frozenset(("not_json", "not_object", "too_large", "bad_encoding"))


def field_issue(error: InvalidEvent) -> tuple[str, str]:
    """The ``(field, issue)`` an invalid record counts as.

    >>> field_issue(InvalidEvent("missing_field", "field 'items[0].price' is required"))
    ('items[].price', 'missing')
    >>> field_issue(InvalidEvent("bad_timestamp", "timestamp 'yesterday' is not ISO-8601"))
    ('timestamp', 'invalid')
    >>> field_issue(InvalidEvent("not_json", "invalid JSON: unexpected end of data"))
    ('record', 'invalid')
    """
    reason = error.reason
    issue = MISSING if reason == "missing_field" else INVALID
    if reason in _RECORD_REASONS:
        return "record", INVALID
    if reason == "unknown_type":
        return "type", INVALID
    if reason == "bad_timestamp":
        return "timestamp", INVALID
    detail = error.detail
    match = _QUOTED_FIELD.search(detail)
    if match is not None:
        name = _INDEX.sub("[]", match.group(1))
    elif detail.startswith("one of "):  # none of the identity fields (user_id, anonymous_id, ...)
        name = "identity"
    elif detail.startswith("purchase needs 'items'"):
        name = "items"
    elif _LEADING_ITEMS.match(detail):
        name = "items[]"
    elif detail.startswith("consent"):
        name = "consent"
    else:
        name = OTHER
    return (name if name in KNOWN_FIELDS else OTHER), issue


def count_field_issues(results: Iterable[Event | InvalidEvent]) -> dict[tuple[str, str], int]:
    """``{(field, issue): count}`` over a batch of validation results (see the module doc)."""
    counts: dict[tuple[str, str], int] = {}
    no_device = no_channel = no_geo = no_category = 0
    for result in results:
        if type(result) is InvalidEvent:
            key = field_issue(result)
            counts[key] = counts.get(key, 0) + 1
            continue
        ctx: Context = result.context
        if ctx.device is None:
            no_device += 1
        if ctx.channel is None:
            no_channel += 1
        if ctx.geo is None:
            no_geo += 1
        for line in result.items:
            if line.category is None:
                no_category += 1
    for name, n in (("context.device", no_device), ("context.channel", no_channel),
                    ("context.geo", no_geo), ("category", no_category)):
        if n:
            counts[(name, MISSING)] = counts.get((name, MISSING), 0) + n
    return counts


class VolumeMonitor:
    """Records per minute of ingestion time against an EWMA of the previous minutes.

    ``half_life_minutes``: how fast the recent level forgets (a minute this long ago weighs
    half as much as the last one). ``warmup_minutes``: final minutes needed before
    ``ratio()`` is a number (NaN before). ``min_level``: below this level (records per
    minute) the ratio is NaN too - a near-silent input has no meaningful "normal".
    The first minute seen is assumed partial (the process started during it) and is not
    counted.
    """

    def __init__(self, *, half_life_minutes: float = 15.0, warmup_minutes: int = 5, grace_minutes: int = 1,
                 min_level: float = 1.0, bucket_ms: int = 60_000) -> None:
        if half_life_minutes <= 0:
            raise ValueError(f"half_life_minutes must be positive, got {half_life_minutes}")
        if warmup_minutes < 1 or grace_minutes < 0 or bucket_ms < 1:
            raise ValueError("warmup_minutes must be >= 1, grace_minutes >= 0 and bucket_ms >= 1")
        self._alpha = 1.0 - 2.0 ** (-1.0 / half_life_minutes)
        self._warmup = warmup_minutes
        self._grace = grace_minutes
        self._min_level = min_level
        self._bucket_ms = bucket_ms
        self._open: dict[int, int] = {}
        self._first: int | None = None  # the first (partial) minute
        self._next_close: int | None = None  # minutes below this are final
        self._watermark: int | None = None  # the newest minute seen
        self._level: float | None = None  # EWMA over final minutes
        self._level_before_last: float | None = None
        self._last = 0  # count of the last final minute
        self._final = 0  # final minutes fed into the level
        self.late = 0  # records for minutes already final (not counted)

    # learning ---------------------------------------------------------------

    def learn_one(self, ingest_ms: int, n: int = 1) -> None:
        """Count ``n`` records ingested at ``ingest_ms`` (epoch milliseconds)."""
        self._add(ingest_ms // self._bucket_ms, n)

    def learn_many(self, ingest_ms: Iterable[int]) -> None:
        """Count one record per timestamp; a batch within one minute costs one dict update."""
        values = ingest_ms if isinstance(ingest_ms, (list, tuple)) else list(ingest_ms)
        if not values:
            return
        bucket = self._bucket_ms
        lo, hi = min(values) // bucket, max(values) // bucket
        if lo == hi:
            self._add(lo, len(values))
            return
        per_minute: dict[int, int] = {}
        for ts in values:
            m = ts // bucket
            per_minute[m] = per_minute.get(m, 0) + 1
        for m in sorted(per_minute):
            self._add(m, per_minute[m])

    def _add(self, minute: int, n: int) -> None:
        if self._first is None:
            self._first = self._next_close = minute
        if minute < self._next_close:
            self.late += n
            return
        self._open[minute] = self._open.get(minute, 0) + n
        if self._watermark is None or minute > self._watermark:
            self._watermark = minute
            self._close_through(minute - self._grace - 1)

    def _close_through(self, last: int) -> None:
        if last < self._next_close:
            return
        for minute in sorted(m for m in self._open if m <= last):
            self._skip_empty(minute - self._next_close)
            self._feed(minute, self._open.pop(minute))
            self._next_close = minute + 1
        self._skip_empty(last + 1 - self._next_close)
        self._next_close = last + 1

    def _skip_empty(self, minutes: int) -> None:
        """Feed ``minutes`` empty minutes in one step (a pause of days costs no loop)."""
        if minutes <= 0:
            return
        if self._level is None:  # nothing before: the level starts at zero
            self._level_before_last, self._level = None, 0.0
            self._final += minutes
            self._last = 0
            return
        decay = (1.0 - self._alpha) ** (minutes - 1)
        self._level_before_last = self._level * decay
        self._level = self._level_before_last * (1.0 - self._alpha)
        self._final += minutes
        self._last = 0

    def _feed(self, minute: int, count: int) -> None:
        if minute == self._first:
            return  # partial first minute: neither level nor last
        self._level_before_last = self._level
        self._level = float(count) if self._level is None else self._level + self._alpha * (count - self._level)
        self._last = count
        self._final += 1

    # reading (never mutates) -------------------------------------------------

    def last_per_minute(self) -> float:
        """Records in the last final minute (NaN before the first one)."""
        return float(self._last) if self._final else math.nan

    def level_per_minute(self) -> float:
        """The recent level: EWMA of final minutes' counts (NaN before the first one)."""
        return self._level if self._level is not None else math.nan

    def ratio(self) -> float:
        """Last final minute / the level before it; NaN while warming up or near-silent."""
        base = self._level_before_last
        if self._final < self._warmup or base is None or base < self._min_level:
            return math.nan
        return self._last / base
