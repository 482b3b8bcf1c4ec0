"""Item statistics: v1 records, trending, neighbours, catalog records and files."""

from __future__ import annotations

import itertools
import math
import random

import orjson
import pytest

from operators.items import (HALF_LIFE_MS, MAX_NEIGHBORS, RECORD_VERSION, TREND_HALF_LIFE_MS, CatalogError,
                             ItemStats, load_catalog, parse_catalog_line)

T = 1_796_205_600_000
V1_RECORD = {"v": 1, "item_id": "tent-1", "category": "outdoor/tents", "category_ms": T, "price": 199.0,
             "price_ms": T, "score": 12.5, "ref_ms": T + 5, "views": 7, "carts": 2, "purchases": 1}


# -- records -----------------------------------------------------------------------------
def test_v1_record_loads_with_the_new_fields_at_their_defaults():
    item = ItemStats.from_record(dict(V1_RECORD))
    assert (item.item_id, item.category, item.price, item.score, item.ref_ms) == ("tent-1", "outdoor/tents", 199.0,
                                                                                  12.5, T + 5)
    assert (item.views, item.carts, item.purchases) == (7, 2, 1)
    assert item.brand is None and item.trend == 0.0 and item.factors == [] and item.neighbors == {}
    assert item.in_stock is None and item.catalog_ms == 0
    rec = item.to_record()
    assert rec["v"] == RECORD_VERSION == 2
    # Every v1 field keeps its name and value in the v2 record.
    assert {k: rec[k] for k in V1_RECORD if k != "v"} == {k: v for k, v in V1_RECORD.items() if k != "v"}


def test_v2_record_round_trips_through_json():
    item = ItemStats("tent-1", brand="MSR", factors=[0.5, -0.25], neighbors={"mat-1": 3.0}, in_stock=False,
                     stock_ms=9, catalog_ms=9)
    item.observe("purchase", T, category="outdoor/tents", price=10.0)
    assert ItemStats.from_record(orjson.loads(orjson.dumps(item.to_record()))) == item


def test_unknown_record_version_is_refused():
    with pytest.raises(ValueError, match="version 3"):
        ItemStats.from_record({**V1_RECORD, "v": 3})


def test_v1_positional_construction_still_means_the_same_fields():
    item = ItemStats("x", "c", 1, 2.0, 3, 4.0, 5, 6, 7, 8)
    assert (item.category_ms, item.price, item.price_ms, item.score, item.ref_ms) == (1, 2.0, 3, 4.0, 5)
    assert (item.views, item.carts, item.purchases) == (6, 7, 8)


# -- popularity and trending -----------------------------------------------------------
def _random_events(rng: random.Random, n: int) -> list[tuple[str, int, int]]:
    types = ["product_view", "add_to_cart", "purchase"]
    return [(rng.choice(types), T + rng.randrange(-6 * 3_600_000, 6 * 3_600_000), rng.randint(1, 3))
            for _ in range(n)]


def test_trending_and_popularity_do_not_depend_on_arrival_order():
    rng = random.Random(3)
    events = _random_events(rng, 200)
    results = []
    for _ in range(5):
        rng.shuffle(events)
        item = ItemStats("a")
        for etype, ts, qty in events:
            item.observe(etype, ts, quantity=qty)
        at = T + 7 * 3_600_000
        results.append((item.trending(at), item.popularity(at)))
    for trend, pop in results[1:]:
        assert trend == pytest.approx(results[0][0], rel=1e-9)
        assert pop == pytest.approx(results[0][1], rel=1e-9)
    assert results[0][0] > 0


def test_trending_halves_every_hour_and_popularity_every_day():
    item = ItemStats("a")
    item.observe("add_to_cart", T)
    assert item.trending(T) == pytest.approx(3.0)
    assert item.trending(T + TREND_HALF_LIFE_MS) == pytest.approx(1.5)
    assert item.trending(T + 3 * TREND_HALF_LIFE_MS) == pytest.approx(3.0 / 8)
    assert item.popularity(T + 3 * TREND_HALF_LIFE_MS) == pytest.approx(3.0 * 2 ** (-3 / 24))
    assert item.popularity(T + HALF_LIFE_MS) == pytest.approx(1.5)
    # An event an hour older counts half in trending at the reference time.
    item.observe("add_to_cart", T - TREND_HALF_LIFE_MS)
    assert item.trending(T) == pytest.approx(4.5)


def test_brand_latest_by_event_time_wins():
    a, b = ItemStats("a"), ItemStats("a")
    a.observe("product_view", 20, brand="New")
    a.observe("product_view", 10, brand="Old")
    b.observe("product_view", 10, brand="Old")
    b.observe("product_view", 20, brand="New")
    assert a.brand == b.brand == "New" and a.brand_ms == 20


# -- neighbours --------------------------------------------------------------------------
def test_neighbors_are_bounded_and_keep_the_strongest():
    item = ItemStats("a")
    for n in range(4 * MAX_NEIGHBORS):
        item.add_neighbor(f"n{n:03d}", float(n % (2 * MAX_NEIGHBORS)))
    assert len(item.neighbors) == MAX_NEIGHBORS
    # Distinct ids with fixed weights, each weight twice: exactly the strongest stay.
    assert set(item.neighbors) == {f"n{n:03d}" for n in range(4 * MAX_NEIGHBORS)
                                   if n % (2 * MAX_NEIGHBORS) >= 3 * MAX_NEIGHBORS // 2}


def test_neighbor_eviction_is_deterministic_by_weight_then_id():
    item = ItemStats("a")
    for n in range(MAX_NEIGHBORS):
        item.add_neighbor(f"n{n:02d}", 2.0)
    item.add_neighbor("zz", 2.0)  # a tie everywhere: the smallest id goes
    assert "n00" not in item.neighbors and "zz" in item.neighbors
    item.add_neighbor("aa", 1.0)  # weaker than everyone: dropped at once
    assert "aa" not in item.neighbors
    item.add_neighbor("n05", 1.0)  # existing ones accumulate
    assert item.neighbors["n05"] == 3.0
    # The same sequence gives the same map.
    again = ItemStats("a")
    for n in range(MAX_NEIGHBORS):
        again.add_neighbor(f"n{n:02d}", 2.0)
    for other, w in (("zz", 2.0), ("aa", 1.0), ("n05", 1.0)):
        again.add_neighbor(other, w)
    assert again.neighbors == item.neighbors


def _add_neighbor_reference(neighbors: dict[str, float], item_id: str, weight: float, cap: int) -> None:
    """The rule written plainly: add, then drop the smallest (weight, id) if over the cap."""
    neighbors[item_id] = neighbors.get(item_id, 0.0) + weight
    if len(neighbors) > cap:
        del neighbors[min(neighbors, key=lambda k: (neighbors[k], k))]


@pytest.mark.parametrize("seed", range(6))
def test_neighbor_updates_match_the_plain_rule_step_by_step(seed):
    # The remembered weakest neighbour must never change the outcome, nor the map's
    # order (it is the stored record's order): ties, repeats, zero weights, a list over
    # the cap (an older record) and a map replaced from outside included.
    rng = random.Random(seed)
    pool = [f"i{n:03d}" for n in range(rng.choice((70, 150, 400)))]
    item, ref = ItemStats("x"), {}
    for step in range(3000):
        if step == 1500:
            size = MAX_NEIGHBORS + (-3, 0, 5)[seed % 3]
            start = {f"old{n:03d}": float(rng.randint(1, 3)) for n in range(size)}
            item.neighbors, ref = dict(start), dict(start)
        other, w = rng.choice(pool), rng.choice((0.0, 1.0, 1.0, 2.0, 3.0, 0.5))
        item.add_neighbor(other, w)
        _add_neighbor_reference(ref, other, w, MAX_NEIGHBORS if len(ref) <= MAX_NEIGHBORS else len(ref) - 1)
        assert list(item.neighbors.items()) == list(ref.items()), step


# -- catalog -----------------------------------------------------------------------------
@pytest.mark.parametrize("line, problem", [
    (b'{"item_id": "a", ', "not valid JSON"),
    (b'["a"]', "expected a JSON object, got list"),
    (b'{"price": 3}', "missing 'item_id'"),
    (b'{"item_id": "  "}', "'item_id' must be a non-empty string"),
    (b'{"item_id": 7}', "'item_id' must be a non-empty string"),
    (b'{"item_id": "a", "price": "cheap"}', "'price' must be a number, got \"cheap\""),
    (b'{"item_id": "a", "price": true}', "'price' must be a number, got true"),
    (b'{"item_id": "a", "price": -1.5}', "'price' must not be negative, got -1.5"),
    (b'{"item_id": "a", "in_stock": "yes"}', "'in_stock' must be true or false, got \"yes\""),
    (b'{"item_id": "a", "in_stock": 1}', "'in_stock' must be true or false, got 1"),
    (b'{"item_id": "a", "colour": "red"}', "unknown key 'colour'"),
    (b'{"item_id": "a", "category": ""}', "'category' must be a non-empty string"),
])
def test_catalog_line_errors_name_path_line_and_problem(line, problem):
    with pytest.raises(CatalogError) as info:
        parse_catalog_line(line, 7, "data/catalog.jsonl")
    message = str(info.value)
    assert message.startswith("data/catalog.jsonl:7: ")
    assert problem in message


def test_catalog_line_is_normalised():
    assert parse_catalog_line(b'{"item_id": " a ", "category": "c", "brand": "B", "price": 3, "in_stock": false}',
                              1, "f") == {"item_id": "a", "category": "c", "brand": "B", "price": 3.0,
                                          "in_stock": False}
    assert parse_catalog_line(b'{"item_id": "a", "brand": null}', 1, "f") == {"item_id": "a"}


def test_load_catalog_skips_blank_lines_and_reports_the_bad_line(tmp_path):
    path = tmp_path / "catalog.jsonl"
    path.write_bytes(b'{"item_id": "a", "price": 2}\n\n{"item_id": "b", "in_stock": true}\n')
    assert load_catalog(path) == [{"item_id": "a", "price": 2.0}, {"item_id": "b", "in_stock": True}]
    path.write_bytes(b'{"item_id": "a"}\n\n{"item_id": "b", "price": -3}\n')
    with pytest.raises(CatalogError, match=rf"^{path}:3: 'price' must not be negative"):
        load_catalog(path)
    path.write_bytes(b'{"item_id": "a"}\n{"item_id": "b"}\n{"item_id": "a", "price": 1}\n')
    with pytest.raises(CatalogError, match=rf"^{path}:3: item 'a' already listed on line 1"):
        load_catalog(path)


def test_catalog_wins_only_when_newer():
    item = ItemStats("a")
    item.observe("product_view", 100, category="events-cat", price=10.0, brand="EventBrand")
    item.apply_catalog({"item_id": "a", "category": "old-cat", "price": 99.0, "brand": "OldBrand"}, at_ms=50)
    assert (item.category, item.price, item.brand) == ("events-cat", 10.0, "EventBrand")
    item.apply_catalog({"item_id": "a", "category": "cat-cat", "price": 20.0, "brand": "CatBrand"}, at_ms=150)
    assert (item.category, item.price, item.brand) == ("cat-cat", 20.0, "CatBrand")
    item.observe("product_view", 120, category="late-cat", price=11.0, brand="LateBrand")  # older than the catalog
    assert (item.category, item.price, item.brand) == ("cat-cat", 20.0, "CatBrand")
    item.observe("product_view", 200, category="new-cat", price=12.0, brand="NewBrand")
    assert (item.category, item.price, item.brand) == ("new-cat", 12.0, "NewBrand")
    assert item.catalog_ms == 150 and item.views == 3  # the catalog does not count as behaviour


def test_stock_latest_wins_and_records_without_it_leave_it_alone():
    item = ItemStats("a")
    item.apply_catalog({"item_id": "a", "in_stock": False}, at_ms=10)
    item.apply_catalog({"item_id": "a", "price": 5.0}, at_ms=20)
    assert item.in_stock is False and item.catalog_ms == 20
    item.apply_catalog({"item_id": "a", "in_stock": True}, at_ms=5)
    assert item.in_stock is False
    item.apply_catalog({"item_id": "a", "in_stock": True}, at_ms=30)
    assert item.in_stock is True


def test_catalog_and_events_agree_in_any_order():
    updates = [
        ("event", 100, {"category": "e1", "price": 10.0, "brand": "B1"}),
        ("catalog", 150, {"category": "c1", "in_stock": False}),
        ("catalog", 90, {"price": 50.0, "brand": "B0", "in_stock": True}),
        ("event", 160, {"price": 12.0}),
        ("catalog", 160, {"brand": "B2", "in_stock": True}),
    ]
    outcomes = set()
    for order in itertools.permutations(updates):
        item = ItemStats("a")
        for kind, ts, attrs in order:
            if kind == "event":
                item.observe("product_view", ts, **attrs)
            else:
                item.apply_catalog({"item_id": "a", **attrs}, at_ms=ts)
        outcomes.add((item.category, item.price, item.brand, item.in_stock, item.catalog_ms))
    assert outcomes == {("c1", 12.0, "B2", True, 160)}


def test_catalog_record_for_another_item_is_refused():
    with pytest.raises(ValueError, match="'b' applied to item 'a'"):
        ItemStats("a").apply_catalog({"item_id": "b"}, at_ms=1)


def test_zero_catalog_price_means_unknown():
    item = ItemStats("a", price=5.0, price_ms=1)
    item.apply_catalog({"item_id": "a", "price": 0.0}, at_ms=10)
    assert item.price == 5.0 and not math.isnan(item.price)
