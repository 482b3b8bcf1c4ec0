"""The segment language: parsing, typing, error positions, evaluation, timers, explain."""

from __future__ import annotations

import math
import re
from pathlib import Path

import orjson
import pytest

from operators.events import parse_event
from operators.features import WindowedCounters
from operators.segments import SegmentError, SegmentSet, empty, load_segments, parse_segments
from operators.synthetic import ClickstreamGenerator

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_773_600_000  # 2026-11-27T10:00:00Z, a whole second
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
COND_COL = 16  # column of a condition's first character in one()


class Facts:
    """A small stand-in for the profile: attributes, traits and scores from dicts."""

    def __init__(self, attributes=None, traits=None, scores=None, location=None):
        self.counters = WindowedCounters()
        self.attributes = attributes or {}
        self.traits = traits or {}
        self.scores = scores or {}
        self._location = location

    def attribute(self, name):
        return self.attributes.get(name)

    def trait(self, name):
        return self.traits.get(name)

    def score(self, name):
        return self.scores.get(name)

    def location(self):
        return self._location


_seq = iter(range(10**9))


def feed(facts: Facts, segs: SegmentSet, etype: str, ts: int, **fields) -> None:
    doc = {"event_id": f"e{next(_seq)}", "type": etype, "user_id": "u1", "timestamp": ts, **fields}
    event = parse_event(orjson.dumps(doc))
    assert not hasattr(event, "reason"), event
    facts.counters.observe(event, segs.plan)


def one(condition: str, sid: str = "s") -> str:
    return f"segments:\n  - id: {sid}\n    condition: {condition}\n"


def seg(condition: str) -> SegmentSet:
    return parse_segments(one(condition))


def holds(condition: str, facts: Facts | None = None, now: int = T0) -> bool:
    return seg(condition).evaluate(facts or Facts(), now)["s"]


def error(text: str) -> SegmentError:
    with pytest.raises(SegmentError) as info:
        parse_segments(text, "segs.yaml")
    return info.value


def cond_error(condition: str) -> tuple[int, int, str]:
    e = error(one(condition))
    assert (e.file, e.segment_id) == ("segs.yaml", "s")
    assert str(e) == f"segs.yaml:{e.line}:{e.column}: segment 's': {e.message}"
    return e.line, e.column, e.message


# -- errors: each with file, line, column and message ------------------------------------
@pytest.mark.parametrize("condition, offset, message", [
    ("cnt(purchase, 7d) > 1", 0, "unknown function 'cnt' (did you mean 'count'?)"),
    ("frobnicate(1)", 0, "unknown function 'frobnicate'; functions: count, sum, distinct, since, inactive, "
                         "within_km, segment, score, trait"),
    ("count(purchse, 7d) > 1", 6, "unknown event type 'purchse' (did you mean 'purchase'?)"),
    ("count(purchase, 7d) and 3", 0, "type mismatch: both sides of 'and' must be true/false, got a number "
                                     "(count(purchase, 7d)): compare it, e.g. count(purchase, 30d) >= 1"),
    ("urban and 3", 10, "type mismatch: both sides of 'and' must be true/false, got a number (3): "
                        "compare it, e.g. count(purchase, 30d) >= 1"),
    ("since(purchase) > 5", 18, "type mismatch: since(purchase) is a duration: compare it with a duration "
                                "literal such as 14d, not a number"),
    ("since(purchase) + 1 > 2", 0, "since(purchase) must be compared directly with a duration literal, "
                                   "e.g. since(purchase) >= 14d"),
    ("since(purchase)", 0, "since(purchase) must be compared directly with a duration literal, "
                           "e.g. since(purchase) >= 14d"),
    ('country == 3', 8, "type mismatch: cannot compare a string with a number (country == 3)"),
    ('orders > "3"', 7, "type mismatch: cannot compare a number with a string (orders > \"3\")"),
    ("count(purchase, 7d) > 7d", 20, "type mismatch: cannot compare a number with a duration "
                                     "(durations are windows or compared with since(..))"),
    ("orders", 0, "type mismatch: a condition must be true/false, got a number (orders): "
                  "compare it, e.g. count(purchase, 30d) >= 1"),
    ('country in [1, 2]', 8, "type mismatch: a string (country) cannot be in a list of numbers"),
    ("count(purchase, 120d) > 1", 16, "window 120d is unbounded: it exceeds the 90d limit"),
    ("count(purchase, 0s) > 1", 16, "window 0s is shorter than 1s"),
    ("count(purchase) > 1", 0, "unbounded window: count() needs a window, e.g. count(purchase, 30d)"),
    ("sum(purchase) > 1", 0, "unbounded window: sum() needs a window, e.g. sum(purchase, 30d)"),
    ("distinct(product_view, category) > 1", 0,
     "unbounded window: distinct() needs a window, e.g. distinct(product_view, category, 30d)"),
    ("count(purchase, 30) > 1", 16, "a window must be a duration literal such as 30d, got 30"),
    ("count(purchase, 7x) > 1", 17, "bad duration unit 'x' in '7x': use s, m, h, d or w (e.g. 30s, 10m, 2h, 7d, 1w)"),
    ("count(purchase, 1.5h) > 1", 16, "durations are whole numbers with a unit: '1.5h' (use a smaller unit)"),
    ('count(purchase, 7d, colour="red") > 1', 20,
     "unknown filter 'colour' for count(); filters: category, brand, item, channel, device, min_price, max_price"),
    ('count(purchase, 7d, categry="x") > 1', 20, "unknown filter 'categry' for count() (did you mean 'category'?)"),
    ("count(purchase, 7d, category=3) > 1", 29, 'filter category= needs a string literal, e.g. category="outdoor/tents"'),
    ('count(purchase, 7d, min_price=9, min_price=3) > 1', 33, "filter 'min_price' given twice"),
    ("count(purchase, 7d, min_price=500, max_price=100) > 1", 35,
     "series 'purchase|min_price=500|max_price=100': min_price is above max_price"),
    ("count(purchase, 7d, 3) > 1", 0,
     "wrong number of arguments: count() takes 2 plus filters, got 3: e.g. count(purchase, 30d)"),
    ("within_km(1, 2)", 0, "wrong number of arguments: within_km() takes 3, got 2: within_km(40.71, -74.0, 10)"),
    ("within_km(95, 2, 1)", 10, "within_km() needs a latitude number in [-90, 90], got 95"),
    ('score("propensity", "churn") > 1', 0,
     'wrong number of arguments: score() takes 1, got 2: score("propensity")'),
    ("since(purchase, 7d) >= 1d", 0,
     "wrong number of arguments: since() takes 1 plus filters, got 2: e.g. since(purchase) >= 14d"),
    ("distinct(product_view, colour, 7d) > 1", 23, "distinct() counts one of item_id, category, brand, got colour"),
    ('count("purchase", 7d) > 1', 6,
     'count() needs an event type name first, e.g. count(purchase, ...), got "purchase"'),
    ("ordrs > 1", 0, "unknown attribute 'ordrs' (did you mean 'orders'?)"),
    ("purchase", 0, "'purchase' is an event type: use it in a function, e.g. count(purchase, 30d)"),
    ("orders() > 1", 0, "'orders' is an attribute, not a function: write orders without ()"),
    ('score("propensty") > 0.5', 6, "unknown score 'propensty' (did you mean 'propensity'?); scores: propensity, churn"),
    ("inactive(14)", 9, "inactive() needs a duration literal such as 14d, got 14"),
    ("count(purchase, 7d) >= 1 >= 0", 25, "comparisons cannot be chained: use 'and'"),
    ("orders = 1", 7, "unexpected '=': write '==' to compare"),
    ("orders > 1 && urban", 11, "unexpected '&&': write and"),
    ("(orders > 1", 11, "expected ')', got end of condition"),
    ('country == "DE', 11, "unterminated string"),
    ("orders >", 8, "expected a value, a name or '(', got end of condition"),
    ("orders > 1 $", 11, "unexpected character '$'"),
])
def test_condition_errors_point_at_the_problem(condition, offset, message):
    assert cond_error(condition) == (3, COND_COL + offset, message)


def test_errors_in_quoted_and_block_scalars_point_into_the_file():
    e = error('segments:\n  - id: s\n    condition: "count(purchse, 7d) > 1"\n')
    assert (e.line, e.column) == (3, COND_COL + 1 + 6)
    e = error("segments:\n  - id: s\n    condition: 'trait(''x'') == 1 and ordrs > 1'\n")
    assert (e.line, e.column, e.message) == (3, COND_COL + 23, "unknown attribute 'ordrs' (did you mean 'orders'?)")
    text = ("segments:\n  - id: s\n    condition: |\n      count(purchase, 7d) >= 1\n"
            "        and count(add_to_cart, 1d, colour=\"red\") >= 1\n")
    e = error(text)
    assert (e.line, e.column) == (5, 9 + 4 + len("count(add_to_cart, 1d, "))
    text = "segments:\n  - id: s\n    condition: >-\n      orders >= 1\n      and since(purchase) > 3\n"
    e = error(text)
    assert (e.line, e.column) == (5, 7 + len("and since(purchase) > "))
    text = "segments:\n  - id: s\n    condition: orders >= 1\n      and ordrs > 1\n"  # plain, two lines
    e = error(text)
    assert (e.line, e.column, e.message) == (4, 11, "unknown attribute 'ordrs' (did you mean 'orders'?)")


def test_segment_reference_errors_and_cycles():
    e = error('segments:\n  - id: vip\n    condition: orders > 9\n'
              '  - id: s\n    condition: segment("vpi")\n')
    assert (e.segment_id, e.line, e.column) == ("s", 5, COND_COL + 8)
    assert e.message == "segment() refers to an unknown segment 'vpi' (did you mean 'vip'?)"
    e = error('segments:\n  - id: a\n    condition: orders > 1 and segment("b")\n'
              '  - id: b\n    condition: segment("a") or urban\n')
    assert (e.segment_id, e.line, e.column, e.message) == ("a", 3, COND_COL + 15, "cycle between segments: a → b → a")
    e = error('segments:\n  - id: a\n    condition: segment("a")\n')
    assert (e.line, e.column, e.message) == (3, COND_COL, "cycle between segments: a → a")
    e = error('segments:\n  - id: a\n    condition: segment("b")\n  - id: b\n    condition: segment("c")\n'
              '  - id: c\n    condition: segment("b")\n')
    assert (e.segment_id, e.line, e.message) == ("b", 5, "cycle between segments: b → c → b")


@pytest.mark.parametrize("text, where, message", [
    ("segments:\n  - id: a\n    condition: urban\n  - id: a\n    condition: urban\n",
     (None, 4, 9), "duplicate segment id 'a' (first defined on line 2)"),
    ("segments:\n  - description: x\n    condition: urban\n", (None, 2, 5), "segment #1 has no 'id'"),
    ("segments:\n  - id: a\n    description: x\n", ("a", 2, 5), "missing 'condition'"),
    ("segments:\n  - id: a\n    condition: ''\n", ("a", 3, 16), "'condition' is empty"),
    ("segments:\n  - id: Bad-Id\n    condition: urban\n", (None, 2, 9),
     "segment id 'Bad-Id' must match [a-z][a-z0-9_]{0,63}"),
    ("segments:\n  - id: a\n    condition: urban\n    marketing: maybe\n", ("a", 4, 16),
     "'marketing' must be true or false"),
    ("segments:\n  - id: a\n    condition: urban\n    conditon: x\n", ("a", 4, 5),
     "unknown key 'conditon' in segment #1 (did you mean 'condition'?)"),
    ("segments:\n  - id: a\n    condition: urban\n    owner: x\n", ("a", 4, 5),
     "unknown key 'owner' in segment #1; keys: id, description, condition, marketing"),
    ("segments:\n  - id: a\n    condition: urban\n    condition: urban\n", ("a", 4, 5),
     "duplicate key 'condition' in segment #1"),
    ("segments:\n  - id: a\n    condition: [urban]\n", ("a", 3, 16), "'condition' must be a string"),
    ("segmnts: []\n", (None, 1, 1), "unexpected top-level key 'segmnts' (did you mean 'segments'?): "
                                    "the only key is 'segments'"),
    ("segments: []\nversion: 2\n", (None, 2, 1), "unexpected top-level key 'version': the only key is 'segments'"),
    ("segments: {a: 1}\n", (None, 1, 11), "'segments' must be a list of segments"),
    ("- a\n", (None, 1, 1), "expected a mapping with a 'segments' list at the top level"),
    ("", (None, 1, 1), "empty file: expected a mapping with a 'segments' list"),
    ("segments:\n  - urban\n", (None, 2, 5), "segment #1 must be a mapping with 'id' and 'condition'"),
    ("segments:\n  - id: a\n    condition: [unclosed\n", (None, 4, 1),
     "invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("segments:\n  - id: a\n  condition: x\n", (None, 3, 3), "invalid YAML: expected <block end>, but found '?'"),
])
def test_file_errors(text, where, message):
    e = error(text)
    assert (e.segment_id, e.line, e.column) == where
    assert e.message == message
    assert e.file == "segs.yaml"
    prefix = "segs.yaml:%d:%d: " % where[1:] + ("" if where[0] is None else f"segment {where[0]!r}: ")
    assert str(e) == prefix + message


def test_size_limits_are_errors_not_crashes():
    assert cond_error("orders" + " + 1" * 150 + " > 0")[2] == "condition has more than 300 tokens: split it into segments"
    assert cond_error("not " * 70 + "urban")[2] == "condition is nested more than 64 levels deep"
    assert cond_error("(" * 70 + "urban" + ")" * 70)[2] == "condition is nested more than 64 levels deep"
    assert holds("orders" + " + 1" * 140 + " > 140", Facts({"orders": 1}))
    assert holds(" or ".join(["urban"] * 60 + ["orders > 0"]), Facts({"orders": 1}))


def test_load_segments_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(one("count(purchase, 91d) > 1"))
    with pytest.raises(SegmentError, match=r"bad\.yaml:3:32: segment 's': window 91d is unbounded"):
        load_segments(path)
    path.write_bytes(b"segments: \xff\n")
    with pytest.raises(SegmentError, match=r"bad\.yaml:1:1: not UTF-8"):
        load_segments(path)


# -- the set: order, versions, plan -----------------------------------------------------
def test_dependency_order_versions_and_plan():
    segs = parse_segments('''
segments:
  - id: vip
    description: big and frequent
    condition: segment("big") and orders >= 5
  - id: big
    condition: sum(purchase, 90d, category="outdoor") >= 1000 or distinct(purchase, item_id, 30d) > 3
    marketing: false
  - id: lapsed
    condition: since(purchase) >= 30d
''')
    assert [s.id for s in segs.segments] == ["big", "vip", "lapsed"]
    vip, big = segs.by_id["vip"], segs.by_id["big"]
    assert (vip.depends_on, vip.description, vip.marketing, big.marketing) == (("big",), "big and frequent", True, False)
    assert len(vip.version) == 12 and int(vip.version, 16) >= 0
    # The version ignores layout, follows the condition and the marketing flag.
    again = parse_segments(one('segment("big")  and\n      orders>=5', "vip") + "  - id: big\n    condition: urban\n")
    assert again.by_id["vip"].version == vip.version
    flagged = parse_segments(one('segment("big") and orders >= 5', "vip") + "    marketing: false\n"
                             "  - id: big\n    condition: urban\n")
    assert flagged.by_id["vip"].version != vip.version
    plan = segs.plan
    assert plan.windows["purchase|category=outdoor"] == {90 * DAY}
    assert plan.distinct_attrs["purchase"] == {"item_id"} and plan.windows["purchase"] == {30 * DAY}
    assert "purchase" in plan.specs
    assert empty().segments == () and empty().evaluate(Facts(), T0) == {} and empty().next_change(Facts(), T0) is None


def test_example_file_loads_and_evaluates_synthetic_traffic():
    segs = load_segments(ROOT / "deploy" / "segments.yaml")
    ids = [s.id for s in segs.segments]
    assert len(ids) == 20
    for sid in ("cart_abandoner", "cart_abandoned_30m", "high_value_outdoor_urban", "bought_hiking_boots_30d",
                "viewed_tents_5x", "inactive_14d", "vip"):
        assert sid in segs.by_id
    assert ids.index("big_spender_90d") < ids.index("vip")
    assert segs.by_id["cart_abandoner"].condition == "count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0"
    gen = ClickstreamGenerator(seed=3, users=5, invalid_rate=0.0)
    facts = Facts({"orders": 3, "total_spend": 900.0, "aov": 300.0, "cart_items": 2, "cart_value": 250.0,
                   "country": "FR"}, {"age_band": "25-34"}, {"propensity": 0.9}, (45.92, 6.87))
    seen: set[str] = set()
    for i in range(3000):
        _, raw = gen.next_record(T0 + i * 20_000)
        facts.counters.observe(parse_event(raw), segs.plan)
        now = T0 + i * 20_000
        got = segs.evaluate(facts, now)
        seen |= {k for k, v in got.items() if v}
        assert set(got) == set(ids)
    assert len(seen) >= 5, seen
    nxt = segs.next_change(facts, now)
    assert nxt is not None and nxt > now


# -- evaluation ---------------------------------------------------------------------------
def test_cart_abandoner_exits_when_the_add_to_cart_bucket_leaves_the_window():
    segs = seg("count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0")
    facts = Facts()
    feed(facts, segs, "add_to_cart", T0 + 400, item_id="sku-1", price=10)
    assert segs.evaluate(facts, T0 + 400) == {"s": True}
    exit_at = segs.next_change(facts, T0 + 400)
    assert exit_at == T0 + 10 * MIN  # bucket T0 (1 s resolution) + 10 min
    assert segs.evaluate(facts, exit_at - 1) == {"s": True}
    assert segs.evaluate(facts, exit_at) == {"s": False}
    assert segs.next_change(facts, exit_at) is None
    feed(facts, segs, "add_to_cart", T0 + 5 * MIN, item_id="sku-2", price=10)
    feed(facts, segs, "purchase", T0 + 6 * MIN, item_id="sku-2", price=10)
    assert segs.evaluate(facts, T0 + 6 * MIN) == {"s": False}


def test_since_enters_exactly_at_last_plus_duration():
    segs = seg("count(add_to_cart, 2h) >= 1 and since(add_to_cart) >= 30m and since(purchase) >= 30m")
    facts = Facts()
    last = T0 + 1234
    feed(facts, segs, "add_to_cart", last, item_id="sku-1", price=10)
    assert segs.evaluate(facts, last) == {"s": False}
    assert segs.next_change(facts, last) == last + 30 * MIN
    assert segs.evaluate(facts, last + 30 * MIN - 1) == {"s": False}
    assert segs.evaluate(facts, last + 30 * MIN) == {"s": True}
    # then it lapses with the 2 h window (minute buckets): at bucket + 2 h
    nxt = segs.next_change(facts, last + 30 * MIN)
    assert nxt == T0 + 2 * HOUR
    assert segs.evaluate(facts, nxt - 1) == {"s": True} and segs.evaluate(facts, nxt) == {"s": False}


@pytest.mark.parametrize("op, flips_at, before, after", [
    (">=", 0, False, True), ("<", 0, True, False), (">", 1, False, True), ("<=", 1, True, False),
])
def test_since_comparisons_flip_at_the_documented_instant(op, flips_at, before, after):
    segs = seg(f"since(purchase) {op} 1h")
    facts = Facts()
    last = T0 + 777
    feed(facts, segs, "purchase", last, item_id="a", price=1)
    at = last + HOUR + flips_at
    assert segs.next_change(facts, last) == at
    assert segs.evaluate(facts, at - 1)["s"] is before
    assert segs.evaluate(facts, at)["s"] is after
    assert segs.next_change(facts, at) is None
    flipped = seg(f"1h {op.replace('<', '#').replace('>', '<').replace('#', '>')} since(purchase)")
    assert flipped.evaluate(facts, at - 1)["s"] is before and flipped.evaluate(facts, at)["s"] is after


def test_since_without_any_event():
    facts = Facts()
    assert holds("since(purchase) > 1d", facts) and holds("since(purchase) >= 1d", facts)
    for op in ("<", "<=", "==", "!="):
        assert not holds(f"since(purchase) {op} 1d", facts)
    assert holds("inactive(14d)", facts)
    assert seg("since(purchase) >= 1d").next_change(facts, T0) is None


def test_inactive_is_since_any():
    segs = seg("inactive(14d)")
    facts = Facts()
    feed(facts, segs, "page_view", T0)
    assert not segs.evaluate(facts, T0 + 14 * DAY - 1)["s"]
    assert segs.next_change(facts, T0) == T0 + 14 * DAY
    assert segs.evaluate(facts, T0 + 14 * DAY)["s"]


def test_sum_distinct_and_filters():
    segs = parse_segments('''
segments:
  - id: spend
    condition: sum(purchase, 7d) == 45 and sum(purchase, 7d, category="outdoor") == 40
  - id: kinds
    condition: distinct(product_view, category, 1d) == 2 and distinct(product_view, item_id, 1d) == 3
  - id: cheap
    condition: count(product_view, 1d, max_price=20) == 2 and count(product_view, 1d, min_price=20.5) == 1
  - id: ctx
    condition: count(any, 1d, channel="app") == 1 and count(product_view, 1d, device="mobile") == 0
  - id: item
    condition: count(product_view, 1d, item="sku-3", brand="Acme") == 1
''')
    facts = Facts()
    feed(facts, segs, "purchase", T0, items=[
        {"item_id": "t", "category": "outdoor/tents", "price": 20, "quantity": 2},
        {"item_id": "c", "category": "grocery/coffee", "price": 5}], context={"channel": "app"})
    feed(facts, segs, "product_view", T0 + 1, item_id="sku-1", category="outdoor/tents", price=10)
    feed(facts, segs, "product_view", T0 + 2, item_id="sku-2", category="toys/lego", price=20)
    feed(facts, segs, "product_view", T0 + 3, item_id="sku-3", category="toys/lego", price=30, brand="Acme")
    assert segs.evaluate(facts, T0 + 10) == {"spend": True, "kinds": True, "cheap": True, "ctx": True, "item": True}


def test_attributes_and_null_semantics():
    facts = Facts({"orders": 0, "aov": None, "country": "DE", "urban": None, "total_spend": 10.0})
    assert holds('country == "DE" and country in ["DE", "AT"] and country not in ["FR"]', facts)
    assert not holds("urban", facts) and not holds("not urban", facts)
    assert not holds("urban == false", facts) and not holds("urban != true", facts)
    assert not holds("aov > 0", facts) and not holds("aov <= 0", facts) and not holds("aov != 1", facts)
    assert holds("not (aov > 0)", facts)
    assert not holds("aov + 1 > 0", facts) and not holds("-aov < 0", facts)
    assert not holds("total_spend / orders > 0", facts)  # division by zero is null
    assert not holds("city in [\"Berlin\"]", facts) and not holds("city not in [\"Berlin\"]", facts)
    assert holds("total_spend * 2 - 5 == 15 and -total_spend < 0 and (1 + 2) * 3 == 9", facts)
    assert holds("urban or orders == 0", facts) and not holds("urban and orders == 0", facts)
    assert holds("true") and not holds("false") and holds("not false and 2 > 1")
    assert holds("urban", Facts({"urban": True})) and holds("not urban", Facts({"urban": False}))


def test_traits_and_scores():
    facts = Facts(traits={"age_band": "25-34", "vip": True, "kids": 2}, scores={"propensity": 0.71})
    assert holds('score("propensity") > 0.7', facts)
    assert not holds('score("churn") > 0.1', facts) and not holds('score("churn") <= 0.1', facts)
    assert holds('trait("age_band") in ["18-24", "25-34"] and trait("age_band") == "25-34"', facts)
    assert holds('trait("vip") and trait("vip") == true and trait("kids") >= 2 and trait("kids") * 2 == 4', facts)
    assert not holds('trait("vip") == 1', facts)  # kinds must match: true is not 1
    assert not holds('trait("kids") == "2"', facts)
    assert not holds('trait("missing") == "x"', facts) and not holds('not trait("missing")', facts)
    assert not holds('trait("age_band")', facts)  # a string is not true


def test_within_km_uses_haversine_and_is_false_without_a_location():
    # 0.1 degree of latitude on the 6371.0088 km sphere
    d = 6371.0088 * math.radians(0.1)
    assert holds(f"within_km(0, 0, {d + 0.001:.4f})", Facts(location=(0.1, 0.0)))
    assert not holds(f"within_km(0, 0, {d - 0.001:.4f})", Facts(location=(0.1, 0.0)))
    assert not holds("within_km(0, 0, 20000)", Facts())
    assert holds("within_km(40.71, -74.0, 10)", Facts(location=(40.758, -73.9855)))  # Times Square
    assert not holds("within_km(40.71, -74.0, 10)", Facts(location=(40.2206, -74.7597)))  # Trenton


def test_segment_references_read_this_pass():
    segs = parse_segments('''
segments:
  - id: both
    condition: segment("buyer") and segment("local")
  - id: buyer
    condition: orders >= 1
  - id: local
    condition: city == "Berlin"
  - id: neither
    condition: not segment("buyer") and not segment("local")
''')
    assert [s.id for s in segs.segments] == ["buyer", "local", "both", "neither"]
    assert segs.evaluate(Facts({"orders": 2, "city": "Berlin"}), T0) == \
        {"buyer": True, "local": True, "both": True, "neither": False}
    assert segs.evaluate(Facts({"orders": 0}), T0) == {"buyer": False, "local": False, "both": False, "neither": True}


def test_next_change_is_the_earliest_over_all_segments():
    segs = parse_segments('''
segments:
  - id: a
    condition: count(product_view, 1h) >= 1
  - id: b
    condition: since(add_to_cart) > 5m
  - id: c
    condition: orders > 1
''')
    facts = Facts()
    assert segs.next_change(facts, T0) is None
    feed(facts, segs, "product_view", T0, item_id="x")
    feed(facts, segs, "add_to_cart", T0 + 10 * MIN, item_id="x")
    assert segs.next_change(facts, T0 + 10 * MIN) == T0 + 15 * MIN + 1
    assert segs.next_change(facts, T0 + 15 * MIN + 1) == T0 + HOUR
    assert segs.next_change(facts, T0 + HOUR) is None


def test_explain_and_values():
    segs = parse_segments('''
segments:
  - id: big
    condition: orders >= 5
  - id: s
    condition: >-
      segment("big") or (count(add_to_cart, 10m) >= 1 and since(purchase) >= 1d
      and within_km(52.52, 13.405, 10) and trait("age_band") == "25-34" and orders > 1 and orders < 9)
''')
    facts = Facts({"orders": 2}, {"age_band": "25-34"}, location=(52.52, 13.4))
    feed(facts, segs, "add_to_cart", T0, item_id="x", price=5)
    feed(facts, segs, "purchase", T0 - 2 * DAY, item_id="y", price=5)
    assert segs.explain("s", facts, T0 + 1000) == [
        ('segment("big")', False),
        ("count(add_to_cart, 10m)", 1),
        ("since(purchase)", 2 * DAY + 1000),
        ("within_km(52.52, 13.405, 10)", True),
        ('trait("age_band")', "25-34"),
        ("orders", 2),
        ("result", True),
    ]
    expected = {'segment("big")': False, "count(add_to_cart, 10m)": 1, "since(purchase)": 2 * DAY + 1000,
                "within_km(52.52, 13.405, 10)": True, 'trait("age_band")': "25-34", "orders": 2}
    assert segs.values("s", facts, T0 + 1000) == expected
    memo = segs.evaluate(facts, T0 + 1000)
    assert segs.values("s", facts, T0 + 1000, memo) == expected
    assert memo == {"big": False, "s": True}  # values() does not write into the caller's dict
    with pytest.raises(KeyError):
        segs.explain("nope", facts, T0)


def test_shared_counter_terms_are_read_once_per_pass():
    segs = parse_segments(one("count(purchase, 7d) >= 1", "a") + "  - id: b\n    condition: count(purchase, 7d) == 0\n")
    facts = Facts()
    calls = []
    real = facts.counters.count_at

    class Spy:
        def count_at(self, *args):
            calls.append(args)
            return real(*args)
    facts.counters = Spy()
    assert segs.evaluate(facts, T0) == {"a": False, "b": True}
    assert len(calls) == 1


def test_module_never_evaluates_source_text():
    for name in ("segments.py", "segment_parser.py"):
        src = (ROOT / "operators" / name).read_text()
        assert not re.search(r"(?<![\w.])(eval|exec|compile|__import__)\(", src), name


@pytest.mark.parametrize("seed", range(4))
def test_next_change_after_events_equals_recomputing_every_window(seed):
    """``next_change`` remembers its windows' part and recomputes only the series observed
    since: over a random stream (late events, idle gaps, instants reached and passed,
    a merge), every answer equals the one of counters that never remembered anything."""
    import random

    rng = random.Random(seed)
    segs = load_segments(ROOT / "deploy" / "segments.yaml")
    gen = ClickstreamGenerator(seed=seed, users=3, invalid_rate=0.0)
    facts = Facts()
    now = T0
    for i in range(1500):
        step = rng.choice([1_000, 20_000, 5 * MIN, 2 * HOUR]) if rng.random() < 0.9 else rng.choice([DAY, 15 * DAY])
        now += step
        ts = now - (rng.randrange(10 * MIN) if rng.random() < 0.1 else 0)  # some late events
        _, raw = gen.next_record(ts)
        facts.counters.observe(parse_event(raw), segs.plan)
        if rng.random() < 0.02:  # stitching: the memo must not survive a merge
            other = Facts()
            for _ in range(3):
                other.counters.observe(parse_event(gen.next_record(now - rng.randrange(DAY))[1]), segs.plan)
            facts.counters.absorb(other.counters)
        if rng.random() < 0.2:
            continue  # several events before the next call
        fresh = Facts()
        fresh.counters = WindowedCounters.from_record(facts.counters.to_record())
        got = segs.next_change(facts, now)
        assert got == segs.next_change(fresh, now), i
        if got is not None and rng.random() < 0.3:  # time reaches the instant (or passes it)
            now = got + rng.choice([0, 0, 1, HOUR])
            fresh = Facts()
            fresh.counters = WindowedCounters.from_record(facts.counters.to_record())
            assert segs.next_change(facts, now) == segs.next_change(fresh, now), i


def test_a_comparison_with_a_number_wakes_the_profile_only_where_it_flips():
    """A busy profile's one-second buckets leave an hour's window every second; time
    changes ``count(..) >= n`` only when the n-th newest bucket leaves."""
    facts, plan = Facts(), seg("count(add_to_cart, 1h) >= 1 and distinct(add_to_cart, item_id, 1h) >= 1")
    for k in range(100):  # one add-to-cart a second: buckets T0 .. T0 + 99 s
        feed(facts, plan, "add_to_cart", T0 + k * 1000, item_id="sku-1", price=10)
    now = T0 + 100_000
    assert seg("count(add_to_cart, 1h) >= 1").next_change(facts, now) == T0 + 99_000 + HOUR
    assert seg("count(add_to_cart, 1h) >= 3").next_change(facts, now) == T0 + 97_000 + HOUR
    assert seg("count(add_to_cart, 1h) > 100").next_change(facts, now) is None  # false, and values only fall
    assert seg("count(add_to_cart, 1h) == 2").next_change(facts, now) == T0 + 97_000 + HOUR  # reaches 2
    assert seg("count(add_to_cart, 1h) == 0").next_change(facts, now) == T0 + 99_000 + HOUR
    assert seg("sum(add_to_cart, 1h) < 25").next_change(facts, now) == T0 + 97_000 + HOUR  # 30 -> 20
    # Reads that are not compared with a number change with every bucket that leaves.
    assert seg("count(add_to_cart, 1h) + 0 >= 1").next_change(facts, now) == T0 + HOUR
    assert seg("distinct(add_to_cart, item_id, 1h) >= 1").next_change(facts, now) == T0 + HOUR
    # Each instant found is where the membership changes, and nothing changes before it.
    for cond in ("count(add_to_cart, 1h) >= 3", "count(add_to_cart, 1h) == 2", "sum(add_to_cart, 1h) < 25"):
        segs = seg(cond)
        at = segs.next_change(facts, now)
        assert segs.evaluate(facts, at - 1) == segs.evaluate(facts, now) != segs.evaluate(facts, at), cond
