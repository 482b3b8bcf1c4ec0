"""Windowed counters: window edges per resolution, filters, distinct cap, pruning, merge, storage."""

from __future__ import annotations

import operator
import random
from bisect import bisect_right
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import buckets
from operators.events import parse_event
from operators.buckets import MAX_DISTINCT_PER_BUCKET, MICRO, FeatureRecordError, Series, pack_cells, stored_number
from operators.features import (DAY_MS, HOUR_MS, MAX_WINDOW_MS, MINUTE_MS, FeaturePlan, SeriesSpec, WindowedCounters,
                                resolution_ms)

T0 = 1_795_798_800_000  # a whole hour (so a whole minute and second too)

_n = iter(range(10**9))


def ev(type_, ts, items=None, channel=None, device=None, **line):
    doc = {"event_id": f"e{next(_n)}", "type": type_, "user_id": "u1", "timestamp": ts}
    if items is not None:
        doc["items"] = items
    doc.update(line)
    ctx = {k: v for k, v in (("channel", channel), ("device", device)) if v is not None}
    if ctx:
        doc["context"] = ctx
    e = parse_event(orjson.dumps(doc))
    assert not hasattr(e, "reason"), e
    return e


def stored(c):
    """The buckets of the stored form: {(key, res): [b, ...]} and {(key, res, attr): {b: values}}."""
    def starts(res, flat, stride):
        idx = [sum(flat[0:i + 1:stride]) for i in range(0, len(flat), stride)]
        return [(i * res, flat[j * stride + 1]) for j, i in enumerate(idx)]
    rec = c.to_record()
    return ({(k, r): [b for b, _ in starts(r, flat[0], 3)] if len(flat) == 1 else flat[0]
             for k, r, *flat in rec.get("b", [])},
            {(k, r, a): dict(starts(r, flat, 2)) for k, r, a, flat in rec.get("d", [])})


def observed(plan, events):
    c = WindowedCounters()
    for e in events:
        c.observe(e, plan)
    return c


def test_resolution_by_window_and_errors():
    assert [resolution_ms(w) for w in (1000, HOUR_MS, HOUR_MS + 1, 60 * HOUR_MS, 60 * HOUR_MS + 1, MAX_WINDOW_MS)] \
        == [1000, 1000, 60_000, 60_000, 3_600_000, 3_600_000]
    with pytest.raises(ValueError, match="longer than the maximum 7776000000"):
        resolution_ms(MAX_WINDOW_MS + 1)
    with pytest.raises(ValueError, match="shorter than the minimum 1000"):
        resolution_ms(999)
    with pytest.raises(ValueError, match="integer"):
        resolution_ms(1000.0)
    with pytest.raises(ValueError, match="longer than the maximum"):
        FeaturePlan([(SeriesSpec("search"), 91 * DAY_MS, None)])


@pytest.mark.parametrize("window, res", [(10 * MINUTE_MS, 1000), (2 * DAY_MS, MINUTE_MS), (30 * DAY_MS, HOUR_MS)])
def test_window_edges_at_each_resolution(window, res):
    plan = FeaturePlan([(SeriesSpec("search"), window, None)])
    ts = T0 + res + res // 2 + 7  # inside the bucket b = T0 + res
    b = T0 + res
    c = observed(plan, [ev("search", ts, query="tent")])
    assert c.count("search", window, ts) == 1
    assert c.count("search", window, b + window - 1) == 1
    assert c.count("search", window, b + window) == 0
    assert c.next_change("search", window, ts) == b + window
    assert c.next_change("search", window, b + window - 1) == b + window
    assert c.next_change("search", window, b + window) is None
    assert stored(c) == ({("search", res): [b]}, {})  # only the resolution the window needs


def test_count_total_and_next_change_over_several_buckets():
    w = 10 * 1000
    plan = FeaturePlan([(SeriesSpec("purchase"), w, None)])
    c = observed(plan, [ev("purchase", T0 + 100, item_id="a", price=2.5, quantity=2),
                        ev("purchase", T0 + 900, item_id="b", price=1),
                        ev("purchase", T0 + 3_000, item_id="c", price=10)])
    assert (c.count("purchase", w, T0 + 3_000), c.total("purchase", w, T0 + 3_000)) == (3, 16.0)
    assert c.next_change("purchase", w, T0 + 3_000) == T0 + w
    assert (c.count("purchase", w, T0 + w), c.total("purchase", w, T0 + w)) == (1, 10.0)
    assert c.next_change("purchase", w, T0 + w) == T0 + 3_000 + w
    assert c.total("nothing", w, T0) == 0.0 and c.count("nothing", w, T0) == 0
    assert c.next_change("nothing", w, T0) is None


def test_late_event_lands_in_its_own_bucket():
    w = 5 * 1000
    plan = FeaturePlan([(SeriesSpec("search"), w, None)])
    c = observed(plan, [ev("search", T0 + 10_500), ev("search", T0 + 8_200)])
    assert stored(c)[0] == {("search", 1000): [T0 + 8_000, T0 + 10_000]}
    assert c.count("search", w, T0 + 10_500) == 2
    assert c.count("search", w, T0 + 12_999) == 2  # the late one, until 8000 + 5000
    assert c.count("search", w, T0 + 13_000) == 1
    assert c.next_change("search", w, T0 + 10_500) == T0 + 13_000
    assert c.last("search") == T0 + 10_500


def test_filters():
    w = HOUR_MS
    specs = [SeriesSpec("product_view", category="outdoor"), SeriesSpec("product_view", brand="acme"),
             SeriesSpec("product_view", min_price=10, max_price=20), SeriesSpec("any", channel="app"),
             SeriesSpec("purchase", category="outdoor/tents", device="mobile")]
    plan = FeaturePlan([(s, w, None) for s in specs])
    events = [ev("product_view", T0, item_id="a", category="outdoor", price=5),
              ev("product_view", T0, item_id="b", category="outdoor/tents", brand="acme", price=10),
              ev("product_view", T0, item_id="c", category="outdoorsy", price=20, channel="app"),
              ev("product_view", T0, item_id="d", category="books", brand="acme", price=20.5),
              ev("page_view", T0, channel="app"),
              ev("purchase", T0, items=[{"item_id": "e", "category": "outdoor/tents/2p", "price": 100, "quantity": 2},
                                        {"item_id": "f", "category": "outdoor", "price": 7}], device="mobile"),
              ev("purchase", T0, item_id="g", category="outdoor/tents", price=1, device="desktop")]
    c = observed(plan, events)
    got = {s.key: (c.count(s.key, w, T0), c.total(s.key, w, T0)) for s in specs}
    assert got == {"product_view|category=outdoor": (2, 15.0),          # not "outdoorsy"
                   "product_view|brand=acme": (2, 30.5),
                   "product_view|min_price=10|max_price=20": (2, 30.0),  # bounds inclusive
                   "any|channel=app": (2, 20.0),
                   "purchase|category=outdoor/tents|device=mobile": (1, 200.0)}  # matching lines only
    assert specs[2].key == "product_view|min_price=10|max_price=20"
    assert SeriesSpec("search", min_price=0.5).key == "search|min_price=0.5"
    assert c.last("product_view") == T0 and c.last("search") is None


def test_spec_validation_and_match():
    with pytest.raises(ValueError, match="event_type 'teleport'"):
        SeriesSpec("teleport")
    with pytest.raises(ValueError, match="category='a|b'"):
        SeriesSpec("search", category="a|b")
    with pytest.raises(ValueError, match="min_price is above max_price"):
        SeriesSpec("search", min_price=5, max_price=1)
    assert hash(SeriesSpec("search", brand="x")) == hash(SeriesSpec("search", brand="x"))
    ok, value, lines = SeriesSpec("page_view").match(ev("page_view", T0))
    assert (ok, value, lines) == (True, 0.0, ())
    assert SeriesSpec("purchase").match(ev("page_view", T0))[0] is False


def test_distinct_and_cap():
    w = HOUR_MS
    spec = SeriesSpec("product_view")
    plan = FeaturePlan([(spec, w, "item_id"), (spec, w, "brand")])
    items = [f"sku-{i:03d}" for i in range(MAX_DISTINCT_PER_BUCKET + 8)]
    c = observed(plan, [ev("product_view", T0 + 1_500, item_id="x", brand="b1"),
                        ev("product_view", T0 + 1_600, item_id="x"),
                        ev("product_view", T0 + 5_000, item_id="y", brand="b1")])
    assert c.distinct("product_view", "item_id", w, T0 + 5_000) == 2
    assert c.distinct("product_view", "brand", w, T0 + 5_000) == 1
    assert c.distinct("product_view", "category", w, T0 + 5_000) == 0
    assert c.distinct("product_view", "item_id", w, T0 + 1_000 + w) == 1
    # One bucket saturates at the cap, keeping the smallest values whatever the order.
    a = observed(plan, [ev("product_view", T0 + 10, item_id=i) for i in items])
    b = observed(plan, [ev("product_view", T0 + 10, item_id=i) for i in reversed(items)])
    assert a == b
    assert a.distinct("product_view", "item_id", w, T0) == MAX_DISTINCT_PER_BUCKET
    assert stored(a)[1][("product_view", 1000, "item_id")] == {T0: items[:MAX_DISTINCT_PER_BUCKET]}
    # Across buckets the union may exceed one bucket's cap.
    a.observe(ev("product_view", T0 + 2_000, item_id="zzz"), plan)
    assert a.distinct("product_view", "item_id", w, T0 + 2_000) == MAX_DISTINCT_PER_BUCKET + 1
    with pytest.raises(ValueError, match="distinct attribute .price."):
        a.distinct("product_view", "price", w, T0)
    with pytest.raises(ValueError, match="needs a window and one of"):
        FeaturePlan([(spec, None, "item_id")])


def test_plan_shape():
    s = SeriesSpec("purchase", category="outdoor")
    plan = FeaturePlan([(s, 10 * MINUTE_MS, None), (s, HOUR_MS, "item_id"), (s, 7 * DAY_MS, None),
                        (s, 3 * DAY_MS, None), (SeriesSpec("login"), None, None)])
    k = s.key
    assert plan.specs[k] == s
    assert plan.windows[k] == {10 * MINUTE_MS, HOUR_MS, 7 * DAY_MS, 3 * DAY_MS}
    assert plan.distinct_attrs[k] == {"item_id"}
    assert plan.resolutions[k] == (1000, HOUR_MS)
    assert plan.longest[k] == {1000: HOUR_MS, HOUR_MS: 7 * DAY_MS}
    assert plan.by_type["purchase"] == ["any", "purchase", k]
    assert plan.by_type["login"] == ["any", "login"]
    assert set(plan.specs) >= {"any", "page_view", "consent_update"}
    same = FeaturePlan([(SeriesSpec("login"), None, None), (s, 3 * DAY_MS, None), (s, 7 * DAY_MS, None),
                        (s, HOUR_MS, "item_id"), (s, 10 * MINUTE_MS, None)])
    assert plan.fingerprint == same.fingerprint
    assert plan.fingerprint != FeaturePlan([(s, HOUR_MS, None)]).fingerprint


def test_observe_reports_change():
    plan = FeaturePlan([(SeriesSpec("search"), HOUR_MS, None)])
    c = WindowedCounters()
    assert c.observe(ev("page_view", T0), plan) is True       # last of page_view and any
    assert c.observe(ev("page_view", T0 - 5), plan) is False  # older: no recency change, no windows
    assert c.observe(ev("search", T0 - 5), plan) is True      # windowed series: counted
    assert c.last("any") == T0


def test_prune_keeps_what_windows_need_and_nothing_more():
    s = SeriesSpec("product_view")
    plan = FeaturePlan([(s, 10 * 1000, "item_id"), (s, HOUR_MS, None), (s, 2 * DAY_MS, None)])
    old = FeaturePlan([(SeriesSpec("search", channel="app"), HOUR_MS, None), (SeriesSpec("search"), HOUR_MS, None),
                       (s, 90 * DAY_MS, "brand")])
    now = T0 + 4 * HOUR_MS
    c = WindowedCounters()
    for t in [*range(0, 4 * HOUR_MS, 10 * MINUTE_MS), 4 * HOUR_MS - 5_000]:
        c.observe(ev("product_view", T0 + t, item_id=f"i{t}", brand="b"), plan)
        c.observe(ev("product_view", T0 + t, item_id=f"i{t}", brand="b"), old)
        c.observe(ev("search", T0 + t, channel="app"), old)
    windows = (10 * 1000, HOUR_MS, 2 * DAY_MS)
    before = {w: c.count("product_view", w, now) for w in windows}, c.distinct("product_view", "item_id", 10_000, now)
    c.prune(plan, now)
    assert ({w: c.count("product_view", w, now) for w in windows},
            c.distinct("product_view", "item_id", 10_000, now)) == before
    assert c.last("search|channel=app") is None      # no longer in the plan
    assert c.last("search") == now - 5_000             # base series: recency only
    assert c.last("product_view") == now - 5_000 and c.last("any") == now - 5_000
    buckets, sets = stored(c)
    assert set(buckets) == {("product_view", 1000), ("product_view", MINUTE_MS)}  # hour ones were the old plan's
    assert buckets[("product_view", 1000)] == [T0 + t for t in range(3 * HOUR_MS + 10 * MINUTE_MS, 4 * HOUR_MS,
                                                                     10 * MINUTE_MS)] + [now - 5_000]
    assert len(buckets[("product_view", MINUTE_MS)]) == 25   # 2 days hold them all
    assert sets == {("product_view", 1000, "item_id"): {now - 5_000: [f"i{4 * HOUR_MS - 5_000}"]}}
    # At the instant the last second bucket leaves the 10 s window, the distinct sets go.
    c.prune(plan, now - 5_000 + 10_000)
    assert stored(c)[1] == {}
    c.prune(FeaturePlan([]), now)
    assert stored(c) == ({}, {}) and c.last("product_view") == now - 5_000


def test_prune_bound_per_resolution():
    s = SeriesSpec("search")
    plan = FeaturePlan([(s, HOUR_MS, None), (s, 60 * HOUR_MS, None), (s, MAX_WINDOW_MS, None)])
    c = WindowedCounters()
    for t in range(0, 100 * DAY_MS, 17 * MINUTE_MS):
        c.observe(ev("search", T0 + t), plan)
    for t in range(100 * DAY_MS - 2 * HOUR_MS, 100 * DAY_MS + 1, 1000):
        c.observe(ev("search", T0 + t), plan)
    c.prune(plan, T0 + 100 * DAY_MS)
    sizes = {r: len(b) for (_, r), b in stored(c)[0].items()}
    assert sizes[1000] == 3600 and sizes[MINUTE_MS] <= 3600 and sizes[HOUR_MS] == 2160


def test_record_round_trip_and_errors():
    s = SeriesSpec("purchase", brand="acme")
    plan = FeaturePlan([(s, HOUR_MS, "item_id"), (s, 30 * DAY_MS, None), (SeriesSpec("search"), 3 * DAY_MS, None)])
    c = observed(plan, [ev("purchase", T0 + 5, item_id="a", brand="acme", price=9.99, quantity=3),
                        ev("purchase", T0 + 8_000, item_id="b", brand="acme", price=4),
                        ev("search", T0 + HOUR_MS + 1), ev("page_view", T0 - 1)])
    rec = c.to_record()
    back = WindowedCounters.from_record(orjson.loads(orjson.dumps(rec)))
    assert back == c and back.to_record() == rec
    assert back.total(s.key, HOUR_MS, T0 + 8_000) == c.total(s.key, HOUR_MS, T0 + 8_000)
    assert rec["v"] == 2 and rec["last"] == {"any": T0 + HOUR_MS + 1, "page_view": T0 - 1, "purchase": T0 + 8_000,
                                             s.key: T0 + 8_000, "search": T0 + HOUR_MS + 1}
    # short series as columns: starts, counts, sums in millionths
    assert rec["b"][:2] == [[s.key, 1000, [T0, T0 + 8_000], [1, 1], [29_970_000, 4_000_000]],
                            [s.key, HOUR_MS, [T0], [2], [33_970_000]]]
    with mock.patch.object(buckets, "KEEP_PACKED", 1):  # long ones packed: delta-coded bucket indexes
        assert c.to_record()["b"][:2] == [[s.key, 1000, [T0 // 1000, 1, 29.97, 8, 1, 4]],
                                          [s.key, HOUR_MS, [T0 // HOUR_MS, 2, 33.97]]]
        assert WindowedCounters.from_record(c.to_record()) == c
    assert rec["d"] == [[s.key, 1000, "item_id", [T0 // 1000, ["a"], 8, ["b"]]]]
    assert WindowedCounters.from_record(WindowedCounters().to_record()) == WindowedCounters()
    for bad in ({}, {"v": 1}, {"v": 1, "last": {}, "b": [["k", 1000, [1, 2]]]},
                {"v": 1, "last": {"k": "x"}}, {"v": 1, "last": {}, "b": [["k", "1000", [1, 2, 3]]]},
                {"v": 1, "last": {}, "d": [["k", 1000, "brand", [1, "abc"]]]},
                {"v": 1, "last": {}, "b": [["k", 1000, [1, "2", 3]]]},
                {"v": 1, "last": {}, "b": [["k", 1000, [1.5, 2, 3]]]},
                {"v": 1, "last": {}, "b": [["k", 1000, [1, True, 3]]]},
                {"v": 3, "last": {}},
                {"v": 1, "last": {}, "b": [["k", 1000, [1000], [1], [1]]]},  # columns are version 2
                {"v": 2, "last": {}, "b": [["k", 1000, [1000], [1], [1.5]]]},
                {"v": 2, "last": {}, "b": [["k", 1000, [1000, 2000], [1], [1]]]},
                {"v": 2, "last": {}, "b": [["k", 1000, [2000, 1000], [1, 1], [1, 1]]]},
                {"v": 2, "last": {}, "b": [["k", 1000, [1500], [1], [1]]]},
                {"v": 2, "last": {}, "b": [["k", 0, [1000], [1], [1]]]},
                {"v": 2, "last": {}, "b": [["k", 1000, [1000], [True], [1]]]},
                {"v": 2, "last": {}, "b": [["k", 1000, [1000], [1]]]}):
        with pytest.raises(FeatureRecordError):
            WindowedCounters.from_record(bad)


# -- properties ------------------------------------------------------------------------
SPECS = [SeriesSpec("purchase"), SeriesSpec("any"), SeriesSpec("product_view", category="outdoor"),
         SeriesSpec("any", channel="app"), SeriesSpec("purchase", min_price=2, max_price=10)]
WINDOWS = [1000, 7 * 1000, HOUR_MS, HOUR_MS + 1, 5 * HOUR_MS, 60 * HOUR_MS, 61 * HOUR_MS, 20 * DAY_MS]
PLAN = FeaturePlan([(s, w, "category") for s in SPECS for w in WINDOWS])
SPAN = 25 * DAY_MS

event_st = st.builds(
    lambda t, ts, cat, price, qty, app: ev(
        t, T0 + ts, channel="app" if app else None,
        **({"item_id": f"i{price}", "category": cat, "price": price, "quantity": qty} if t != "page_view" else {})),
    st.sampled_from(["purchase", "product_view", "page_view"]),
    st.one_of(st.integers(0, 3 * HOUR_MS), st.integers(0, SPAN)),
    st.sampled_from(["outdoor", "outdoor/tents", "outdoorsy", "books"]),
    st.sampled_from([0, 0.5, 2, 9.25, 10, 12]),
    st.integers(1, 3), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(event_st, max_size=25), st.lists(st.booleans(), min_size=25, max_size=25))
def test_absorb_equals_observing_everything(events, side):
    a = observed(PLAN, [e for e, s in zip(events, side) if s])
    b = observed(PLAN, [e for e, s in zip(events, side) if not s])
    ab, ba = observed(PLAN, []), observed(PLAN, [])
    ab.absorb(a), ab.absorb(b)
    ba.absorb(b), ba.absorb(a)
    assert ab == ba == observed(PLAN, events)
    a.absorb(b)
    assert a == ab


@settings(max_examples=60, deadline=None)
@given(st.permutations([0.1, 0.2, 0.3, 19.99, 0.07, 1e-7, 1234.56, 3.3]))
def test_a_sum_does_not_depend_on_the_order_of_its_values(prices):
    # A person's events read from two partitions interleave differently per run: float
    # sums then differed in their last bit. Sums are exact (to a millionth) instead.
    plan = FeaturePlan([(SeriesSpec("purchase"), HOUR_MS, None)])
    events = [ev("purchase", T0 + 10, item_id=f"i{i}", price=p) for i, p in enumerate(prices)]
    c = observed(plan, events)
    assert c == observed(plan, sorted(events, key=lambda e: e.items[0].price))
    assert c.total("purchase", HOUR_MS, T0 + 10) == 1258.52  # exact; 1e-7 is below a millionth
    assert WindowedCounters.from_record(orjson.loads(orjson.dumps(c.to_record()))) == c


@settings(max_examples=80, deadline=None)
@given(st.lists(event_st, min_size=1, max_size=25), st.integers(0, 30 * DAY_MS), st.data())
def test_reads_match_brute_force_over_raw_events(events, later, data):
    c = observed(PLAN, events)
    now = max(e.ts_ms for e in events) + data.draw(st.sampled_from([0, 1, 999, 1000, later]))
    for spec in SPECS:
        hits = [(e, spec.match(e)) for e in events]
        hits = [(e.ts_ms, value, lines) for e, (ok, value, lines) in hits if ok]
        assert c.last(spec.key) == max((ts for ts, _, _ in hits), default=None)
        for w in WINDOWS:
            r = resolution_ms(w)
            inside = [(ts, v, lines) for ts, v, lines in hits if ts - ts % r > now - w]
            assert c.count(spec.key, w, now) == len(inside)
            assert c.total(spec.key, w, now) == pytest.approx(sum(v for _, v, _ in inside))
            cats = {line.category for _, _, lines in inside for line in lines if line.category}
            assert c.distinct(spec.key, "category", w, now) == len(cats)
            changes = [ts - ts % r + w for ts, _, _ in inside]
            assert c.next_change(spec.key, w, now) == min(changes, default=None)
    kept = WindowedCounters.from_record(c.to_record())
    kept.prune(PLAN, now)
    for spec in SPECS:
        for w in WINDOWS:
            assert kept.count(spec.key, w, now) == c.count(spec.key, w, now)
            assert kept.next_change(spec.key, w, now) == c.next_change(spec.key, w, now)


# Distinct sets kept shorter than the series' buckets of the same resolution.
SHORT_DISTINCT = FeaturePlan([(s, w, None) for s in SPECS for w in WINDOWS]
                             + [(s, w, "category") for s in SPECS for w in (7 * 1000, 5 * HOUR_MS)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(event_st, st.integers(0, 2 * DAY_MS), st.booleans()), max_size=30),
       st.sampled_from([PLAN, SHORT_DISTINCT]))
def test_a_prune_skipped_before_its_instant_equals_pruning_every_time(steps, plan):
    """``prune`` returns at once before the first bucket can go; the counters must equal
    those pruned in full at every step (late events, new series and distinct sets), and
    just before and at the instant it remembers (``probe``)."""
    skipping, full = WindowedCounters(), WindowedCounters()
    now = T0
    for e, advance, probe in steps:
        now = max(now, e.ts_ms) + advance
        skipping.observe(e, plan)
        full.observe(e, plan)
        instants = [now]
        if probe and skipping._prune_at is not None and skipping._prune_at[1] is not None:
            at = skipping._prune_at[1]
            instants = [at - 1, at] if at > now else instants
        for t in instants:
            skipping.prune(plan, t)
            full._prune_at = None
            full.prune(plan, t)
            assert skipping == full
        now = instants[-1]


def test_a_late_bucket_before_the_first_brings_the_next_prune_earlier():
    """A late event's bucket, earlier than a series' or a distinct set's first, goes first:
    at its own instant (the distinct set's 7 s window here), not the one remembered."""
    for plan in (PLAN, SHORT_DISTINCT):
        c = observed(plan, [ev("purchase", T0 + 5_000, item_id="a", category="c1", price=1)])
        c.prune(plan, T0 + 5_000)
        c.observe(ev("purchase", T0 + 1_000, item_id="b", category="c2", price=1), plan)  # late
        keep = 7_000 if plan is SHORT_DISTINCT else HOUR_MS
        for now in (T0 + 1_000 + keep - 1, T0 + 1_000 + keep):
            full = WindowedCounters.from_record(c.to_record())
            c.prune(plan, now)
            full.prune(plan, now)
            assert c == full, (plan, now)
        assert c.distinct("purchase", "category", keep, T0 + 1_000 + keep) == 1  # c2 is gone


def test_reads_stay_exact_through_late_events_prunes_and_merges():
    """Reads bisect sorted buckets and keep prefix sums of the counts: check them against a
    brute force while events arrive out of order (inserts far back and near the end), the
    counters are pruned between reads and another profile is absorbed."""
    import random
    rng = random.Random(4)
    s = SeriesSpec("purchase")
    windows = (1000, 10 * 1000, HOUR_MS, 2 * HOUR_MS, 3 * DAY_MS)
    plan = FeaturePlan([(s, w, None) for w in windows])
    c, seen = WindowedCounters(), []
    now = T0
    for step in range(600):
        if rng.random() < 0.8:
            now += rng.choice((0, 1, 400, 1000, 61_000))
            ts = now
        else:  # late: just behind, or far back (more buckets after it than the patch limit)
            ts = now - rng.choice((1, 999, 5_000, 30 * MINUTE_MS, 2 * DAY_MS))
        e = ev("purchase", ts, item_id="i", price=rng.choice((0.5, 2, 9.99)), quantity=1)
        if rng.random() < 0.05:  # a profile stitched in: same reads as observing its events
            other = observed(plan, [e])
            c.absorb(other)
        else:
            c.observe(e, plan)
        seen.append((ts, e.items[0].price))
        if step % 97 == 0:
            c.prune(plan, now)
        if step % 7 == 0:  # the stored form is cached per series until it changes
            cached = c.to_record()
            for series in c._b.values():
                series.packed = None
            assert cached == c.to_record(), step
        for w in windows:
            r = resolution_ms(w)
            inside = [(ts, v) for ts, v in seen if ts - ts % r > now - w]
            assert c.count(s.key, w, now) == len(inside), (step, w)
            assert c.total(s.key, w, now) == pytest.approx(sum(v for _, v in inside))
            assert c.next_change(s.key, w, now) == min((ts - ts % r + w for ts, _ in inside), default=None)
        reads = [((s.key, resolution_ms(w)), (w,)) for w in windows]
        assert c.next_change_min(reads, now) == min(
            (t for w in windows if (t := c.next_change(s.key, w, now)) is not None), default=None)
    back = WindowedCounters.from_record(orjson.loads(orjson.dumps(c.to_record())))
    assert back == c and all(back.count(s.key, w, now) == c.count(s.key, w, now) for w in windows)


def test_a_hand_made_record_out_of_order_reads_like_a_mapping():
    rec = {"v": 1, "last": {}, "b": [["search", 1000, [T0 // 1000 + 5, 1, 1, -5, 2, 2, 0, 3, 3]]]}
    c = WindowedCounters.from_record(rec)
    # buckets T0+5 s (1), then T0 (2) overwritten by T0 again (3): the last of equal starts wins
    assert c.count("search", HOUR_MS, T0 + 5_000) == 4
    assert c.next_change("search", HOUR_MS, T0 + 5_000) == T0 + HOUR_MS
    assert c.to_record()["b"] == [["search", 1000, [T0, T0 + 5_000], [3, 1], [3 * MICRO, MICRO]]]


@given(st.lists(event_st, min_size=1, max_size=40), st.data())
def test_the_stored_form_kept_up_to_date_equals_one_packed_afresh(events, data):
    # A series keeps its stored form current as buckets are added at its end and dropped
    # from its start (and re-packs after anything else): interleave events, prunes at
    # instants that drop some of a series' buckets, encodings and decodings, then compare
    # with packing the buckets from scratch.
    if data.draw(st.booleans()):  # in event-time order, as live events mostly come
        events = sorted(events, key=lambda e: e.ts_ms)
    later = st.sampled_from([0, 7_000, HOUR_MS, HOUR_MS + 5_000, 2 * HOUR_MS, 60 * HOUR_MS + 9 * HOUR_MS])
    with mock.patch.object(buckets, "KEEP_PACKED", data.draw(st.sampled_from([1, 3, 64]))):
        _interleave(events, later, data)


def _interleave(events, later, data):
    def check(c):
        fresh = {(k, r): [pack_cells(ser.bs, r, [(n, stored_number(sm / MICRO)) for n, sm in zip(ser.cnt, ser.sm)])]
                 if len(ser.bs) >= buckets.KEEP_PACKED else [ser.bs, ser.cnt, ser.sm]
                 for (k, r), ser in c._b.items()}
        assert {(k, r): stored for k, r, *stored in c.to_record().get("b", [])} == fresh
        assert orjson.loads(orjson.dumps(c.to_record(encoded=True))) == orjson.loads(orjson.dumps(c.to_record()))

    c = WindowedCounters()
    for e in events:
        c.observe(e, PLAN)
        if data.draw(st.booleans()):
            c.prune(PLAN, e.ts_ms + data.draw(later))
        if data.draw(st.booleans()):
            check(c)
        if data.draw(st.booleans()):
            c = WindowedCounters.from_record(orjson.loads(orjson.dumps(c.to_record(encoded=True))))
    check(c)


def test_dropping_a_series_first_buckets_updates_its_kept_stored_form():
    for keep in (1, 64):  # the packed list kept and updated in place, or only its JSON
        with mock.patch.object(buckets, "KEEP_PACKED", keep):
            c = observed(PLAN, [ev("page_view", T0 + i * 2_000) for i in range(3)])
            before = orjson.loads(orjson.dumps(c.to_record(encoded=True)))
            c.prune(PLAN, T0 + HOUR_MS + 3_000)  # drops the buckets at T0 and T0 + 2 s of the 1 s series
            after = orjson.loads(orjson.dumps(c.to_record(encoded=True)))
            assert after == orjson.loads(orjson.dumps(c.to_record())) != before
            assert (["any", 1000, [(T0 + 4_000) // 1000, 1, 0]] if keep == 1 else
                    ["any", 1000, [T0 + 4_000], [1], [0]]) in after["b"]


def test_dropping_distinct_sets_first_buckets_updates_their_kept_stored_form():
    c = observed(PLAN, [ev("purchase", T0 + i * 2_000, item_id=f"i{i}", category=f"c{i}", price=1) for i in range(3)])
    before = orjson.loads(orjson.dumps(c.to_record(encoded=True)))
    c.prune(PLAN, T0 + HOUR_MS + 3_000)  # drops the sets at T0 and T0 + 2 s of the 1 s series
    after = orjson.loads(orjson.dumps(c.to_record(encoded=True)))
    assert after == orjson.loads(orjson.dumps(c.to_record())) != before
    assert ["purchase", 1000, "category", [(T0 + 4_000) // 1000, ["c2"]]] in after["d"]


@pytest.mark.parametrize("seed", range(8))
def test_flip_at_is_the_first_bucket_leaving_where_the_comparison_changes(seed):
    """``flip_at`` against stepping through every instant a bucket leaves the window."""
    rng = random.Random(seed)
    c = WindowedCounters()
    res, w = 1000, 10 * 60_000
    series = c._b[("k", res)] = Series(res)
    t0 = 1_795_773_600_000
    for _ in range(rng.randrange(1, 40)):
        b = t0 + rng.randrange(900) * res
        series.add(b, rng.randint(1, 3), rng.choice((0, 2_500_000, 10_000_000, 0 if seed % 3 else -4_000_000)))
    now = t0 + rng.randrange(900) * res + rng.randrange(res)
    for total in (False, True):
        read = c.total_at if total else c.count_at
        for op, fn in (("<", operator.lt), ("<=", operator.le), (">", operator.gt), (">=", operator.ge),
                       ("==", operator.eq), ("!=", operator.ne)):
            values = sorted({read(("k", res), w, now), *[read(("k", res), w, b + w) for b in series.bs], 0, 1, 2.5, 7})
            for number in values:
                want = None
                start = fn(read(("k", res), w, now), number)
                for b in series.bs:
                    if b + w > now and fn(read(("k", res), w, b + w), number) != start:
                        want = b + w
                        break
                got = c.flip_at(("k", res), w, op, number, now, total)
                if total and min(series.sm[bisect_right(series.bs, now - w):] or [0]) < 0:
                    # not monotone: the first bucket leaving stands for it (never later)
                    assert got is not None and (want is None or got <= want), (op, number)
                else:
                    assert got == want, (total, op, number)


def test_a_plan_pickles_and_counts_the_same_after():
    """The plan's per-series matchers are closures: a pickled plan makes them again."""
    import pickle
    again = pickle.loads(pickle.dumps(PLAN))
    events = [ev("purchase", T0 + i * 1000, channel="app" if i % 2 else None, item_id=f"i{i}",
                 category=("outdoor/tents", "books", "outdoorsy")[i % 3], price=(0.5, 2, 9.25, 12)[i % 4])
              for i in range(12)]
    assert again.fingerprint == PLAN.fingerprint
    assert observed(again, events) == observed(PLAN, events) != observed(PLAN, [])


def test_the_stored_form_follows_series_added_and_dropped_after_it_was_written():
    """``to_record`` keeps the sorted series keys until a series comes or goes: new ones
    from an absorbed profile and from events, and ones a prune empties, must all show."""
    def stored(c):
        return [(k, r) for k, r, *_stored in c.to_record(encoded=True).get("b", [])]

    c = observed(PLAN, [ev("purchase", T0, item_id="a", category="books", price=3)])
    sizes = [len(stored(c))]
    c.absorb(observed(PLAN, [ev("product_view", T0 + 1000, item_id="b", category="outdoor/tents", price=5)]))
    sizes.append(len(stored(c)))
    assert stored(c) == sorted(c._b)
    c.observe(ev("page_view", T0 + 2000, channel="app"), PLAN)
    sizes.append(len(stored(c)))
    assert stored(c) == sorted(c._b)
    c.prune(PLAN, T0 + 2 * HOUR_MS)  # the second-resolution series (windows up to 1 h) go
    sizes.append(len(stored(c)))
    assert stored(c) == sorted(c._b)
    assert sizes[0] < sizes[1] < sizes[2] and 0 < sizes[3] < sizes[2]
