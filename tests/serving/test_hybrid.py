"""The hybrid strategy (``serving.hybrid``) through ``serving.recommend.recommend``: stages,
co-occurrence, collaborative filtering, content affinity, trending, the context boost, and
the business rules every strategy obeys, on small hand-built indexes.
"""

from __future__ import annotations

import math
import random

import pytest

from operators.items import HALF_LIFE_MS, TREND_HALF_LIFE_MS, ItemStats
from operators.profile import Policy, Profile
from serving.hybrid import COLD, COLLABORATIVE, CONTENT, co_occurrence_scores, strongest_sources
from serving.item_index import TREND_BLEND, build_index
from serving.recommend import (
    CONTEXT_BOOST,
    HYBRID,
    PERSONAL,
    POPULAR,
    Recommendations,
    RecommendParams,
    recommend,
    recommend_exhaustive,
)
from tests.serving.conftest import cart_log

T = 1_796_205_600_000
VIEW = "product_view"
A, B = [1.0, 0.0], [-1.0, 0.0]  # planted taste groups: opposite factor vectors


def item(item_id: str, category: str | None = "c", popularity: float = 10.0, price: float = 10.0,
         **fields) -> ItemStats:
    return ItemStats(item_id, category, price=price, score=popularity, ref_ms=T, **fields)


def user(interactions: int = 0, **fields) -> Profile:
    """A consenting profile with ``interactions`` product views."""
    return Profile("user:u", counts={VIEW: interactions} if interactions else {}, **fields)


def viewed(*item_ids: str) -> list[list]:
    """``Profile.recent`` for views of ``item_ids``, oldest first."""
    return [[T - 1000 * (len(item_ids) - n), item_id, VIEW] for n, item_id in enumerate(item_ids)]


def rec(index, profile=None, strategy=None, policy=Policy(), **params) -> Recommendations:
    params.setdefault("max_per_category", 50)
    return recommend(index, profile, RecommendParams(**params), T + 5_000, policy, strategy)


def ids(result: Recommendations) -> list[str]:
    return [r.item_id for r in result.items]


def reasons(result: Recommendations) -> dict[str, str]:
    return {r.item_id: r.reason for r in result.items}


# -- stages -----------------------------------------------------------------------------------

SHOP = build_index([
    item("a1", "kitchen", 5.0, factors=A), item("a2", "kitchen", 6.0, factors=A),
    item("b1", "tents", 20.0, factors=B), item("b2", "tents", 30.0, factors=B),
    item("p1", "tents", 40.0, price=50.0),
])


def test_anonymous_and_non_consenting_users_get_exactly_the_anonymous_popular_answer():
    anonymous = rec(SHOP)
    assert (anonymous.strategy, anonymous.personalized, anonymous.stage) == (POPULAR, False, "")
    withdrawn = user(9, factors=A, consent={"personalization": [False, T]})
    opt_in = user(9, factors=A)  # never granted, under an opt-in policy
    assert repr(rec(SHOP, withdrawn)) == repr(anonymous)
    assert repr(rec(SHOP, opt_in, policy=Policy(default_consent=False))) == repr(anonymous)


@pytest.mark.parametrize("interactions, factors, stage", [
    (0, [], COLD), (0, A, COLD),
    (1, [], CONTENT), (4, A, CONTENT),
    (5, A, COLLABORATIVE), (50, B, COLLABORATIVE),
    (5, [], CONTENT), (5, [1.0, 0.0, 0.0], CONTENT),  # no factors, or not the index's dimension
])
def test_the_stage_follows_the_number_of_interactions_and_learnt_factors(interactions, factors, stage):
    result = rec(SHOP, user(interactions, factors=factors))
    assert (result.strategy, result.personalized, result.stage) == (HYBRID, True, stage)


def test_the_cold_stage_ranks_by_popularity():
    assert ids(rec(SHOP, user(0), k=3)) == ids(rec(SHOP, None, k=3)) == ["p1", "b2", "b1"]


# -- co-occurrence ------------------------------------------------------------------------------

NEIGHBOURS = build_index([
    item("src-old", neighbors={"x": 4.0, "w": 1.0, "y": 0.04}), item("src-new", neighbors={"y": 2.0, "ghost": 1.0}),
    item("p1", popularity=30.0), item("p2", popularity=25.0),
    item("w"), item("x"), item("y"),
])


def test_neighbours_of_the_recent_items_come_first_and_newer_sources_weigh_more():
    result = rec(NEIGHBOURS, user(2, recent=viewed("src-old", "src-new")), k=2)
    assert result.stage == CONTENT
    # x and y are each their source's strongest neighbour: only recency tells them apart
    assert ids(result) == ["y", "x"]  # before p1 and p2, three times as popular
    assert reasons(result) == {"y": "often viewed with src-new", "x": "often viewed with src-old"}
    flipped = rec(NEIGHBOURS, user(2, recent=viewed("src-new", "src-old")), k=2)
    assert ids(flipped) == ["x", "y"]
    # y is a neighbour of both: the reason names the source that gave it the most
    assert reasons(flipped) == {"x": "often viewed with src-old", "y": "often viewed with src-new"}


def test_neighbours_of_items_the_user_has_not_seen_get_no_lift():
    result = rec(NEIGHBOURS, user(2, recent=viewed("p2")), k=2)
    assert ids(result) == ["p1", "p2"] and set(reasons(result).values()) == {"popular now"}



def test_co_occurrence_scores_sum_the_sources_and_name_the_strongest_one():
    """The array version against the definition, on random neighbour lists that overlap."""
    rnd = random.Random(3)
    names = [f"i{n}" for n in range(40)]
    index = build_index([item(name, neighbors={other: rnd.uniform(0.1, 5.0) for other in rnd.sample(names, 8) + ["gone"]})
                         for name in names])
    sources = [(name, 0.9 ** n) for n, name in enumerate(rnd.sample(names, 12) + ["unknown"])]
    expected, strongest = [0.0] * len(index), {}
    for name, factor in sources:
        if name not in index.rows:
            continue
        neighbors = index.models.neighbors[index.rows[name]]
        for other, weight in neighbors.items():
            if other in index.rows:
                gain = factor * weight / max(neighbors.values())
                expected[index.rows[other]] += gain
                if gain > strongest.get(other, (0.0, None))[0]:
                    strongest[other] = (gain, name)
    scores, pairs = co_occurrence_scores(index, index.models, sources)
    positions = strongest_sources(pairs, [index.rows[name] for name in names])
    best = {name: positions.get(index.rows[name], -1) for name in names}
    assert best == {name: strongest_sources(pairs, [index.rows[name]]).get(index.rows[name], -1) for name in names}
    named = {name: sources[best[name]][0] if best[name] >= 0 else None for name in names}
    assert list(scores) == pytest.approx([e / max(expected) for e in expected])
    assert named == {name: strongest.get(name, (0.0, None))[1] for name in names}
    assert None in named.values()

# -- collaborative -----------------------------------------------------------------------------

PLANTED = build_index(
    [item(f"a{n}", f"g{n}", 5.0, factors=A) for n in range(3)]
    + [item(f"b{n}", f"g{n}", 10.0, factors=B) for n in range(3)]
    + [item("m-mid", "m", 5.0, factors=[0.0, 1.0]), item("b-low", "m", 5.0, factors=B), item("0-unlearnt", "m", 5.0)]
)


def test_an_established_user_gets_the_group_their_factors_align_with():
    result = rec(PLANTED, user(5, factors=A), k=3)
    assert result.stage == COLLABORATIVE
    assert sorted(ids(result)) == ["a0", "a1", "a2"]  # though group B is twice as popular
    assert set(reasons(result).values()) == {"people with similar taste liked it"}
    assert sorted(ids(rec(PLANTED, user(5, factors=B), k=3))) == ["b0", "b1", "b2"]


def test_without_learnt_user_factors_the_popular_group_wins():
    assert sorted(ids(rec(PLANTED, user(5), k=3))) == ["b0", "b1", "b2"]


def test_the_collaborative_term_adds_the_dot_product_to_the_log_score_unscaled():
    """BPR dot products are log-odds: the module docstring has them add as is, so the score
    gap between two items grows in proportion to the gap between their dot products."""
    def gap(u: list[float]) -> float:
        scores = {r.item_id: r.score for r in rec(PLANTED, user(5, factors=u), k=20).items}
        return scores["m-mid"] - scores["b-low"]  # same popularity, category, price and brand

    # dot products 0.4 and -0.3, then 0.8 and -0.6: no normalisation by the user's norm
    assert gap([0.3, 0.4]) > 0
    assert gap([0.6, 0.8]) == pytest.approx(2 * gap([0.3, 0.4]))


def test_an_item_without_factors_scores_as_the_least_liked_learnt_one_and_below_the_others():
    result = rec(PLANTED, user(5, factors=A), k=20)
    scores, order = {r.item_id: r.score for r in result.items}, ids(result)
    assert scores["0-unlearnt"] == scores["b-low"]  # dot product -1, the lowest learnt
    # m-mid: equal otherwise, dot product 0; the unlearnt one would win a tie by item id
    assert order.index("m-mid") < order.index("0-unlearnt")


# -- similarity to the recent items --------------------------------------------------------------

def test_from_the_first_view_items_with_factors_like_the_viewed_ones_come_first():
    result = rec(PLANTED, user(1, recent=viewed("a0")), k=3)
    assert result.stage == CONTENT  # no user factors needed: only the items'
    assert sorted(ids(result)) == ["a0", "a1", "a2"]  # though group B is twice as popular
    assert set(reasons(result).values()) == {"similar to what you viewed"}


def test_established_users_get_the_similarity_too():
    result = rec(PLANTED, user(5, factors=[0.0, 1.0], recent=viewed("b0")), k=3)
    assert result.stage == COLLABORATIVE
    assert sorted(ids(result)) == ["b0", "b1", "b2"]


@pytest.mark.parametrize("older, newer", [("a0", "b0"), ("b0", "a0")])
def test_of_two_opposite_tastes_the_newer_view_wins(older, newer):
    result = rec(PLANTED, user(2, recent=viewed(older, newer)), k=3)
    assert {i[0] for i in ids(result)} == {newer[0]}


def test_without_factors_on_the_recent_items_similarity_changes_nothing():
    profile = user(2, recent=viewed("0-unlearnt", "nowhere"))
    scores = {r.item_id: r.score for r in rec(PLANTED, profile, k=20).items}
    assert len(set(scores.values())) == 2  # popularity 5 or 10: nothing else tells items apart


def test_an_item_without_factors_is_as_similar_as_the_least_similar_learnt_one():
    result = rec(PLANTED, user(2, recent=viewed("a0")), k=20)
    scores, order = {r.item_id: r.score for r in result.items}, ids(result)
    assert scores["0-unlearnt"] == scores["b-low"]  # cosine -1, the lowest learnt
    assert order.index("m-mid") < order.index("0-unlearnt")  # cosine 0


# -- content -------------------------------------------------------------------------------------

def test_brand_affinity_ranks_and_explains():
    index = build_index([item("a-plain"), item("b-msr", brand="MSR"), item("c-msr-quiet", popularity=8.0, brand="MSR"),
                         item("d-other", brand="Vango")])
    result = rec(index, user(2, brands={"MSR": 3}))
    assert ids(result) == ["b-msr", "c-msr-quiet", "a-plain", "d-other"]
    assert reasons(result) == {"b-msr": "from MSR, a brand you like", "c-msr-quiet": "from MSR, a brand you like",
                               "a-plain": "popular now", "d-other": "popular now"}


def test_category_affinity_ranks_and_explains():
    index = build_index([item("k", "kitchen", 8.0), item("t", "tents"), item("o", "other")])
    result = rec(index, user(2, categories={"kitchen": 4, "tents": 1}))
    assert ids(result) == ["k", "t", "o"]
    assert reasons(result)["k"] == "popular in kitchen, a category you like"


@pytest.mark.parametrize("taste, expected", [
    (5.0, ["c-cheap", "b-mid", "a-dear"]), (500.0, ["a-dear", "b-mid", "c-cheap"]),
])
def test_items_closer_to_the_users_price_taste_rank_higher(taste, expected):
    index = build_index([item("a-dear", price=500.0), item("b-mid", price=50.0), item("c-cheap", price=5.0)])
    assert ids(rec(index, user(3, price_taste=[round(3e6 * math.log(taste)), 3]))) == expected


# -- business rules -------------------------------------------------------------------------------

RULES = build_index([
    item("src", "kitchen", 1.0, neighbors={"cart": 9.0, "bought": 8.0, "excl": 7.0, "cur": 6.0, "n5": 5.0}),
    item("cart", "kitchen", 50.0, factors=A), item("bought", "kitchen", 50.0, factors=A),
    item("excl", "kitchen", 50.0, factors=A), item("cur", "tents", 50.0, factors=A),
    item("n5", "outdoor/boots", 40.0, price=80.0, factors=A),
    *[item(f"t{n}", "outdoor/tents", 30.0 - n, price=20.0 + 10 * n, factors=A) for n in range(5)],
    item("k9", "kitchen", 5.0, price=3.0, factors=B), item("free", None, 1.0, price=0.0),
    item("free-2", None, 1.0, price=0.0),
])


def shopper(interactions: int = 2) -> Profile:
    return user(interactions, factors=A, recent=viewed("src"), purchased={"bought": T - 10},
                cart_log=cart_log({"cart": {"qty": 1, "price": 10.0, "category": "kitchen", "added_ms": T}}))


@pytest.mark.parametrize("interactions", [0, 2, 5])
def test_cart_purchases_exclusions_and_the_current_item_are_never_returned(interactions):
    result = rec(RULES, shopper(interactions), k=50, exclude=frozenset({"excl", "nope"}), current_item_id="cur")
    assert result.strategy == HYBRID and result.items
    assert not {"cart", "bought", "excl", "cur"} & set(ids(result))


def test_category_prefix_price_filters_and_the_diversity_cap_apply_to_hybrid():
    profile = shopper()
    assert set(ids(rec(RULES, profile, k=50, category_prefix="outdoor/"))) == {"n5", "t0", "t1", "t2", "t3", "t4"}
    priced = rec(RULES, profile, k=50, min_price=25.0, max_price=60.0)
    assert sorted(ids(priced)) == ["t1", "t2", "t3", "t4"]
    cheap = rec(RULES, profile, k=50, max_price=5.0)
    assert ids(cheap) == ["k9"]  # unknown prices (free, free-2) never pass
    capped = rec(RULES, profile, k=50, max_per_category=1)
    per_category = [r.category for r in capped.items]
    assert max(per_category.count(c) for c in set(per_category) - {""}) == 1
    assert {"free", "free-2"} <= set(ids(capped))  # no category: exempt from the cap


STOCK = build_index([
    item("gone", "c", 100.0, in_stock=False, factors=A), item("gone-2", "d", 90.0, in_stock=False, factors=A),
    item("yes", "c", 5.0, in_stock=True, factors=A), item("unknown", "d", 4.0, factors=B),
    item("src", "c", 1.0, neighbors={"gone": 5.0, "yes": 1.0}),
])


@pytest.mark.parametrize("profile, strategy, params", [
    (None, None, {}),  # popular: reads the popularity order
    (None, None, {"context_category": "c"}),  # popular: reads a category's list
    (user(2, categories={"c": 3}), PERSONAL, {}),
    (user(0), None, {}), (user(2, recent=viewed("src")), None, {}), (user(9, factors=A), None, {}),
], ids=["popular", "popular-context", "personal", "cold", "content", "collaborative"])
def test_out_of_stock_items_are_never_returned_by_any_strategy(profile, strategy, params):
    result = rec(STOCK, profile, strategy, k=10, **params)
    assert sorted(ids(result)) == ["src", "unknown", "yes"]
    exhaustive = recommend_exhaustive(STOCK, profile, RecommendParams(k=10, max_per_category=50, **params),
                                      T + 5_000, Policy(), strategy)
    assert repr(exhaustive) == repr(result)


# -- trending -----------------------------------------------------------------------------------

def test_an_item_seen_only_in_the_last_hour_is_trending_and_a_steady_one_popular():
    hot, steady = ItemStats("hot"), ItemStats("steady")
    for minutes in range(0, 60, 6):
        hot.observe(VIEW, T - minutes * 60_000, category="c")
    for hours in range(72):
        steady.observe(VIEW, T - hours * 3_600_000, category="c")
    assert hot.trend / hot.score > steady.trend / steady.score
    result = rec(build_index([hot, steady]))
    assert reasons(result) == {"hot": "trending now", "steady": "popular now"}


def test_the_popularity_column_adds_the_decayed_trend_to_the_decayed_score():
    day_old = ItemStats("day-old", "c", score=8.0, ref_ms=T - HALF_LIFE_MS, trend=2.0,
                        trend_ref_ms=T - TREND_HALF_LIFE_MS)
    steady = ItemStats("steady", "c", score=24.0, ref_ms=T, trend=1.0, trend_ref_ms=T)
    index = build_index([day_old, steady])
    assert index.as_of_ms == T
    scale = TREND_BLEND * HALF_LIFE_MS / TREND_HALF_LIFE_MS  # 12: a steady rate gives the trend 1/3
    by_id = dict(zip(index.ids, index.popularity.tolist()))
    assert by_id == pytest.approx({"day-old": 8.0 / 2 + 2.0 / 2 * scale, "steady": 24.0 + 1.0 * scale})
    assert by_id["day-old"] == pytest.approx(16.0)
    result = rec(index)
    assert [(r.item_id, r.reason) for r in result.items] == [("steady", "popular now"), ("day-old", "trending now")]
    assert result.items[1].score == pytest.approx(16.0)


# -- context boost -----------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", [user(0), user(2, recent=viewed("src"), categories={"kitchen": 2}),
                                     user(5, factors=A)], ids=["cold", "content", "collaborative"])
def test_the_context_category_multiplies_the_exp_of_hybrid_scores_of_its_items(profile):
    """Hybrid scores are log-scale (log popularity plus components, possibly negative): the
    boost multiplies exp(score) by 1 + CONTEXT_BOOST, and leaves other categories alone."""
    plain = {r.item_id: r.score for r in rec(RULES, profile, k=50).items}
    boosted = rec(RULES, profile, k=50, context_category="outdoor")
    assert boosted.stage == rec(RULES, profile).stage != ""
    assert {r.item_id for r in boosted.items} == set(plain)
    for r in boosted.items:
        if r.category.startswith("outdoor/"):
            assert math.exp(r.score - plain[r.item_id]) == pytest.approx(1.0 + CONTEXT_BOOST), r.item_id
        else:
            assert r.score == plain[r.item_id], r.item_id
    plain_order, boosted_order = list(plain), ids(boosted)
    outdoor = [r.item_id for r in boosted.items if r.category.startswith("outdoor/")]
    assert outdoor and all(boosted_order.index(i) <= plain_order.index(i) for i in outdoor)


@pytest.mark.parametrize("margin, boosted_first", [(-1.0, True), (1.0, False)])
def test_in_the_cold_stage_the_boost_is_worth_multiplying_the_popularity(margin, boosted_first):
    rival = (1.0 + CONTEXT_BOOST) * 10.0 + margin
    index = build_index([item("boosted", "ctx", 10.0), item("rival", "other", rival)])
    result = rec(index, user(0), context_category="ctx")
    assert ids(result) == (["boosted", "rival"] if boosted_first else ["rival", "boosted"])
    assert reasons(result)["boosted"] == "popular in ctx"


# -- determinism -------------------------------------------------------------------------------------

def random_index(rng: random.Random, n: int):
    ids_ = [f"i{i:03d}" for i in range(n)]
    return build_index([
        ItemStats(item_id, rng.choice([None, "a", "a/x", "b"]), price=rng.choice([0.0, 3.0, 30.0, 300.0]),
                  score=rng.uniform(0, 20), ref_ms=T - rng.randint(0, HALF_LIFE_MS), trend=rng.uniform(0, 3),
                  trend_ref_ms=T - rng.randint(0, HALF_LIFE_MS), brand=rng.choice([None, "x", "y"]),
                  factors=[rng.gauss(0, 1), rng.gauss(0, 1)] if rng.random() < 0.7 else [],
                  neighbors={o: rng.uniform(0.1, 5) for o in rng.sample(ids_, 3)},
                  in_stock=rng.choice([None, True, False]))
        for item_id in ids_
    ])


@pytest.mark.parametrize("seed", range(10))
def test_hybrid_is_deterministic_finite_bounded_and_obeys_the_rules(seed):
    rng = random.Random(seed)
    index = random_index(rng, rng.choice([3, 30, 200, 2000]))
    before = index.popularity.copy()
    all_ids = list(index.ids)
    for _ in range(20):
        n = rng.choice([0, 1, 3, 5, 12])
        picked = rng.sample(all_ids, min(3, len(all_ids)))
        profile = user(n, factors=[rng.gauss(0, 1), rng.gauss(0, 1)] if rng.random() < 0.7 else [],
                       recent=viewed(*rng.sample(all_ids, min(n, len(all_ids), 10))), brands={"x": 2},
                       categories={"a/x": 3}, price_taste=[round(n * 1e6 * math.log(30.0)), n], purchased={picked[0]: T},
                       cart_log=cart_log({picked[-1]: {"qty": 1, "price": 1.0, "category": None, "added_ms": T}}))
        params = RecommendParams(k=rng.choice([1, 5, 20]), max_per_category=rng.choice([1, 3]),
                                 context_category=rng.choice(["", "a", "b"]), min_price=rng.choice([None, 5.0]))
        first = recommend(index, profile, params, T)
        assert repr(first) == repr(recommend(index, profile, params, T)) == repr(
            recommend_exhaustive(index, profile, params, T))
        assert first.strategy == HYBRID and len(first.items) <= params.k
        assert all(math.isfinite(r.score) for r in first.items)
        got = set(ids(first))
        assert not got & {picked[0], picked[-1]}
        assert all(index.models.in_stock[index.rows[i]] for i in got)
        assert all(r.price >= 5.0 for r in first.items if params.min_price)
        scores = [r.score for r in first.items]
        assert scores == sorted(scores, reverse=True)
    assert (index.popularity == before).all()
