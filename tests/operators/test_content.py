"""Content catalog: eligibility, priority, hard constraints that nothing overrides, errors."""

from __future__ import annotations

import orjson
import pytest

from operators.content import Context, ContentError, load_catalog, parse_catalog
from operators.profile import Profile
from operators.segments import load_segments

SEGMENT_IDS = [s.id for s in load_segments("deploy/segments.yaml").segments]
CATALOG = load_catalog("deploy/content.yaml", segments=SEGMENT_IDS)
WEB_HOME = Context(page_type="home", channel="web")


def member(*segments, **fields) -> Profile:
    return Profile("user:x", segments={s: [1, "v"] for s in segments}, **fields)


def test_the_example_catalog_loads_with_its_slots():
    assert set(CATALOG.slots) == {"hero", "offer", "chatbot_greeting"}
    assert all(orjson.loads(m.payload_json) for m in CATALOG.modules)


def test_highest_priority_eligible_module_wins_and_says_why():
    d = CATALOG.decide("hero", member("vip", "cart_abandoner"), 0, WEB_HOME)
    assert d.module.id == "hero_cart_reminder"
    assert d.reason == "targets segment cart_abandoner, channel web (priority 90)"
    assert CATALOG.decide("hero", member("vip"), 0, WEB_HOME).module.id == "hero_vip"
    # Targeting by context: the cart reminder is for web and app only.
    chat = Context(page_type="home", channel="chatbot")
    assert CATALOG.decide("hero", member("cart_abandoner"), 0, chat).module.id == "hero_default"
    assert CATALOG.decide("chatbot_greeting", member("cart_abandoner"), 0, chat).module.id == "greeting_cart_help"


def test_anonymous_visitors_get_what_needs_no_profile():
    anon = Profile("anon:a")
    assert CATALOG.decide("hero", anon, 0, WEB_HOME).reason == "fallback (priority 0)"
    assert CATALOG.decide("offer", anon, 0, WEB_HOME).module.id == "offer_first_order"


def test_hard_constraints_win_over_targeting_priority_and_experiments():
    from operators.events import parse_event

    kitchen_buyer = member(orders=1, traits={"age_band": ["18-24", 1]})
    ev = parse_event(orjson.dumps({"event_id": "e1", "type": "purchase", "user_id": "x", "timestamp": 1_795_800_000_000,
                                   "item_id": "k1", "category": "home/kitchen", "price": 20}))
    from operators.features import FeaturePlan
    plan = FeaturePlan(CATALOG.requirements)
    kitchen_buyer.counters.observe(ev, plan)
    now = 1_795_800_000_000 + 1000
    # Targeted (kitchen purchase) and the highest priority of the slot, but 18-24 may be under 21.
    assert CATALOG.decide("offer", kitchen_buyer, now).module.id == "offer_newsletter"
    # An experiment forcing the wine offer does not override the constraint either.
    forced = CATALOG.decide("offer", kitchen_buyer, now, force="offer_wine_pairing")
    assert forced.module.id == "offer_newsletter"
    adult = member(orders=1, traits={"age_band": ["35-44", 1]})
    adult.counters.observe(ev, plan)
    assert CATALOG.decide("offer", adult, now).module.id == "offer_wine_pairing"
    # A discount only to new visitors: one order is enough to lose it.
    assert CATALOG.decide("offer", member(orders=1), now).module.id == "offer_newsletter"
    assert CATALOG.decide("offer", member(orders=1), now, force="offer_vip_shipping").reason.startswith("experiment")


@pytest.mark.parametrize("text,line,col,message", [
    ("slots: {hero: {}}\nmodules:\n  - id: a\n    slot: hero\n    target:\n      when: count(purchse, 7d) >= 1\n",
     6, 19, "module 'a': target.when: unknown event type 'purchse'"),
    ("slots: {hero: {}}\nmodules:\n  - {id: a, slot: banner}\n", 3, 19, "unknown slot 'banner'"),
    ("slots: {hero: {}}\nmodules:\n  - {id: a, slot: hero, target: {segments: [vpi]}}\n", 3, 45,
     "unknown segment 'vpi'"),
    ("slots: {hero: {}}\nmodules:\n  - id: a\n    slot: hero\n    constraints:\n      - orders >= \"x\"\n", 6, 16,
     "constraint: type mismatch"),
    ("slots: {hero: {}, offer: {}}\nmodules:\n  - {id: a, slot: hero}\n", 1, 8, "slot 'offer' has no module"),
    ("slots: {hero: {}}\nmodules:\n  - {id: a, slot: hero}\n  - {id: a, slot: hero}\n", 4, 5, "duplicate module id 'a'"),
    ("slots: {hero: {}}\nmodules:\n  - {id: a, slot: hero, priority: high}\n", 3, 35, "priority 'high' must be an integer"),
])
def test_bad_catalogs_fail_with_file_line_column_and_reason(text, line, col, message):
    with pytest.raises(ContentError) as err:
        parse_catalog(text, "content.yaml", segments=SEGMENT_IDS)
    assert message in str(err.value), str(err.value)
    assert (err.value.line, err.value.column) == (line, col), str(err.value)
