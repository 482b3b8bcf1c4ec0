"""The planted-preference clickstream: deterministic, valid, and shaped as documented."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from operators.events import Event, parse_event
from operators.items import parse_catalog_line
from operators.synthetic_prefs import PreferenceClickstream

T0 = 1_796_205_600_000
N = 20_000


@pytest.fixture(scope="module")
def gen() -> PreferenceClickstream:
    return PreferenceClickstream(seed=7, users=600, items=400, clusters=12)


@pytest.fixture(scope="module")
def stream(gen) -> list[dict]:
    return list(gen.events(N, T0))


def _lines(event: dict) -> list[dict]:
    return event.get("items") or [event]


def test_deterministic_by_seed(stream):
    again = list(PreferenceClickstream(seed=7, users=600, items=400, clusters=12).events(N, T0))
    assert again == stream
    other = list(PreferenceClickstream(seed=8, users=600, items=400, clusters=12).events(200, T0))
    assert other != stream[:200]


def test_every_event_parses_with_unique_ids_and_increasing_times(stream):
    parsed = [parse_event(orjson.dumps(e)) for e in stream]
    invalid = [p for p in parsed if not isinstance(p, Event)]
    assert invalid == []
    assert len({e.event_id for e in parsed}) == N
    times = [e.ts_ms for e in parsed]
    assert all(a < b for a, b in zip(times, times[1:])) and times[0] > T0
    kinds = Counter(e.type for e in parsed)
    assert set(kinds) == {"product_view", "add_to_cart", "purchase"}
    assert kinds["product_view"] > kinds["add_to_cart"] > kinds["purchase"] > 0
    assert any(len(e.items) > 1 for e in parsed if e.type == "purchase")
    assert all(line.brand and line.category and line.price > 0 for e in parsed for line in e.items)


def test_interactions_concentrate_on_the_users_clusters(gen, stream):
    own = total = 0
    for e in stream:
        favourites = gen.clusters_of(e["user_id"])
        for line in _lines(e):
            total += 1
            own += gen.cluster_of(line["item_id"]) in favourites
    # 75% drawn from the user's clusters, plus the popular picks that land there by chance.
    assert 0.72 < own / total < 0.85


def test_without_cluster_preference_the_share_falls_to_chance():
    gen = PreferenceClickstream(seed=7, users=600, items=400, clusters=12, cluster_share=0.0)
    own = total = 0
    for e in gen.events(5000, T0):
        for line in _lines(e):
            total += 1
            own += gen.cluster_of(line["item_id"]) in gen.clusters_of(e["user_id"])
    assert own / total < 0.35


def test_clusters_cut_across_categories(gen):
    by_cluster: dict[int, set[str]] = {}
    for rec in gen.catalog():
        by_cluster.setdefault(gen.cluster_of(rec["item_id"]), set()).add(rec["category"])
    assert len(by_cluster) == 12
    assert all(len(cats) >= 5 for cats in by_cluster.values())
    assert all(1 <= len(gen.clusters_of(u)) <= 3 for u in gen.user_ids)


def test_new_users_keep_arriving(gen, stream):
    first: dict[str, int] = {}
    for n, e in enumerate(stream):
        first.setdefault(e["user_id"], n)
    late = [u for u, n in first.items() if n >= N // 2]
    # Users with no history at all keep appearing in the second half of the stream.
    assert len(late) >= 0.1 * len(first)
    assert len(first) > gen.initial_users


def test_popularity_and_activity_are_skewed(stream):
    views = Counter(e["item_id"] for e in stream if e["type"] == "product_view")
    top = sum(n for _, n in views.most_common(len(views) // 10))
    assert top > 0.35 * sum(views.values())
    users = Counter(e["user_id"] for e in stream)
    counts = sorted(users.values())
    assert counts[-1] > 10 * counts[len(counts) // 2]


def test_catalog_matches_the_events_and_is_valid(gen, stream):
    catalog = {rec["item_id"]: rec for rec in gen.catalog()}
    assert len(catalog) == 400
    for rec in catalog.values():
        assert parse_catalog_line(orjson.dumps(rec), 1, "synthetic") == rec
        assert rec["in_stock"] is True
    for e in stream[:2000]:
        for line in _lines(e):
            rec = catalog[line["item_id"]]
            assert (line["category"], line["brand"], line["price"]) == (rec["category"], rec["brand"], rec["price"])


def test_unknown_ids_and_bad_settings_are_refused(gen):
    with pytest.raises(KeyError, match="unknown user 'nobody'"):
        gen.clusters_of("nobody")
    with pytest.raises(KeyError, match="unknown item 'x'"):
        gen.cluster_of("x")
    with pytest.raises(ValueError, match="items >= clusters"):
        PreferenceClickstream(items=5, clusters=10)
    with pytest.raises(ValueError, match="cluster_share"):
        PreferenceClickstream(cluster_share=1.5)
