"""Profile updates: counts, spend, cart, categories, bounds."""

from __future__ import annotations

import orjson

from operators.events import parse_event
from operators.profile import MAX_CART_LINES, MAX_CATEGORIES, Profile

T0 = 1_795_800_000_000


def event(i, type_, **fields):
    doc = {"event_id": f"e{i}", "type": type_, "user_id": "u1", "timestamp": T0 + i, **fields}
    return parse_event(orjson.dumps(doc))


def apply_all(profile, events):
    for i, e in enumerate(events):
        profile.apply(e, "events/0", i)
    return profile


def test_cart_spend_and_counts():
    p = apply_all(Profile("u1"), [
        event(0, "add_to_cart", item_id="a", price=10, quantity=2, category="tents"),
        event(1, "add_to_cart", item_id="b", price=5, category="boots"),
        event(2, "remove_from_cart", item_id="a", quantity=1),
        event(3, "purchase", items=[{"item_id": "a", "price": 10, "quantity": 1, "category": "tents"}]),
        event(4, "page_view", context={"device": "mobile", "channel": "app"}),
    ])
    assert p.counts == {"add_to_cart": 2, "remove_from_cart": 1, "purchase": 1, "page_view": 1}
    assert list(p.cart) == ["b"] and p.cart["b"]["qty"] == 1
    assert p.total_spend == 10.0 and p.orders == 1
    assert p.top_categories(2) == [("tents", 2), ("boots", 1)]
    assert (p.first_seen_ms, p.last_seen_ms) == (T0, T0 + 4)
    assert (p.last_device, p.last_channel) == ("mobile", "app")


def test_late_event_counts_but_does_not_rewind_last_seen_or_context():
    p = apply_all(Profile("u1"), [
        event(10, "page_view", context={"device": "desktop"}),
        event(5, "page_view", context={"device": "mobile"}),
    ])
    assert p.counts["page_view"] == 2
    assert p.last_seen_ms == T0 + 10 and p.first_seen_ms == T0 + 5
    assert p.last_device == "desktop"


def test_offsets_are_tracked_per_source():
    p = Profile("u1")
    e = event(0, "page_view")
    assert p.apply(e, "events/0", 5)
    assert not p.apply(e, "events/0", 5) and not p.apply(e, "events/0", 4)
    assert p.apply(e, "events/1", 0)
    assert p.counts["page_view"] == 2


def test_categories_and_cart_are_bounded():
    p = Profile("u1")
    for i in range(MAX_CATEGORIES * 3):
        p.apply(event(i, "product_view", item_id=f"i{i}", category=f"c{i}"), "events/0", i)
    for i in range(MAX_CART_LINES * 2):
        p.apply(event(i, "add_to_cart", item_id=f"i{i}", price=1), "events/0", 10_000 + i)
    assert len(p.categories) == MAX_CATEGORIES
    assert len(p.cart) == MAX_CART_LINES
    assert "i0" not in p.cart and f"i{MAX_CART_LINES * 2 - 1}" in p.cart


def test_record_round_trip():
    p = apply_all(Profile("u1"), [event(0, "add_to_cart", item_id="a", price=3, context={"geo": {"lat": 1, "lon": 2}})])
    assert Profile.from_record(orjson.loads(orjson.dumps(p.to_record()))) == p
