"""Event validation: every rule has a precise reason."""

from __future__ import annotations

import orjson
import pytest

from operators.events import MAX_EVENT_BYTES, Event, InvalidEvent, parse_event

NOW = 1_795_800_000_000


def ev(**fields):
    base = {"event_id": "e1", "type": "page_view", "user_id": "u1", "timestamp": NOW}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize(
    "raw, reason, detail",
    [
        (b"{not json", "not_json", "invalid JSON"),
        (b"[1,2]", "not_object", "got list"),
        (b"x" * (MAX_EVENT_BYTES + 1), "too_large", "limit"),
        (ev(event_id=...), "missing_field", "'event_id' is required"),
        (ev(event_id=""), "bad_field", "'event_id' must be a non-empty string"),
        (ev(type=...), "missing_field", "'type' is required"),
        (ev(type="teleport"), "unknown_type", "'teleport'"),
        (ev(type=3), "unknown_type", "JSON type int"),
        (ev(user_id=...), "missing_field", "one of 'user_id', 'anonymous_id', 'device_id' or 'email'"),
        (ev(user_id="x" * 129), "bad_field", "longer than 128"),
        (ev(timestamp=...), "missing_field", "'timestamp' is required"),
        (ev(timestamp="2026-11-27T10:00:00"), "bad_timestamp", "no UTC offset"),
        (ev(timestamp="yesterday"), "bad_timestamp", "not ISO-8601"),
        (ev(timestamp=1_795_800_000), "bad_timestamp", "seconds instead of ms"),
        (ev(timestamp=NOW + 3_600_000), "bad_timestamp", "in the future"),
        (ev(timestamp=True), "bad_timestamp", "epoch milliseconds"),
        (ev(type="add_to_cart"), "missing_field", "'item_id' is required"),
        (ev(type="add_to_cart", item_id="a", price=-1), "bad_field", "'price' = -1"),
        (ev(type="add_to_cart", item_id="a", quantity=0), "bad_field", "'quantity'"),
        (ev(type="add_to_cart", item_id="a", price="9"), "bad_field", "'price' must be a number"),
        (ev(type="purchase"), "missing_field", "purchase needs 'items'"),
        (ev(type="purchase", item_id="a"), "missing_field", "'price' is required"),
        (ev(type="purchase", items=[]), "bad_field", "non-empty list"),
        (ev(type="purchase", items=[{"item_id": "a"}]), "missing_field", "'items[0].price' is required"),
        (ev(type="purchase", items=[{"item_id": "a", "price": 1}, 5]), "bad_field", "items[1] must be an object"),
        (ev(items=[{"item_id": "a", "price": 1}]), "bad_field", "only allowed on purchase"),
        (ev(context=[]), "bad_field", "'context' must be an object"),
        (ev(context={"geo": {"lat": 91, "lon": 0}}), "bad_field", "'context.geo.lat' = 91"),
        (ev(context={"geo": {"lat": 1}}), "bad_field", "go together"),
        (ev(context={"device": 7}), "bad_field", "'context.device' must be a string"),
    ],
)
def test_invalid_events_have_precise_reasons(raw, reason, detail):
    result = parse_event(raw, now_ms=NOW)
    assert isinstance(result, InvalidEvent)
    assert result.reason == reason
    assert detail in result.detail


def test_valid_purchase_is_normalized():
    raw = ev(type="purchase", anonymous_id="a1", user_id=..., timestamp="2026-11-27T10:00:00+01:00",
             items=[{"item_id": " sku-1 ", "category": "tents", "price": 100, "quantity": 2},
                    {"item_id": "sku-2", "price": 5.5}],
             context={"device": "mobile", "channel": "app", "geo": {"city": "Lyon", "lat": 45.7, "lon": 4.8}},
             unknown_field="ignored")
    e = parse_event(raw, now_ms=NOW)
    assert isinstance(e, Event)
    assert e.profile_key == "anon:a1" and e.user_id is None
    assert e.ts_ms == 1_795_770_000_000  # 09:00Z
    assert [(i.item_id, i.price, i.quantity) for i in e.items] == [("sku-1", 100.0, 2), ("sku-2", 5.5, 1)]
    assert e.context.geo.city == "Lyon" and e.context.channel == "app"


def test_iso_and_epoch_timestamps_agree():
    a = parse_event(ev(timestamp="2026-11-27T09:00:00+00:00"))
    b = parse_event(ev(timestamp="2026-11-27T10:00:00+01:00"))
    c = parse_event(ev(timestamp=a.ts_ms))
    assert a.ts_ms == b.ts_ms == c.ts_ms


def test_user_id_wins_over_anonymous_id_as_profile_key():
    e = parse_event(ev(type="login", anonymous_id="anon-1"))
    assert e.profile_key == "user:u1" and e.anonymous_id == "anon-1"
    assert e.aliases == ("user:u1", "anon:anon-1")


def test_a_cached_context_does_not_make_a_boolean_latitude_valid():
    good = ev(context={"geo": {"lat": 1, "lon": 2}})
    bad = ev(context={"geo": {"lat": True, "lon": 2}})
    assert isinstance(parse_event(good, now_ms=NOW), Event)
    result = parse_event(bad, now_ms=NOW)
    assert isinstance(result, InvalidEvent) and "context.geo.lat" in result.detail
