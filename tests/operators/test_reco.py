"""Online recommendation learning: matrix factorization, negatives, co-visitation, affinities."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from operators.items import MAX_NEIGHBORS, ItemStats
from operators.profile import Profile
from operators.reco import (BOUGHT_TOGETHER_WEIGHT, INTERACTION_WEIGHTS, MAX_NORM, MatrixFactorization, NegativePool,
                            co_visit, content_affinity)

MIN = 60_000
ROOT = Path(__file__).resolve().parents[2]


# -- matrix factorization ----------------------------------------------------------------
def _own_group_pair_share(mf, users, groups, items_a, items_b) -> float:
    wins = total = 0
    for user, group in zip(users, groups):
        own, other = (items_a, items_b) if group == 0 else (items_b, items_a)
        for i in own:
            for j in other:
                wins += mf.score(user.factors, i.factors) > mf.score(user.factors, j.factors)
                total += 1
    return wins / total


def test_learns_planted_structure_of_two_groups():
    rng = random.Random(11)
    mf = MatrixFactorization()
    users = [Profile(f"user:u{i}") for i in range(40)]
    groups = [i % 2 for i in range(40)]
    items_a = [ItemStats(f"a{i}") for i in range(25)]
    items_b = [ItemStats(f"b{i}") for i in range(25)]
    catalog = {s.item_id: s for s in items_a + items_b}
    for s in catalog.values():  # factors exist from the start, so "before" can be measured
        s.factors = mf.init(s.item_id)
    for u in users:
        u.factors = mf.init(u.profile_id)
    before = _own_group_pair_share(mf, users, groups, items_a, items_b)
    pool = NegativePool(size=300)
    for step in range(15_000):
        k = rng.randrange(len(users))
        item = rng.choice(items_a if groups[k] == 0 else items_b)
        etype = rng.choices(list(INTERACTION_WEIGHTS), (8, 3, 1))[0]
        pool.add(item.item_id)
        negs = [catalog[i] for i in pool.sample(mf.negatives, key=f"e{step}", exclude=item.item_id)]
        mf.learn(users[k], item, INTERACTION_WEIGHTS[etype], negs)
    after = _own_group_pair_share(mf, users, groups, items_a, items_b)
    assert 0.3 < before < 0.7, before  # random vectors: no structure yet
    assert after > 0.9, after


def test_no_nan_after_100k_updates_with_extreme_weights():
    rng = random.Random(5)
    mf = MatrixFactorization(learning_rate=1.0, regularization=0.0)  # deliberately aggressive
    users = [Profile(f"user:u{i}") for i in range(5)]
    users[0].factors = [math.nan] * mf.dim  # a corrupt stored vector is replaced, not spread
    users[1].factors = [1e300] * mf.dim
    items = [ItemStats(f"i{i}") for i in range(12)]
    items[0].factors = [math.inf] + [0.0] * (mf.dim - 1)
    weights = [1.0, 3.0, 5.0, 1e6, 1e300, 1e-300, math.inf, -math.inf, math.nan, 0.0, -5.0]
    for _ in range(100_000):
        user = rng.choice(users)
        pos, *negs = rng.sample(items, 3)
        mf.learn(user, pos, rng.choice(weights), negs)
    for vec in [u.factors for u in users] + [i.factors for i in items]:
        assert len(vec) == mf.dim
        assert all(math.isfinite(x) for x in vec)
        assert math.sqrt(sum(x * x for x in vec)) <= MAX_NORM * (1 + 1e-9)


def test_invalid_weights_and_missing_negatives_change_nothing():
    mf = MatrixFactorization(dim=4)
    user, item, neg = Profile("u"), ItemStats("i"), ItemStats("j")
    for weight in (math.nan, math.inf, 0.0, -1.0):
        mf.learn(user, item, weight, [neg])
    mf.learn(user, item, 5.0, [])
    mf.learn(user, item, 5.0, [ItemStats("i")])  # the positive itself is no negative
    assert user.factors == item.factors == neg.factors == []
    mf.learn(user, item, 5.0, [neg])
    assert len(user.factors) == len(item.factors) == len(neg.factors) == 4
    assert mf.score(user.factors, item.factors) > mf.score(user.factors, neg.factors)


def test_init_is_deterministic_and_spread():
    mf = MatrixFactorization(dim=40, init_scale=0.1)  # 40 > 16: several hash blocks
    a = mf.init("sku-1")
    assert a == MatrixFactorization(dim=40, init_scale=0.1).init("sku-1")
    assert len(a) == 40 and len(set(a)) == 40
    assert a != mf.init("sku-2")
    assert a[:16] != a[16:32]
    values = [x for n in range(200) for x in mf.init(f"sku-{n}")]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((x - mean) ** 2 for x in values) / len(values))
    assert abs(mean) < 0.01 and std == pytest.approx(0.1, rel=0.05)
    assert max(abs(x) for x in values) <= 0.1 * math.sqrt(3)


def test_init_is_the_same_in_another_process():
    code = ("import json; from operators.reco import MatrixFactorization; "
            "print(json.dumps(MatrixFactorization().init('user:u42')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=ROOT)
    assert json.loads(out.stdout) == MatrixFactorization().init("user:u42")


def test_score_of_missing_factors_is_zero():
    mf = MatrixFactorization(dim=2)
    assert mf.score([], [1.0, 2.0]) == 0.0 and mf.score([1.0, 2.0], []) == 0.0
    assert mf.score([1.0, 2.0], [3.0, 4.0]) == 11.0


@pytest.mark.parametrize("kwargs", [{"dim": 0}, {"learning_rate": 0.0}, {"learning_rate": math.nan},
                                    {"regularization": -1.0}, {"negatives": 0}, {"init_scale": 0.0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        MatrixFactorization(**kwargs)


# -- negative pool -----------------------------------------------------------------------
def _pool(ids, size=2000):
    pool = NegativePool(size)
    for i in ids:
        pool.add(i)
    return pool


def test_negative_pool_is_deterministic_and_excludes_the_positive():
    ids = [f"i{n % 50}" for n in range(500)]
    pool, twin = _pool(ids), _pool(ids)
    samples = set()
    for k in range(300):
        got = pool.sample(3, key=f"event-{k}", exclude="i7")
        assert got == twin.sample(3, key=f"event-{k}", exclude="i7")
        assert len(got) == 3 and len(set(got)) == 3 and "i7" not in got
        samples.add(tuple(got))
    assert len(samples) > 250  # different keys, different samples


def test_negative_pool_with_too_few_other_items_returns_what_there_is():
    assert _pool(["a", "a", "a"]).sample(2, key="k", exclude="a") == []
    assert _pool(["a", "b", "a"]).sample(2, key="k", exclude="a") == ["b"]
    assert NegativePool().sample(2, key="k", exclude="a") == []


def test_negative_pool_is_a_bounded_ring():
    pool = _pool([f"i{n}" for n in range(10)], size=4)
    assert len(pool) == 4 and sorted(pool.items()) == ["i6", "i7", "i8", "i9"]
    with pytest.raises(ValueError):
        NegativePool(size=0)


# -- co-visitation -----------------------------------------------------------------------
class Items(dict):
    def get_stats(self, item_id: str) -> ItemStats:
        return self.setdefault(item_id, ItemStats(item_id))


def test_co_visit_links_both_directions_and_reports_changed_items():
    items = Items()
    recent = [[0, "a", "product_view"], [MIN, "b", "add_to_cart"], [2 * MIN, "c", "add_to_cart"]]
    assert co_visit(recent, items.get_stats) == {"a", "b", "c"}
    assert items["c"].neighbors == {"a": 1.0, "b": 2.0}  # the weaker of the two interactions
    assert items["a"].neighbors == {"c": 1.0} and items["b"].neighbors == {"c": 2.0}


def test_co_visit_respects_the_session_gap():
    items = Items()
    gap = 30 * MIN
    recent = [[0, "old", "product_view"], [1, "edge", "product_view"], [gap + 1, "cur", "product_view"]]
    assert co_visit(recent, items.get_stats, session_gap_ms=gap) == {"cur", "edge"}
    assert "old" not in items and set(items["cur"].neighbors) == {"edge"}
    assert co_visit([[0, "x", "product_view"], [gap + 1, "y", "product_view"]], items.get_stats) == set()


def test_co_visit_respects_the_window_and_skips_the_same_item():
    items = Items()
    recent = [[n, f"i{n}", "product_view"] for n in range(8)] + [[8, "cur", "product_view"]]
    recent.insert(7, [7, "cur", "product_view"])  # a view of the current item: not a pair, not counted
    co_visit(recent, items.get_stats, window=3)
    assert set(items["cur"].neighbors) == {"i7", "i6", "i5"}


def test_co_visit_counts_an_item_once_with_its_strongest_pair():
    items = Items()
    recent = [[1, "a", "product_view"], [2, "a", "add_to_cart"], [3, "b", "add_to_cart"]]
    co_visit(recent, items.get_stats)
    assert items["b"].neighbors == {"a": 2.0}


def test_bought_together_weighs_most():
    items = Items()
    recent = [[1, "a", "purchase"], [1, "b", "purchase"], [0, "c", "add_to_cart"]]
    recent.sort()
    # A purchase of two lines: each line in turn; the lines pair once.
    for line in ("a", "b"):
        co_visit(recent, items.get_stats, current=[1, line, "purchase"])
    assert items["a"].neighbors == {"b": BOUGHT_TOGETHER_WEIGHT, "c": 2.0}
    assert items["b"].neighbors == {"a": BOUGHT_TOGETHER_WEIGHT, "c": 2.0}
    assert BOUGHT_TOGETHER_WEIGHT > max(items["c"].neighbors.values())
    assert co_visit(recent, items.get_stats, current=[1, "zz", "purchase"]) == set()


def test_co_visit_keeps_neighbors_bounded():
    items = Items()
    rng = random.Random(2)
    for step in range(2000):
        recent = sorted([step * MIN + k, f"i{rng.randrange(200)}", "product_view"] for k in range(10))
        co_visit(recent, items.get_stats)
    assert max(len(s.neighbors) for s in items.values()) == MAX_NEIGHBORS


# -- content affinity --------------------------------------------------------------------
def test_content_affinity_shares_and_price():
    p = Profile("u", categories={"tents": 6, "mugs": 2}, brands={"MSR": 1, "IKEA": 3},
                price_taste=[round(1e6 * (math.log(50.0) + math.log(200.0))), 2])
    before = p.to_record()
    cats, brands, log_price = content_affinity(p)
    assert cats == {"tents": 0.75, "mugs": 0.25} and brands == {"MSR": 0.25, "IKEA": 0.75}
    assert math.exp(log_price) == pytest.approx(100.0)
    assert p.to_record() == before  # read only
    assert content_affinity(Profile("new")) == ({}, {}, None)


def test_a_pair_already_ranked_right_barely_moves_and_a_wrong_one_moves_most():
    mf = MatrixFactorization(dim=2, regularization=0.0)

    def step(sign: float) -> float:
        user, pos, neg = Profile("u"), ItemStats("p"), ItemStats("n")
        user.factors, pos.factors, neg.factors = [2.0, 0.0], [sign * 2.0, 0.0], [-sign * 2.0, 0.0]
        mf.learn(user, pos, 1.0, [neg])
        return math.dist(user.factors, [2.0, 0.0])

    right, wrong = step(1.0), step(-1.0)  # u.(p - n) = +8 vs -8
    assert right < 1e-3 and wrong > 0.1
