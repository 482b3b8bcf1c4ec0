"""profile_to_proto: a pure conversion, checked without a server."""

from __future__ import annotations

from operators.profile import Profile
from serving import profile_to_proto
from tests.serving.conftest import make_profile


def test_an_empty_profile_leaves_optional_parts_unset():
    m = profile_to_proto(Profile("u0"))
    assert m.profile_id == "u0"
    for name in ("first_seen", "last_seen", "last_location"):
        assert not m.HasField(name), name
    assert (dict(m.event_counts), len(m.cart), len(m.top_categories)) == ({}, 0, 0)
    assert (m.last_device, m.last_channel, m.total_spend, m.orders, m.version) == ("", "", 0.0, 0, 0)


def test_geo_without_coordinates_has_no_lat_lon():
    m = profile_to_proto(make_profile("u1", last_geo={"country": "DE", "city": None, "lat": None, "lon": None}))
    geo = m.last_location
    assert (geo.country, geo.city) == ("DE", "")
    assert not geo.HasField("lat") and not geo.HasField("lon")


def test_cart_is_oldest_first_with_item_id_breaking_ties():
    cart = {
        "b": {"qty": 1, "price": 1.0, "category": "x", "added_ms": 5},
        "a": {"qty": 1, "price": 1.0, "category": "x", "added_ms": 5},
        "c": {"qty": 3, "price": 2.5, "category": None, "added_ms": 1},
    }
    m = profile_to_proto(make_profile("u1", cart=cart))
    assert [c.item_id for c in m.cart] == ["c", "a", "b"]
    assert m.cart[0].added_at.ToMilliseconds() == 1


def test_top_categories_are_at_most_five_highest_first():
    cats = {f"c{i}": i for i in range(10)}
    m = profile_to_proto(make_profile("u1", categories=cats))
    assert [(c.category, c.count) for c in m.top_categories] == [("c9", 9), ("c8", 8), ("c7", 7), ("c6", 6), ("c5", 5)]


def test_conversion_does_not_mutate_the_profile():
    p = make_profile("u1")
    before = Profile.from_record(p.to_record())
    profile_to_proto(p)
    assert p == before


def test_a_location_with_nothing_known_is_still_present():
    m = profile_to_proto(make_profile("u1", last_geo={"country": None, "city": None, "lat": None, "lon": None}))
    assert m.HasField("last_location")
