"""GetRecommendations over a real loopback gRPC server reading a real RocksDB (secondary
instance) written by a RocksStore, plus request validation at the wire."""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import REGISTRY

from operators.items import ItemStats
from operators.profile import Profile
from proto.pulse.v1 import pulse_pb2
from serving import MAX_USER_ID_CHARS, InvalidArgument, params_from_request
from state.store import RocksStore
from tests.serving.conftest import cart_log, put_items, put_profile, wait_until
from tests.serving.test_server import rpc_error

T = 1_796_205_600_000
ITEMS = [
    ItemStats("t1", "outdoor/tents", price=199.0, score=100.0, ref_ms=T),
    ItemStats("t2", "outdoor/tents", price=99.0, score=90.0, ref_ms=T),
    ItemStats("t3", "outdoor/tents", price=149.0, score=80.0, ref_ms=T),
    ItemStats("t4", "outdoor/tents", price=59.0, score=70.0, ref_ms=T),
    ItemStats("b1", "outdoor/boots", price=120.0, score=95.0, ref_ms=T),
    ItemStats("b2", "outdoor/boots", price=80.0, score=50.0, ref_ms=T),
    ItemStats("k1", "kitchen", price=30.0, score=85.0, ref_ms=T),
    ItemStats("k2", "kitchen", price=5.0, score=30.0, ref_ms=T),
]


def fan(profile_id: str = "user:fan", **fields) -> Profile:
    """Likes kitchen; k1 in the cart, b1 bought."""
    base = dict(categories={"kitchen": 8, "outdoor/tents": 1}, counts={"product_view": 9},
                cart_log=cart_log({"k1": {"qty": 1, "price": 30.0, "category": "kitchen", "added_ms": T}}),
                purchased={"b1": T - 1000}, last_seen_ms=T)
    base.update(fields)
    return Profile(profile_id, **base)


def ids(response) -> list[str]:
    return [i.item_id for i in response.items]


@pytest.fixture
def srv(writer, store_dir, make_reader, start_server):
    put_items(writer, *ITEMS)
    put_profile(writer, fan(), "anon:cookie-1")
    put_profile(writer, fan("user:shy", consent={"personalization": [False, T]}))
    return start_server(make_reader(store_dir), items_refresh_ms=10)


def test_anonymous_visitor_gets_popular_items(srv):
    r = srv.recommend(k=5)
    assert (r.strategy, r.personalized) == ("popular", False)
    assert ids(r) == ["t1", "b1", "t2", "k1", "t3"]
    top = r.items[0]
    assert (top.item_id, top.score, top.reason, top.category, top.price) == (
        "t1", 100.0, "popular now", "outdoor/tents", 199.0)
    assert ids(srv.recommend()) == ["t1", "b1", "t2", "k1", "t3", "b2", "k2"]  # k=0: 10; t4 over the cap


def test_user_with_consent_gets_personal_items_without_cart_and_purchases(srv):
    r = srv.recommend("fan", k=4)
    assert (r.strategy, r.stage, r.personalized) == ("hybrid", "content", True)
    # Content: the fan's kitchen taste (8 of 9 interactions) lifts k2 from last place in the
    # anonymous answer (below four tents and boots) to the top 4; k1 is in the cart and b1
    # was bought, so neither comes back.
    anonymous = ids(srv.recommend("", k=10))
    assert anonymous.index("k2") > 4 and "k2" in ids(r)
    k2 = r.items[ids(r).index("k2")]
    assert k2.reason == "popular in kitchen, a category you like"
    assert "k1" not in ids(srv.recommend("fan", k=100)) and "b1" not in ids(srv.recommend("fan", k=100))
    # any alias of the profile
    assert srv.recommend("anon:cookie-1", k=4) == r


@pytest.mark.parametrize("fields", [
    {}, {"k": 3},
    {"context": pulse_pb2.RecommendationContext(page_type="product", current_item_id="k2", channel="web")},
    {"filters": pulse_pb2.RecommendationFilters(category_prefix="outdoor/", max_price=150.0)},
    {"exclude_item_ids": ["t1", "nope"]},
])
def test_withdrawn_consent_and_unknown_users_get_exactly_the_anonymous_answer(srv, fields):
    anonymous = srv.recommend("", **fields)
    for user in ("shy", "nobody", "anon:never-seen"):
        got = srv.recommend(user, **fields)
        assert got.SerializeToString(deterministic=True) == anonymous.SerializeToString(deterministic=True), user
    assert anonymous.strategy == "popular" and not anonymous.personalized


def test_opt_in_server_personalizes_only_after_a_grant(writer, store_dir, make_reader, start_server):
    put_items(writer, *ITEMS)
    put_profile(writer, fan())
    put_profile(writer, fan("user:yes", consent={"personalization": [True, T]}))
    srv = start_server(make_reader(store_dir), default_consent=False)
    assert srv.recommend("fan") == srv.recommend("")
    assert srv.recommend("yes").strategy == "hybrid"


def test_context_and_filters_over_the_wire(srv):
    r = srv.recommend(k=2, context=pulse_pb2.RecommendationContext(category="kitchen"))
    assert [(i.item_id, i.reason) for i in r.items] == [("k1", "popular in kitchen"), ("t1", "popular now")]
    r = srv.recommend(filters=pulse_pb2.RecommendationFilters(min_price=50.0, max_price=100.0))
    assert ids(r) == ["t2", "t4", "b2"]
    r = srv.recommend(filters=pulse_pb2.RecommendationFilters(max_price=0.0))
    assert ids(r) == [] and r.strategy == "popular"


@pytest.mark.parametrize("fields, message", [
    ({"k": 101}, "k = 101 is out of range: ask for 1..100 items (0 means 10)"),
    ({"k": -1}, "k = -1 is out of range: ask for 1..100 items (0 means 10)"),
    ({"exclude_item_ids": [f"i{n}" for n in range(1001)]}, "exclude_item_ids has 1001 ids; the limit is 1000"),
    ({"filters": pulse_pb2.RecommendationFilters(min_price=10.0, max_price=5.0)},
     "filters.min_price (10) is greater than filters.max_price (5)"),
    ({"filters": pulse_pb2.RecommendationFilters(min_price=float("nan"))},
     "filters.min_price must be a number, got NaN"),
    ({"user_id": "  "}, "user_id is only whitespace; leave it empty for an anonymous visitor"),
    ({"user_id": "x" * (MAX_USER_ID_CHARS + 1)},
     f"user_id is {MAX_USER_ID_CHARS + 1} characters long; the limit is {MAX_USER_ID_CHARS}"),
])
def test_invalid_arguments(srv, fields, message):
    err = rpc_error(lambda: srv.recommend(**fields))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == message


def test_limits_at_the_edge_are_valid(srv):
    assert len(srv.recommend(k=100).items) == len(ITEMS) - 1  # t4: over the cap
    assert srv.recommend(exclude_item_ids=[f"i{n}" for n in range(1000)]).items
    assert ids(srv.recommend(filters=pulse_pb2.RecommendationFilters(min_price=5.0, max_price=5.0))) == ["k2"]


def test_server_settings_max_k_and_max_per_category(writer, store_dir, make_reader, start_server):
    put_items(writer, *ITEMS)
    srv = start_server(make_reader(store_dir), max_k=5, max_per_category=1)
    assert ids(srv.recommend(k=5)) == ["t1", "b1", "k1"]
    err = rpc_error(lambda: srv.recommend(k=6))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "1..5" in err.details()


def test_unavailable_until_the_store_exists_then_empty_then_items(store_dir, make_reader, start_server):
    srv = start_server(make_reader(store_dir), items_refresh_ms=10)
    err = rpc_error(lambda: srv.recommend())
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "not ready" in err.details()
    # A user id does not change that (no profile lookup before the store exists).
    assert rpc_error(lambda: srv.recommend("fan")).code() == grpc.StatusCode.UNAVAILABLE

    writer = RocksStore(store_dir)
    try:
        put_profile(writer, fan())

        def answered():
            try:
                return srv.recommend("fan")
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return None

        empty = wait_until(answered, what="an answer once the store exists")
        assert list(empty.items) == [] and empty.strategy == "popular" and not empty.personalized
        put_items(writer, *ITEMS)
        got = wait_until(lambda: srv.recommend("fan", k=1).items, what="items after the index refresh")
        assert got[0].item_id == "t1"
    finally:
        writer.close()


def test_item_changes_reach_answers_after_a_refresh(writer, store_dir, make_reader, start_server):
    put_items(writer, *ITEMS)
    srv = start_server(make_reader(store_dir), items_refresh_ms=10)
    assert ids(srv.recommend(k=1)) == ["t1"]
    put_items(writer, ItemStats("new", "garden", price=12.0, score=500.0, ref_ms=T))
    wait_until(lambda: ids(srv.recommend(k=1)) == ["new"], what="a newly popular item")


def test_metrics_count_get_recommendations_by_code(srv):
    def count(code: str) -> float:
        return REGISTRY.get_sample_value("pulse_rpc_requests_total",
                                         {"method": "GetRecommendations", "code": code}) or 0.0

    ok, invalid = count("OK"), count("INVALID_ARGUMENT")
    srv.recommend("fan")
    srv.recommend()
    rpc_error(lambda: srv.recommend(k=1000))
    assert count("OK") == ok + 2 and count("INVALID_ARGUMENT") == invalid + 1
    assert REGISTRY.get_sample_value("pulse_rpc_latency_seconds_count",
                                     {"method": "GetRecommendations", "code": "OK"}) >= 2


def test_unexpected_errors_are_internal_without_details(start_server):
    class BrokenItems:
        ready = True

        def iter_items(self):
            raise RuntimeError("secret detail")

        def scan(self, prefix, start=None, limit=None):
            raise RuntimeError("secret detail")

        def catch_up(self):
            return False

    srv = start_server(BrokenItems())
    err = rpc_error(lambda: srv.recommend())
    assert err.code() == grpc.StatusCode.INTERNAL and err.details() == "internal error"


def test_params_from_request_maps_every_field():
    request = pulse_pb2.GetRecommendationsRequest(
        user_id="u1", k=7, exclude_item_ids=["a", "b", "a"],
        context=pulse_pb2.RecommendationContext(page_type="product", current_item_id="c", category="kitchen",
                                                channel="app"),
        filters=pulse_pb2.RecommendationFilters(category_prefix="kit", max_price=0.0))
    p = params_from_request(request, max_k=10, max_per_category=2)
    assert (p.k, p.page_type, p.current_item_id, p.context_category, p.channel) == (7, "product", "c", "kitchen", "app")
    assert p.exclude == frozenset({"a", "b"}) and p.category_prefix == "kit"
    assert (p.min_price, p.max_price, p.max_per_category) == (None, 0.0, 2)  # an explicit 0 is a bound
    with pytest.raises(InvalidArgument, match="1..10"):
        params_from_request(pulse_pb2.GetRecommendationsRequest(k=11), max_k=10, max_per_category=2)
