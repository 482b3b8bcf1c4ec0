"""operators.quality: which field each invalid record counts against, missing optional
fields of valid events, and the volume monitor's minutes, level and ratio."""

from __future__ import annotations

import math

import orjson
import pytest

from operators.events import Event, InvalidEvent, parse_event
from operators.quality import KNOWN_FIELDS, OTHER, VolumeMonitor, count_field_issues, field_issue
from operators.synthetic import ClickstreamGenerator

NOW = 1_795_773_600_000
BASE = {"event_id": "e1", "type": "page_view", "user_id": "u1", "timestamp": NOW,
        "context": {"device": "mobile", "channel": "web",
                    "geo": {"country": "FR", "city": "Lyon", "lat": 45.7, "lon": 4.8}}}


def rec(**changes) -> bytes:
    doc = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


@pytest.mark.parametrize("raw,expected", [
    (b"{not json", ("record", "invalid")),
    (b"[1, 2]", ("record", "invalid")),
    (b"x" * 70_000, ("record", "invalid")),
    (rec(event_id=...), ("event_id", "missing")),
    (rec(event_id=""), ("event_id", "invalid")),
    (rec(type=...), ("type", "missing")),
    (rec(type="teleport"), ("type", "invalid")),
    (rec(user_id=...), ("identity", "missing")),
    (rec(timestamp=...), ("timestamp", "missing")),
    (rec(timestamp="yesterday"), ("timestamp", "invalid")),
    (rec(timestamp=NOW + 3_600_000), ("timestamp", "invalid")),
    (rec(type="product_view"), ("item_id", "missing")),
    (rec(type="add_to_cart", item_id="i1", price=-1), ("price", "invalid")),
    (rec(type="add_to_cart", item_id="i1", quantity=0), ("quantity", "invalid")),
    (rec(type="purchase"), ("items", "missing")),
    (rec(type="purchase", items=[{"item_id": "a", "price": 1}, {"item_id": "b"}]), ("items[].price", "missing")),
    (rec(type="purchase", items=[{"item_id": "a", "price": 1}, "b"]), ("items[]", "invalid")),
    (rec(type="page_view", items=[{"item_id": "a", "price": 1}]), ("items", "invalid")),
    (rec(query=7), ("query", "invalid")),
    (rec(context="mobile"), ("context", "invalid")),
    (rec(context={"geo": {"lat": 100, "lon": 0}}), ("context.geo.lat", "invalid")),
    (rec(context={"device": 3}), ("context.device", "invalid")),
])
def test_an_invalid_record_counts_against_the_field_validation_names(raw, expected):
    result = parse_event(raw, now_ms=NOW)
    assert isinstance(result, InvalidEvent), result
    assert field_issue(result) == expected, result.detail
    assert count_field_issues([result]) == {expected: 1}


def test_unknown_messages_count_as_other_and_names_stay_bounded():
    assert field_issue(InvalidEvent("bad_field", "something new went wrong")) == (OTHER, "invalid")
    assert field_issue(InvalidEvent("bad_field", "field 'x' + 'a' * 1000 is odd")) == (OTHER, "invalid")
    # An index never makes a new label value.
    names = {field_issue(InvalidEvent("missing_field", f"field 'items[{i}].price' is required"))[0]
             for i in range(500)}
    assert names == {"items[].price"}


def test_valid_events_count_missing_optional_fields():
    full = parse_event(rec(), now_ms=NOW)
    bare = parse_event(rec(context=...), now_ms=NOW)
    partial = parse_event(rec(type="purchase", context={"device": "app"},
                              items=[{"item_id": "a", "price": 1, "category": "c"}, {"item_id": "b", "price": 2},
                                     {"item_id": "c", "price": 3}]), now_ms=NOW)
    assert all(isinstance(e, Event) for e in (full, bare, partial))
    assert count_field_issues([full]) == {}
    assert count_field_issues([full, bare, partial]) == {
        ("context.device", "missing"): 1, ("context.channel", "missing"): 2, ("context.geo", "missing"): 2,
        ("category", "missing"): 2}


def test_the_synthetic_clickstreams_malformed_records_map_to_known_fields():
    gen = ClickstreamGenerator(seed=3, users=50, invalid_rate=1.0)
    results = [parse_event(gen.next_record(NOW)[1], now_ms=NOW) for _ in range(400)]
    counts = count_field_issues(results)
    assert sum(counts.values()) >= sum(isinstance(r, InvalidEvent) for r in results)
    assert all(field in KNOWN_FIELDS for field, _issue in counts), counts
    expected = {("record", "invalid"), ("type", "invalid"), ("timestamp", "invalid"), ("event_id", "missing")}
    assert expected <= set(counts)


MINUTE = 60_000


def feed(monitor: VolumeMonitor, per_minute: list[int], start_minute: int = 0) -> None:
    for i, n in enumerate(per_minute):
        if n:
            monitor.learn_many([(start_minute + i) * MINUTE + 30_000] * n)


def test_volume_warms_up_then_tracks_the_level():
    v = VolumeMonitor(half_life_minutes=5, warmup_minutes=3)
    assert math.isnan(v.ratio()) and math.isnan(v.level_per_minute()) and math.isnan(v.last_per_minute())
    feed(v, [7, 100, 100, 100])  # minute 0 is partial (skipped); 1 and 2 are final
    assert v.last_per_minute() == 100 and v.level_per_minute() == 100
    assert math.isnan(v.ratio())  # two final minutes < warmup
    feed(v, [100, 100], start_minute=4)
    assert v.ratio() == pytest.approx(1.0)


def test_volume_ratio_shows_a_drop_and_a_flood():
    v = VolumeMonitor(half_life_minutes=10, warmup_minutes=3)
    feed(v, [100] * 20)
    feed(v, [20, 20, 20], start_minute=20)
    v.learn_one(23 * MINUTE)  # makes minute 21 final (grace 1)
    assert v.last_per_minute() == 20
    assert v.ratio() == pytest.approx(20 / v._level_before_last) and v.ratio() < 0.25
    feed(v, [2000, 2000, 2000], start_minute=24)
    assert v.ratio() > 10


def test_volume_counts_gaps_as_empty_minutes_without_looping_over_them():
    v = VolumeMonitor(half_life_minutes=10, warmup_minutes=2)
    feed(v, [100] * 10)
    v.learn_one(40 * MINUTE)  # minutes 10..38 were silent
    assert v.last_per_minute() == 0 and v.ratio() == 0
    assert v.level_per_minute() == pytest.approx(100 * 0.5 ** (29 / 10))
    v.learn_one(10_000_000 * MINUTE)  # 19 years later: closed in one step, no loop
    assert v.last_per_minute() == 0 and v.level_per_minute() < 1e-6
    assert math.isnan(v.ratio())  # a silent input has no "normal" to compare with


def test_volume_late_records_are_not_counted_and_batches_may_span_minutes():
    v = VolumeMonitor(half_life_minutes=10, warmup_minutes=1)
    v.learn_many([0, MINUTE, MINUTE + 1, 2 * MINUTE, 3 * MINUTE])  # closes minutes 0 and 1
    assert v.last_per_minute() == 2
    v.learn_one(30_000)  # minute 0 is final already
    assert v.late == 1
    v.learn_many([2 * MINUTE + 5] * 3)  # minute 2 is still open (grace): counted
    v.learn_one(4 * MINUTE)
    assert v.last_per_minute() == 4 and v.late == 1


def test_volume_reading_never_changes_state():
    v = VolumeMonitor(half_life_minutes=10, warmup_minutes=1)
    feed(v, [10, 10, 10, 10])
    before = (v.last_per_minute(), v.level_per_minute(), v.ratio())
    for _ in range(3):
        assert (v.last_per_minute(), v.level_per_minute(), v.ratio()) == before


@pytest.mark.parametrize("kwargs", [{"half_life_minutes": 0}, {"warmup_minutes": 0}, {"grace_minutes": -1}])
def test_volume_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        VolumeMonitor(**kwargs)
