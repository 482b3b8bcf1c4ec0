"""Ranking and business rules of ``serving.recommend`` on a hand-built item index."""

from __future__ import annotations

import math
import random
import sys

import numpy as np
import pytest

from operators.items import HALF_LIFE_MS, ItemStats
from operators.profile import Policy, Profile
from serving.item_index import EMPTY_INDEX, build_index
from serving.recommend import (
    PERSONAL,
    POPULAR,
    Recommendations,
    RecommendParams,
    choose_strategy,
    recommend,
    recommend_exhaustive,
    top_rows,
    top_rows_refined,
)
from tests.serving.conftest import cart_log

recommend_module = sys.modules["serving.recommend"]  # ``serving.recommend`` is also the function
T = 1_796_205_600_000


def item(item_id: str, category: str | None, popularity: float, price: float = 10.0) -> ItemStats:
    return ItemStats(item_id, category, price=price, score=popularity, ref_ms=T)


CATALOG = [
    item("t1", "outdoor/tents", 100), item("t2", "outdoor/tents", 90), item("t3", "outdoor/tents", 80),
    item("t4", "outdoor/tents", 70), item("t5", "outdoor/tents", 60, price=250.0),
    item("b1", "outdoor/boots", 95), item("b2", "outdoor/boots", 50), item("b3", "outdoor/boots", 40),
    item("k1", "kitchen", 85, price=30.0), item("k2", "kitchen", 30, price=5.0), item("k3", "kitchen", 20),
    item("k4", "kitchen", 10),
    item("u1", None, 5, price=0.0), item("u2", None, 5, price=0.0),  # no category, unknown price
]


@pytest.fixture(scope="module")
def index():
    return build_index(CATALOG)


def ids(result: Recommendations) -> list[str]:
    return [r.item_id for r in result.items]


def rec(index, profile=None, policy=Policy(), strategy=PERSONAL, **params) -> Recommendations:
    """The rules below are checked on the category-affinity strategy (its scores are easy to
    compute by hand); ``tests/serving/test_hybrid.py`` covers the default hybrid one."""
    return recommend(index, profile, RecommendParams(**params), T + 5_000, policy, strategy)


def fan(**fields) -> Profile:
    """A profile that likes kitchen (10) and boots (5), with k1 in the cart and b1 bought."""
    base = dict(categories={"kitchen": 10, "outdoor/boots": 5},
                cart_log=cart_log({"k1": {"qty": 1, "price": 30.0, "category": "kitchen", "added_ms": T}}),
                purchased={"b1": T - 1000})
    base.update(fields)
    return Profile("user:fan", **base)


WITHDRAWN = [False, T - 10]


# -- the index ------------------------------------------------------------------------------

def test_index_rows_are_sorted_by_id_and_read_only(index):
    assert list(index.ids) == sorted(s.item_id for s in CATALOG)
    assert index.category_names == ("", "kitchen", "outdoor/boots", "outdoor/tents")
    assert index.category_of("t1") == "outdoor/tents" and index.category_of("u1") == ""
    assert index.category_of("x") is None
    for array in (index.ids, index.category_codes, index.prices, index.popularity):
        assert not array.flags.writeable
    with pytest.raises(TypeError):
        index.rows["new"] = 1


def test_popularity_is_taken_at_the_newest_event_time_unless_given():
    old = ItemStats("old", "c", score=8.0, ref_ms=T - HALF_LIFE_MS)
    new = ItemStats("new", "c", score=1.0, ref_ms=T)
    default = build_index([old, new])
    assert default.as_of_ms == T
    assert dict(zip(default.ids, default.popularity)) == {"new": 1.0, "old": 4.0}
    later = build_index([old, new], as_of_ms=T + HALF_LIFE_MS)
    assert dict(zip(later.ids, later.popularity)) == {"new": 0.5, "old": 2.0}
    assert len(EMPTY_INDEX) == 0 and EMPTY_INDEX.as_of_ms == 0


# -- non-personal ---------------------------------------------------------------------------

def test_popular_ranks_by_popularity_with_at_most_three_per_category(index):
    result = rec(index)
    assert (result.strategy, result.personalized) == (POPULAR, False)
    # t4, t5 and k4 are left out by the diversity cap; items without a category are not capped.
    assert ids(result) == ["t1", "b1", "t2", "k1", "t3", "b2", "b3", "k2", "k3", "u1"]
    assert {r.reason for r in result.items} == {"popular now"}
    first = result.items[0]
    assert (first.score, first.category, first.price) == (100.0, "outdoor/tents", 10.0)
    assert result.items[-1].category == "" and result.items[-1].price == 0.0


def test_k_limits_the_answer_and_a_large_k_returns_every_eligible_item(index):
    assert ids(rec(index, k=1)) == ["t1"]
    assert ids(rec(index, k=3)) == ["t1", "b1", "t2"]
    everything = rec(index, k=100)
    assert len(everything.items) == 11  # 14 items, minus t4, t5 and k4 (cap)
    assert ids(everything)[-2:] == ["u1", "u2"]  # a tie: by item id


def test_max_per_category_is_a_parameter(index):
    assert ids(rec(index, max_per_category=1)) == ["t1", "b1", "k1", "u1", "u2"]
    assert ids(rec(index, k=6, max_per_category=5)) == ["t1", "b1", "t2", "k1", "t3", "t4"]


def test_ties_are_broken_by_item_id_also_at_the_partition_boundary():
    # 300 equal scores, each in its own category: far more ties than the argpartition prefix.
    same = build_index([item(f"i{n:03d}", f"c{n % 150}", 1.0) for n in reversed(range(300))])
    assert ids(rec(same, k=10)) == [f"i{n:03d}" for n in range(10)]
    assert ids(rec(same, k=3, max_per_category=1, exclude=frozenset({"i001"}))) == ["i000", "i002", "i003"]


def test_the_diversity_cap_looks_past_the_first_candidates():
    # 500 top items share one category: the picks for the other categories are far down.
    crowd = [item(f"a{n:03d}", "a", 1000.0 - n) for n in range(500)]
    rest = [item(f"{c}1", c, 1.0) for c in "bcdef"]
    result = rec(build_index(crowd + rest), k=6, max_per_category=1)
    assert ids(result) == ["a000", "b1", "c1", "d1", "e1", "f1"]


def test_context_category_boosts_its_items_and_subcategories(index):
    kitchen = rec(index, k=4, context_category="kitchen")
    assert [(r.item_id, r.score, r.reason) for r in kitchen.items] == [
        ("k1", 170.0, "popular in kitchen"), ("t1", 100.0, "popular now"), ("b1", 95.0, "popular now"),
        ("t2", 90.0, "popular now"),
    ]
    outdoor = rec(index, k=3, context_category="outdoor")
    assert [(r.item_id, r.reason) for r in outdoor.items] == [
        ("t1", "popular in outdoor/tents"), ("b1", "popular in outdoor/boots"), ("t2", "popular in outdoor/tents"),
    ]
    assert rec(index, k=3, context_category="outdoor/") == outdoor
    # "out" is not a category above "outdoor/tents": no boost
    assert rec(index, k=3, context_category="out") == rec(index, k=3)


def test_the_current_item_is_never_returned_and_its_category_is_boosted(index):
    result = rec(index, k=3, current_item_id="k2")
    assert ids(result) == ["k1", "t1", "b1"]  # k1 at 170; k3 only 40
    assert result.items[0].reason == "popular in kitchen"
    # an explicit context category wins over the current item's
    assert ids(rec(index, k=2, current_item_id="k2", context_category="outdoor/boots")) == ["b1", "b2"]
    # an unknown current item changes nothing
    assert rec(index, current_item_id="nope") == rec(index)


def test_excluded_items_are_left_out_and_unknown_ids_ignored(index):
    result = rec(index, k=4, exclude=frozenset({"t1", "b1", "nope"}))
    assert ids(result) == ["t2", "k1", "t3", "t4"]


def test_filters(index):
    assert ids(rec(index, category_prefix="outdoor/")) == ["t1", "b1", "t2", "t3", "b2", "b3"]
    assert ids(rec(index, category_prefix="kit")) == ["k1", "k2", "k3"]
    assert rec(index, category_prefix="none").items == ()
    # unknown prices (0) never pass a price filter
    assert ids(rec(index, min_price=20.0)) == ["k1", "t5"]
    assert ids(rec(index, max_price=5.0)) == ["k2"]
    assert ids(rec(index, min_price=10.0, max_price=10.0, k=4)) == ["t1", "b1", "t2", "t3"]
    assert ids(rec(index, category_prefix="outdoor/tents", min_price=200.0)) == ["t5"]


def test_params_are_checked():
    with pytest.raises(ValueError, match="k must be at least 1"):
        RecommendParams(k=0)
    with pytest.raises(ValueError, match="max_per_category"):
        RecommendParams(max_per_category=0)


# -- personal -------------------------------------------------------------------------------

def test_personal_weights_by_category_affinity_and_leaves_out_cart_and_purchases(index):
    result = rec(index, fan(), k=8)
    assert (result.strategy, result.personalized) == (PERSONAL, True)
    # kitchen x2 (the top category), boots x1.5 (half of it); k1 is in the cart, b1 bought;
    # b3, k2 and t5 tie at 60: b3 and k2 by id, t5 is over the tents cap anyway.
    assert [(r.item_id, r.score) for r in result.items] == [
        ("t1", 100.0), ("t2", 90.0), ("t3", 80.0), ("b2", 75.0), ("b3", 60.0), ("k2", 60.0), ("k3", 40.0),
        ("k4", 20.0),
    ]
    reasons = {r.item_id: r.reason for r in result.items}
    assert reasons["t1"] == "popular now"
    assert reasons["b2"] == "popular in outdoor/boots, a category you like"
    assert reasons["k2"] == "popular in kitchen, a category you like"


def test_personal_with_a_context_category(index):
    result = rec(index, fan(), k=2, context_category="outdoor/tents")
    assert [(r.item_id, r.score, r.reason) for r in result.items] == [
        ("t1", 200.0, "popular in outdoor/tents"), ("t2", 180.0, "popular in outdoor/tents"),
    ]


def test_a_profile_without_history_is_personal_but_ranks_like_popular(index):
    result = rec(index, Profile("user:new"))
    assert result.strategy == PERSONAL and result.personalized
    assert ids(result) == ids(rec(index))


def test_request_exclusions_and_filters_apply_to_personal_answers(index):
    result = rec(index, fan(), exclude=frozenset({"t1"}), category_prefix="outdoor/", max_price=60.0)
    assert ids(result) == ["t2", "t3", "b2", "t4", "b3"]  # b2: 50 x 1.5


# -- consent --------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {}, {"k": 3}, {"context_category": "kitchen"}, {"current_item_id": "b2", "k": 5},
    {"category_prefix": "outdoor/", "min_price": 1.0}, {"exclude": frozenset({"t1"})},
])
def test_without_personalization_consent_the_answer_is_the_anonymous_one(index, params):
    anonymous = rec(index, None, **params)
    withdrawn = rec(index, fan(consent={"personalization": WITHDRAWN}), **params)
    never_granted = rec(index, fan(), Policy(default_consent=False), **params)  # opt-in regime
    assert withdrawn == anonymous and never_granted == anonymous
    assert withdrawn.strategy == POPULAR and not withdrawn.personalized
    # byte for byte, scores included
    assert repr(withdrawn) == repr(anonymous)


def test_withdrawn_consent_keeps_cart_and_purchased_items_like_for_anyone(index):
    result = rec(index, fan(consent={"personalization": WITHDRAWN}))
    assert {"k1", "b1"} <= set(ids(result))


def test_without_consent_nothing_but_the_consent_is_read():
    class OnlyConsent:
        """A profile whose history must not be touched."""

        def allows(self, purpose, policy):
            assert purpose == "personalization"
            return False

        def __getattr__(self, name):
            raise AssertionError(f"the profile's {name!r} was read without personalization consent")

    index = build_index(CATALOG)
    assert rec(index, OnlyConsent(), context_category="kitchen") == rec(index, None, context_category="kitchen")


def test_an_explicit_grant_in_an_opt_in_regime_personalizes(index):
    granted = fan(consent={"personalization": [True, T]})
    assert rec(index, granted, Policy(default_consent=False)).strategy == PERSONAL
    assert choose_strategy(None).name == POPULAR


# -- edges ----------------------------------------------------------------------------------

def test_an_empty_index_answers_an_empty_popular_list():
    assert rec(EMPTY_INDEX) == Recommendations((), POPULAR, False)
    assert rec(EMPTY_INDEX, fan()) == Recommendations((), POPULAR, False)


def test_ranking_leaves_the_index_unchanged_and_is_deterministic(index):
    before = index.popularity.copy()
    first = rec(index, fan(), exclude=frozenset({"t1"}), context_category="kitchen", min_price=1.0)
    again = rec(index, fan(), exclude=frozenset({"t1"}), context_category="kitchen", min_price=1.0)
    assert first == again
    assert np.array_equal(index.popularity, before)


# -- reading the sorted lists equals scoring every row -------------------------------------------------------

def random_catalog(rng: random.Random, n: int) -> list[ItemStats]:
    """Items in nested categories (some without one), some with unknown prices, with many
    exact popularity ties (small integer scores, a few event times)."""
    cats = [None, "a", "a/x", "a/y", "b", "b/x", "c", "d/x/1", "d/x/2", "e"][: rng.randint(2, 10)]
    skew = rng.random() < 0.3  # one category holding most of the popular items
    out = []
    for i in range(n):
        category = rng.choice(cats)
        score = float(rng.randint(0, 12)) if rng.random() < 0.6 else rng.uniform(0, 50)
        if skew and category == cats[-1]:
            score += 100.0
        out.append(ItemStats(f"i{i:04d}", category, price=rng.choice([0.0, 5.0, 10.0, 20.0, rng.uniform(1, 50)]),
                             score=score, ref_ms=T - rng.choice([0, 0, 3_600_000, HALF_LIFE_MS])))
    return out


def random_params(rng: random.Random, index) -> dict:
    ids_ = list(index.ids)
    names = [n for n in index.category_names if n] or ["a"]
    params = {"k": rng.choice([1, 3, 10, 20, 100]), "max_per_category": rng.choice([1, 2, 3, 50])}
    if rng.random() < 0.3:
        params["context_category"] = rng.choice(names + ["a", "d", "d/x", "zz"])
    if rng.random() < 0.3:
        params["current_item_id"] = rng.choice(ids_ + ["nope"])
    if rng.random() < 0.3:
        params["exclude"] = frozenset(rng.sample(ids_, min(len(ids_), rng.randint(1, 30))))
    if rng.random() < 0.25:
        params["category_prefix"] = rng.choice(["a", "a/", "b/x", "d/", "e", "q"])
    if rng.random() < 0.25:
        params["min_price"] = rng.choice([1.0, 10.0, 30.0])
    if rng.random() < 0.25:
        params["max_price"] = rng.choice([10.0, 20.0, 100.0])
    return params


def random_profile(rng: random.Random, index) -> Profile | None:
    if rng.random() < 0.2:
        return None
    names = [n for n in index.category_names if n]
    ids_ = list(index.ids)
    return Profile(
        "user:r",
        categories={c: rng.randint(0, 9) for c in rng.sample(names, min(len(names), rng.randint(0, 5)))},
        cart_log=cart_log({i: {"qty": 1, "price": 1.0, "category": None, "added_ms": T}
                           for i in rng.sample(ids_, min(len(ids_), rng.randint(0, 3)))}),
        purchased={i: T for i in rng.sample(ids_, min(len(ids_), rng.randint(0, 5)))},
    )


@pytest.mark.parametrize("seed", range(40))
def test_reading_sorted_lists_equals_scoring_every_row_on_random_indexes(seed):
    rng = random.Random(seed)
    index = build_index(random_catalog(rng, rng.choice([1, 5, 40, 300, 1500])))
    for _ in range(40):
        profile, params = random_profile(rng, index), RecommendParams(**random_params(rng, index))
        fast = recommend(index, profile, params, T, strategy=PERSONAL)
        assert repr(fast) == repr(recommend_exhaustive(index, profile, params, T, strategy=PERSONAL)), params


@pytest.mark.parametrize("limits", [(1, 0), (16, 4), (100, 50)])
def test_the_fallback_when_the_lists_are_read_too_far_gives_the_same_answer(monkeypatch, limits):
    walk, budget = limits
    monkeypatch.setattr(recommend_module, "WALK_LIMIT", walk)
    monkeypatch.setattr(recommend_module, "MERGE_BUDGET", budget)
    monkeypatch.setattr(recommend_module, "MAX_LISTS", 2)
    rng = random.Random(sum(limits))
    index = build_index(random_catalog(rng, 400))
    for _ in range(60):
        profile, params = random_profile(rng, index), RecommendParams(**random_params(rng, index))
        assert repr(recommend(index, profile, params, T, strategy=PERSONAL)) == repr(
            recommend_exhaustive(index, profile, params, T, strategy=PERSONAL))


def test_a_boost_rounding_two_popularities_to_one_score_still_breaks_the_tie_by_item_id():
    # popularities one ulp apart, and a liked-category factor 1 + count/top taking both to
    # the same score (the product crosses a power of two, where the ulp doubles)
    low, count, top = next((low, c, t) for low in (1.5, 1.75, 1.9) for t in range(2, 60) for c in range(1, t)
                           if math.nextafter(low, 2.0) * (1 + c / t) == low * (1 + c / t))
    high = math.nextafter(low, 2.0)
    index = build_index([ItemStats("a-low", "x", score=low, ref_ms=T), ItemStats("z-high", "x", score=high, ref_ms=T),
                         ItemStats("top", "y", score=float(top), ref_ms=T)])
    profile = Profile("user:p", categories={"x": count, "y": top})
    result = rec(index, profile, k=3)
    assert ids(result)[1:] == ["a-low", "z-high"]  # equal scores: by item id, as exhaustive ranking does
    assert result.items[1].score == result.items[2].score
    assert result == recommend_exhaustive(index, profile, RecommendParams(k=3), T + 5_000, strategy=PERSONAL)
    # the diversity cap cuts between the two: the lower item id is the one kept
    capped = rec(index, profile, k=3, max_per_category=1)
    assert ids(capped) == ["top", "a-low"]
    assert capped == recommend_exhaustive(index, profile, RecommendParams(k=3, max_per_category=1), T + 5_000,
                                         strategy=PERSONAL)


def test_the_index_lists_rows_in_popularity_order_and_per_category(index):
    pop = index.popularity.tolist()
    assert index.order == sorted(range(len(index)), key=lambda r: (-pop[r], r))
    for code, rows in enumerate(index.by_category):
        assert rows == [r for r in index.order if index.code_list[r] == code]
        assert index.category_sizes[code] == len(rows)
    assert index.id_list == list(index.ids) and index.price_list == list(index.prices)


@pytest.mark.parametrize("seed", range(12))
def test_scoring_only_the_rows_whose_bound_can_reach_the_top_picks_what_scoring_every_row_picks(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([0, 1, 50, 129, 700, 3000]))
    # coarse scores so that ties (broken by the lower row) are common, also across the cut
    exact_all = np.round(rng.normal(0.0, 2.0, n), int(rng.choice([0, 1, 3])))
    slack = rng.choice([0.0, 0.01, 0.5, 3.0]) * rng.random(n)
    bounds = exact_all + slack
    removed = rng.random(n) < rng.choice([0.0, 0.3, 0.97])  # rules: -inf
    bounds[removed] = -np.inf
    codes = rng.integers(0, int(rng.choice([1, 3, 40])), n)
    k, cap = int(rng.choice([1, 5, 20])), int(rng.choice([1, 2, 50]))
    exempt = int(rng.choice([0, 99]))
    asked: list[int] = []

    def exact(rows: np.ndarray) -> np.ndarray:
        assert (np.diff(rows) > 0).all() and np.isfinite(bounds[rows]).all()
        asked.append(len(rows))
        return exact_all[rows].copy()

    rows, scores = top_rows_refined(bounds, exact, codes, k, cap, exempt)
    reference = np.where(removed, -np.inf, exact_all)
    expected = top_rows(reference, codes, k, cap, exempt)
    assert rows == expected
    assert scores == reference[expected].tolist()
    assert top_rows_refined(bounds, exact, codes, k, cap, exempt, everything=True) == (rows, scores)


def test_with_tight_bounds_only_a_few_hundred_rows_are_scored_exactly():
    rng = np.random.default_rng(3)
    exact_all = rng.normal(0.0, 3.0, 10_000)
    bounds = exact_all + 0.2 * rng.random(10_000)
    asked: list[int] = []

    def exact(rows):
        asked.append(len(rows))
        return exact_all[rows]

    rows, _scores = top_rows_refined(bounds, exact, np.zeros(10_000, np.intp), 20, 100)
    assert rows == np.argsort(-exact_all)[:20].tolist()
    assert sum(asked) <= 700, asked


def test_a_row_left_out_that_ties_with_the_last_pick_is_taken_when_its_row_is_lower():
    # 128 rows (the first cut) bound at 10 but worth 5; row 0 is worth 5 exactly and left
    # out: it ties with them and is the lowest row, so it is the answer.
    exact_all = np.zeros(300)
    exact_all[100:228] = 5.0
    exact_all[0] = 5.0
    bounds = exact_all.copy()
    bounds[100:228] = 10.0
    rows, scores = top_rows_refined(bounds, lambda r: exact_all[r], np.zeros(300, np.intp), 1, 1)
    assert (rows, scores) == ([0], [5.0])
