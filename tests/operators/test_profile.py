"""Profile updates: counts, spend, cart, categories, bounds."""

from __future__ import annotations

import random
from unittest import mock

import orjson
import pytest

import operators.profile as profile_module
from operators import buckets
from operators.events import parse_event
from operators.features import FeaturePlan, SeriesSpec
from operators.profile import (APPLIED, DUPLICATE, MAX_CART_LINES, MAX_CATEGORIES, REPLAYED, SUPPRESSED,
                               Policy, Profile, ProfileRecordError)

T0 = 1_795_800_000_000


def event(i, type_, event_id=None, **fields):
    doc = {"event_id": event_id or f"e{i}-{type_}", "type": type_, "user_id": "u1", "timestamp": T0 + i, **fields}
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


def test_same_event_id_is_applied_once_and_labelled_replay_or_duplicate():
    p = Profile("u1")
    e = event(0, "page_view")
    assert p.apply(e, "events/0", 5) == APPLIED
    assert p.apply(e, "events/0", 5) == REPLAYED  # re-read at an offset already applied
    assert p.apply(e, "events/1", 0) == DUPLICATE  # sent again by a producer
    # Near-duplicates (same content, another event_id) are distinct events.
    assert p.apply(event(0, "page_view", event_id="e0-again"), "events/1", 1) == APPLIED
    assert p.counts["page_view"] == 2


def test_replay_is_recognised_by_offset_even_beyond_the_id_memory():
    # A heavy profile re-reads more records after a restart than it remembers ids for:
    # none of them may count twice.
    policy = Policy(dedupe_max=10)
    events = [event(i, "purchase", item_id=f"i{i}", price=1) for i in range(100)]
    p = Profile("u1")
    for i, e in enumerate(events):
        assert p.apply(e, "events/0", i, policy) == APPLIED
    assert len(p.seen) <= 13
    assert [p.apply(e, "events/0", i, policy) for i, e in enumerate(events)] == [REPLAYED] * 100
    assert p.orders == 100 and p.total_spend == 100
    # The same ids sent again later (new offsets) are duplicates while remembered.
    assert p.apply(events[-1], "events/0", 100, policy) == DUPLICATE


def test_suppressed_records_are_not_stored_on_replay_after_consent_arrives():
    p = Profile("u1")
    policy = Policy(default_consent=False)
    assert p.apply(event(1, "page_view"), "events/0", 1, policy) == SUPPRESSED
    grant = event(2, "consent_update", consent={"analytics": True})
    assert p.apply(grant, "events/1", 0, policy) == APPLIED
    assert p.apply(event(1, "page_view"), "events/0", 1, policy) == REPLAYED
    assert p.counts.get("page_view", 0) == 0


def test_dedupe_memory_is_bounded_by_count_and_horizon():
    policy = Policy(dedupe_max=100, dedupe_horizon_ms=50_000)
    p = Profile("u1")
    for i in range(1000):
        p.apply(event(i * 100, "page_view"), "events/0", i, policy)
        assert len(p.seen) <= 125
    p.compact(policy)  # the store's bound is the same: writes do not prune the ids
    assert 100 <= len(p.seen) <= 125
    assert min(p.seen.values()) > T0 + 999 * 100 - 50_000


def test_consent_gates_behaviour_and_withdrawal_clears_it():
    p = Profile("u1")
    p.apply(event(1, "page_view"), "events/0", 1)
    p.apply(event(2, "consent_update", consent={"analytics": False}), "events/0", 2)
    assert p.counts == {} and not p.allows("analytics") and p.allows("personalization")
    assert p.apply(event(3, "page_view"), "events/0", 3) == SUPPRESSED
    assert p.counts == {} and p.seen == {}
    # An older decision arriving late does not override a newer one.
    p.apply(event(0, "consent_update", consent={"analytics": True}), "events/0", 4)
    assert not p.allows("analytics")
    p.apply(event(5, "consent_update", consent={"analytics": True}), "events/0", 5)
    assert p.apply(event(6, "page_view"), "events/0", 6) == APPLIED
    assert p.counts == {"page_view": 1}


def test_opt_in_regime_stores_nothing_until_consent():
    opt_in = Policy(default_consent=False)
    p = Profile("u1")
    assert p.apply(event(1, "page_view"), "events/0", 1, opt_in) == SUPPRESSED
    p.apply(event(2, "consent_update", consent={"analytics": True}), "events/0", 2, opt_in)
    assert p.apply(event(3, "page_view"), "events/0", 3, opt_in) == APPLIED
    assert p.counts == {"page_view": 1} and not p.allows("personalization", opt_in)


def split_and_merge(events, cut):
    """Events before ``cut`` on an anonymous profile, the rest on the user's, then merged."""
    anon, user = Profile("anon:a"), Profile("user:u")
    for i, e in enumerate(events):
        (anon if i < cut else user).apply(e, "events/0", i)
    user.absorb(anon)
    return user


def test_merge_equals_one_profile_whatever_the_split_and_order():
    import random
    rng = random.Random(2)
    events = []
    for i in range(200):
        kind = rng.choice(["page_view", "add_to_cart", "remove_from_cart", "purchase", "product_view"])
        item = f"i{rng.randrange(5)}"
        fields = {"item_id": item, "price": 10.0 + rng.randrange(3), "category": f"c{rng.randrange(4)}"}
        if kind == "purchase":
            fields = {"items": [{"item_id": item, "price": 12.0, "quantity": 1, "category": "c1"}]}
        if kind == "page_view":
            fields = {}
        events.append(event(i * 1000, kind, **fields))
    whole = Profile("user:u")
    for i, e in enumerate(events):
        whole.apply(e, "events/0", i)
    shuffled = events[:]
    rng.shuffle(shuffled)
    for evs, cut in ((events, 70), (shuffled, 130), (shuffled, 0)):
        merged = split_and_merge(evs, cut)
        assert merged.counts == whole.counts
        assert merged.cart == whole.cart
        assert merged.total_spend == whole.total_spend and merged.orders == whole.orders
        assert merged.categories == whole.categories
        assert (merged.first_seen_ms, merged.last_seen_ms) == (whole.first_seen_ms, whole.last_seen_ms)
        assert merged.seen == whole.seen


def test_absorbing_twice_changes_nothing():
    anon, user = Profile("anon:a"), Profile("user:u")
    anon.apply(event(1, "page_view"), "events/0", 1)
    assert user.absorb(anon) and not user.absorb(anon)
    assert user.counts == {"page_view": 1} and user.merged_from == ["anon:a"]


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


def test_record_keys_a_v3_record_and_a_record_lacking_a_field():
    p = apply_all(Profile("u1"), [event(0, "purchase", item_id="a", price=3, brand="acme"),
                                  event(1, "product_view", item_id="b", price=5)])
    rec = p.to_record()
    assert list(rec)[:4] == ["v", "id", "counts", "first_seen_ms"] and list(rec)[-1] == "price_taste"
    assert p.brands and p.recent and p.price_taste[1] == 2
    old = {k: v for k, v in rec.items() if k not in ("labels", "factors", "brands", "recent", "price_taste")}
    old["v"] = 3  # written before the model fields existed: they start empty
    loaded = Profile.from_record(orjson.loads(orjson.dumps(old)))
    assert (loaded.brands, loaded.recent, loaded.price_taste, loaded.labels, loaded.factors) == ({}, [], [0, 0], {}, [])
    assert loaded.orders == p.orders == 1 and loaded.counts == p.counts
    for missing in ("id", "orders", "counters"):
        broken = {k: v for k, v in rec.items() if k != missing}
        with pytest.raises(ProfileRecordError, match=f"lacks field '{missing}'"):
            Profile.from_record(broken)
    with pytest.raises(ProfileRecordError, match="version 2"):
        Profile.from_record({**rec, "v": 2})


def test_encoded_equals_the_plain_encoding_through_appends_prunes_merges_and_cart_changes():
    """``encoded()`` reuses the previous encoding of the id memory, the cart log and the
    counters' series; whatever happened in between, it must be what ``to_record()`` holds."""
    with mock.patch.object(profile_module, "KEEP_JSON", 0), mock.patch.object(buckets, "KEEP_PACKED", 1):
        _encode_along_a_random_history()


def _encode_along_a_random_history():
    rng = random.Random(5)
    plan = FeaturePlan([(SeriesSpec("add_to_cart"), 10_000, None), (SeriesSpec("page_view"), 5_000, "item_id")])
    policy = Policy(dedupe_max=40, plan=plan)

    def ev(i, etype, **fields):  # 37 ms apart: windows of seconds see buckets come and go
        return event(i, etype, timestamp=T0 + 37 * i, **fields)

    p = Profile("u1")
    for i in range(760):
        kind = rng.random()
        if i >= 700:
            fields = {"consent": {"analytics": True}} if i == 700 else {"item_id": f"i{i % 9}", "price": 3}
            p.apply(ev(i, "consent_update" if i == 700 else rng.choice(("page_view", "add_to_cart")), **fields),
                    "events/0", i, policy)
        elif kind < 0.03:
            other = Profile(f"o{i}")
            for j in range(rng.randint(0, 5)):
                other.apply(ev(10_000 + i * 10 + j, "add_to_cart", item_id=f"i{j}", price=2), "events/1", i * 10 + j,
                            policy)
            p.absorb(other, policy)
        elif kind < 0.05:
            p.apply(ev(i, "consent_update", consent={"analytics": rng.random() < 0.5}), "events/0", i, policy)
        else:
            etype = rng.choice(("page_view", "add_to_cart", "remove_from_cart", "purchase"))
            p.apply(ev(i, etype, item_id=f"i{rng.randint(0, 8)}", price=3), "events/0", i, policy)
        if rng.random() < 0.3:
            p.compact(policy)
        if rng.random() < 0.5 or i >= 700:
            assert orjson.loads(p.encoded()) == orjson.loads(orjson.dumps(p.to_record())), i
    assert len(p.seen) > 10 and p.cart and p.counters.count("add_to_cart", 10_000, T0 + 37 * 760) > 0
    assert Profile.from_record(orjson.loads(p.encoded())) == p


def test_lines_dropped_and_added_again_between_two_reads_keep_the_cart_in_log_order():
    """A full log drops its line of oldest activity for a new one. Here, between two reads
    of the cart: ``a`` (added with an old time) is dropped for ``b``, then added again
    (now the last line of the log), dropping ``i1``; the view must list ``b`` then ``a``."""
    p = Profile("u1")
    for n in range(MAX_CART_LINES):
        p.apply(event(1_000 + n, "add_to_cart", item_id=f"i{n}", price=1), "events/0", n)
    p.apply(event(5, "add_to_cart", item_id="a", price=2), "events/0", 500)  # drops i0, oldest
    assert "a" in p.cart and "i0" not in p.cart
    p.apply(event(2_000, "add_to_cart", item_id="b", price=3), "events/0", 501)  # drops a
    p.apply(event(2_001, "add_to_cart", item_id="a", price=2), "events/0", 502)  # drops i1
    assert list(p.cart)[-2:] == ["b", "a"] and "i1" not in p.cart
    rebuilt = Profile.from_record(orjson.loads(orjson.dumps(p.to_record())))
    assert list(p.cart.items()) == list(rebuilt.cart.items())
    assert p.attribute("cart_value") == rebuilt.attribute("cart_value") == MAX_CART_LINES - 2 + 5


def test_the_cart_view_equals_one_built_from_the_log_through_every_kind_of_cart_change():
    """``cart`` is updated line by line (``operators.cart``): after adds, removes,
    purchases, merges, lines dropped at ``MAX_CART_LINES`` and cleared behaviour, it and
    its totals must equal those of a profile decoded from the same record (built from
    scratch), lines in the same order."""
    rng = random.Random(11)
    p = Profile("u1")
    items = [f"i{n}" for n in range(MAX_CART_LINES + 20)]
    full = 0  # steps with the log at its bound (so lines were dropped)
    totals: set = set()
    for i in range(1500):
        kind = rng.random()
        if kind < 0.02:
            other = Profile(f"o{i}")
            for j in range(rng.randint(1, 4)):
                other.apply(event(100_000 + i * 10 + j, "add_to_cart", item_id=rng.choice(items), price=2),
                            "events/1", i * 10 + j)
            p.absorb(other)
        elif kind < 0.025:
            p.clear_behaviour()
        else:
            etype = rng.choice(("add_to_cart", "add_to_cart", "remove_from_cart", "purchase"))
            p.apply(event(i, etype, item_id=rng.choice(items), price=rng.choice((3, 4.5)),
                          quantity=rng.randint(1, 3)), "events/0", i)
        full += len(p.cart_log) == MAX_CART_LINES
        if rng.random() < 0.5:
            rebuilt = Profile.from_record(orjson.loads(orjson.dumps(p.to_record())))
            assert list(p.cart.items()) == list(rebuilt.cart.items()), i  # the same lines, in log order
            for name in ("cart_items", "cart_value"):
                assert p.attribute(name) == rebuilt.attribute(name), (i, name)
            totals.add(p.attribute("cart_value"))
    assert full > 100 and p.cart and len(totals) > 20
