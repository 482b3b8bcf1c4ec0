"""operators.models: delayed-label semantics, progressive validation, learning and the
stored form (drift detection: test_model_drift.py)."""

from __future__ import annotations

import math
import pickle
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.events import parse_event
from operators.models import (
    BEHAVIOUR_TYPES,
    CHURN,
    INACTIVITY,
    PROPENSITY,
    PURCHASE,
    STARTED,
    Models,
    ModelsConfig,
    ModelSpec,
    OnlineModel,
    features,
    roc_auc,
)
from operators.profile import Profile

T0 = 1_795_800_000_000
MIN = 60_000
HOUR = 60 * MIN
P_HORIZON = 30 * MIN
C_HORIZON = 14 * 24 * HOUR


def touch(models: Models, profile: Profile, etype: str, ts: int) -> list:
    """What the flow does for one behaviour event, minus parsing: apply, then on_event."""
    profile.counts[etype] = profile.counts.get(etype, 0) + 1
    profile.first_seen_ms = min(profile.first_seen_ms or ts, ts)
    profile.last_seen_ms = max(profile.last_seen_ms, ts)
    return models.on_event(profile, etype, ts)


def outcomes(labels) -> list[tuple]:
    return [(label.model, label.y, label.created_ms, label.resolved_ms) for label in labels]


def spec_stream(rng: random.Random, n: int, flipped: bool):
    """x = {a, b}; y follows the sign of a (10% label noise), reversed when flipped."""
    for _ in range(n):
        a, b = rng.gauss(0, 1), rng.gauss(0, 1)
        y = (a > 0) != flipped
        if rng.random() < 0.1:
            y = not y
        yield {"a": a, "b": b}, y


PROBES = [{"a": a, "b": b} for a, b in ((-2.0, 0.0), (-0.5, 1.0), (0.0, 0.0), (0.7, -1.0), (2.0, 0.3))]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value", [
    ("propensity_horizon_ms", 0),
    ("propensity_horizon_ms", True),
    ("churn_days", -1),
    ("churn_min_gap_ms", -5),
    ("drift_policy", "panic"),
    ("retrain_examples", 0),
    ("metric_window", 0),
    ("learning_rate", 0.0),
    ("learning_rate", float("nan")),
    ("learning_rate", "fast"),
])
def test_bad_config_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"ModelsConfig.{field}: "):
        ModelsConfig(**{field: value})


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "clicks"}, "kind"),
    ({"horizon_ms": 0}, "horizon_ms"),
    ({"min_gap_ms": -1}, "min_gap_ms"),
    ({"name": ""}, "name"),
])
def test_bad_spec_values_raise_naming_the_field(kwargs, field):
    args = {"name": "m", "kind": PURCHASE, "horizon_ms": 1000, **kwargs}
    with pytest.raises(ValueError, match=f"ModelSpec.{field}: "):
        ModelSpec(**args)


def test_default_specs():
    assert ModelsConfig().specs() == (
        ModelSpec(PROPENSITY, PURCHASE, P_HORIZON, 0),
        ModelSpec(CHURN, INACTIVITY, C_HORIZON, HOUR),
    )


# --------------------------------------------------------------------------- label semantics


def test_purchase_inside_the_horizon_is_a_positive_and_other_events_decide_nothing():
    m, p = Models(), Profile("user:a")
    assert touch(m, p, "add_to_cart", T0) == []
    # a page view decides the churn example (any event does), not the propensity one
    assert outcomes(touch(m, p, "page_view", T0 + MIN)) == [(CHURN, False, T0, T0 + MIN)]
    got = outcomes(touch(m, p, "purchase", T0 + 5 * MIN))
    assert got == [(PROPENSITY, True, T0, T0 + 5 * MIN)]
    assert p.labels[PROPENSITY][0] == T0 + 5 * MIN  # the purchase starts the next one


def test_purchase_exactly_at_the_deadline_counts_as_inside():
    m, p = Models(), Profile("user:a")
    touch(m, p, "page_view", T0)
    got = outcomes(touch(m, p, "purchase", T0 + P_HORIZON))
    assert (PROPENSITY, True, T0, T0 + P_HORIZON) in got


def test_propensity_times_out_at_its_deadline():
    m, p = Models(), Profile("user:a")
    touch(m, p, "page_view", T0)
    assert m.next_deadline(p) == T0 + P_HORIZON
    assert m.advance(p, T0 + P_HORIZON - 1) == []
    assert outcomes(m.advance(p, T0 + P_HORIZON)) == [(PROPENSITY, False, T0, T0 + P_HORIZON)]
    assert PROPENSITY not in p.labels
    assert m.next_deadline(p) == T0 + C_HORIZON  # churn still pending


def test_an_event_after_the_deadline_resolves_by_timeout_first():
    m, p = Models(), Profile("user:a")
    touch(m, p, "page_view", T0)
    got = outcomes(touch(m, p, "purchase", T0 + P_HORIZON + 1))
    assert (PROPENSITY, False, T0, T0 + P_HORIZON) in got  # not a late positive
    assert p.labels[PROPENSITY][:2] == [T0 + P_HORIZON + 1, T0 + 2 * P_HORIZON + 1]


def test_inactivity_any_event_inside_is_a_negative_including_at_the_deadline():
    cfg = ModelsConfig(churn_min_gap_ms=0)
    m, p = Models(cfg), Profile("user:a")
    touch(m, p, "page_view", T0)
    got = outcomes(touch(m, p, "search", T0 + C_HORIZON))
    assert got == [(PROPENSITY, False, T0, T0 + P_HORIZON), (CHURN, False, T0, T0 + C_HORIZON)]


def test_inactivity_times_out_as_a_positive_at_its_deadline():
    m, p = Models(), Profile("user:a")
    touch(m, p, "login", T0)
    m.advance(p, T0 + P_HORIZON)
    assert m.advance(p, T0 + C_HORIZON - 1) == []
    assert outcomes(m.advance(p, T0 + C_HORIZON)) == [(CHURN, True, T0, T0 + C_HORIZON)]
    assert p.labels == {} and m.next_deadline(p) is None
    # an event a second later finds nothing to decide and starts both models again
    assert touch(m, p, "page_view", T0 + C_HORIZON + 1000) == []
    assert set(p.labels) == {PROPENSITY, CHURN}


def test_events_at_or_before_creation_decide_nothing():
    m, p = Models(), Profile("user:a")
    touch(m, p, "page_view", T0)
    before = {k: list(v) for k, v in p.labels.items()}
    assert m.on_event(p, "purchase", T0) == []  # same millisecond as the example
    assert m.on_event(p, "purchase", T0 - 5 * MIN) == []  # late
    assert p.labels == before


def test_late_events_do_not_start_examples_but_are_scored():
    m, p = Models(), Profile("user:a")
    p.last_seen_ms = T0 + HOUR  # the profile has seen a newer event already
    p.counts = {"page_view": 3}
    assert m.on_event(p, "page_view", T0) == []
    assert p.labels == {}
    assert set(p.scores) == {PROPENSITY, CHURN}


def test_min_gap_spaces_churn_examples():
    m, p = Models(), Profile("user:a")  # churn_min_gap_ms = 1 h
    touch(m, p, "page_view", T0)
    got = outcomes(touch(m, p, "page_view", T0 + 10 * MIN))
    assert (CHURN, False, T0, T0 + 10 * MIN) in got
    assert CHURN not in p.labels and p.labels[CHURN + STARTED] == [T0]
    touch(m, p, "page_view", T0 + HOUR - 1)
    assert CHURN not in p.labels
    touch(m, p, "page_view", T0 + HOUR)
    assert p.labels[CHURN][0] == T0 + HOUR
    assert CHURN + STARTED not in p.labels
    assert m.next_deadline(p) == min(p.labels[PROPENSITY][1], T0 + HOUR + C_HORIZON)


def test_at_most_one_pending_example_per_model():
    m, p = Models(ModelsConfig(churn_min_gap_ms=0)), Profile("user:a")
    for i in range(50):
        touch(m, p, "product_view", T0 + i * 1000)
    assert p.labels[PROPENSITY][0] == T0  # still the first: views do not decide it
    assert p.labels[CHURN][0] == T0 + 49 * 1000  # each view decided the previous one
    assert set(p.labels) == {PROPENSITY, CHURN}
    assert m.status()[CHURN]["examples"] == 49


def test_non_behaviour_events_change_nothing():
    m, p = Models(), Profile("user:a")
    touch(m, p, "page_view", T0)
    labels, scores = {k: list(v) for k, v in p.labels.items()}, dict(p.scores)
    assert m.on_event(p, "consent_update", T0 + C_HORIZON + 1) == []
    assert m.on_event(p, "teleport", T0 + 1) == []
    assert p.labels == labels and p.scores == scores


def test_forget_drops_pending_examples_and_gap_markers_only():
    m, p = Models(), Profile("user:a")
    touch(m, p, "page_view", T0)
    touch(m, p, "page_view", T0 + MIN)
    p.labels["someone_elses"] = [1, 2]
    m.forget(p)
    assert p.labels == {"someone_elses": [1, 2]} and m.next_deadline(p) is None


def test_pending_examples_survive_the_profile_record_round_trip():
    m, p = Models(), Profile("user:a")
    touch(m, p, "add_to_cart", T0)
    stored = Profile.from_record(orjson.loads(orjson.dumps(p.to_record())))
    assert stored.labels == p.labels
    assert outcomes(m.advance(stored, T0 + P_HORIZON)) == [(PROPENSITY, False, T0, T0 + P_HORIZON)]


# --------------------------------------------------------------------------- features and scores


def rich_profile() -> Profile:
    p = Profile("user:rich")
    events = [
        ("product_view", T0, {"item_id": "tent", "category": "tents", "brand": "acme", "price": 120}),
        ("add_to_cart", T0 + MIN, {"item_id": "tent", "category": "tents", "price": 120, "quantity": 2}),
        ("purchase", T0 + 2 * MIN, {"item_id": "boot", "price": 80}),
        ("search", T0 + 3 * MIN, {"query": "stove"}),
    ]
    for i, (etype, ts, fields) in enumerate(events):
        doc = {"event_id": f"e{i}", "type": etype, "user_id": "rich", "timestamp": ts, **fields}
        assert p.apply(parse_event(orjson.dumps(doc), now_ms=ts), "t/0", i) == "applied"
    p.recent_orders = [[T0 + 2 * MIN, 80.0]]
    return p


def test_features_are_dense_finite_and_read_the_profile_only():
    empty, rich = Profile("user:e"), rich_profile()
    rich.counters = None  # never read

    def snapshot():
        return orjson.dumps({k: v for k, v in vars(rich).items() if k not in ("counters", "changed", "_cart")})

    before = snapshot()
    x_empty = features(empty, T0, None)
    x_rich = features(rich, T0 + 3 * MIN, "search")
    assert snapshot() == before  # not mutated
    assert set(x_empty) == set(x_rich)
    assert all(type(v) is float and math.isfinite(v) for v in (*x_empty.values(), *x_rich.values()))
    assert x_rich["is_search"] == 1.0 and sum(x_rich["is_" + t] for t in BEHAVIOUR_TYPES) == 1.0
    assert sum(x_empty["is_" + t] for t in BEHAVIOUR_TYPES) == 0.0
    assert x_rich["cart_items"] == pytest.approx(math.log1p(2))
    assert x_rich["cart_value"] == pytest.approx(math.log1p(240))
    assert x_rich["orders"] == pytest.approx(math.log1p(1))
    assert x_rich["since_order_h"] == pytest.approx(math.log1p(1 / 60))
    one = pytest.approx(math.log1p(1))
    assert x_rich["session_views"] == x_rich["session_carts"] == x_rich["session_purchases"] == one
    assert x_empty["idle_h"] == x_empty["since_order_h"] == x_empty["prev_gap_h"] > 5


def test_session_activity_is_the_last_30_minutes():
    p = Profile("user:s")
    p.recent = [[T0 - 31 * MIN, "a", "product_view"], [T0 - 29 * MIN, "b", "product_view"], [T0, "c", "add_to_cart"]]
    x = features(p, T0, "add_to_cart")
    assert x["session_views"] == pytest.approx(math.log1p(1))
    assert x["session_carts"] == pytest.approx(math.log1p(1))
    assert x["prev_gap_h"] == pytest.approx(math.log1p(29 / 60))


profile_fields = st.fixed_dictionaries({
    "counts": st.dictionaries(st.sampled_from(BEHAVIOUR_TYPES + ("consent_update", "odd")),
                              st.integers(0, 10**12), max_size=6),
    "orders": st.integers(0, 10**9),
    "total_spend": st.floats(0, 1e15),
    "first_seen_ms": st.integers(0, T0),
    "last_seen_ms": st.integers(0, T0 + 10**12),
    "recent_orders": st.lists(st.tuples(st.integers(0, T0 * 2), st.floats(0, 1e9)).map(list), max_size=5),
    "recent": st.lists(st.tuples(st.integers(0, T0 * 2), st.just("i"), st.sampled_from(BEHAVIOUR_TYPES)).map(list),
                       max_size=10),
    "price_taste": st.tuples(st.integers(-50_000_000, 50_000_000), st.integers(0, 5)).map(list),
})


@settings(max_examples=150, deadline=None)
@given(fields=profile_fields, now=st.integers(0, T0 * 2), etype=st.sampled_from(BEHAVIOUR_TYPES + (None,)))
def test_any_profile_gives_finite_features_and_scores_in_unit_interval(fields, now, etype):
    p = Profile("user:h", **fields)
    x = features(p, now, etype)
    assert all(math.isfinite(v) for v in x.values())
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig())
    assert 0.0 <= model.predict(x) <= 1.0
    for y in (True, False, True):
        model.learn(x, y, 0.5, 0)
        assert 0.0 <= model.predict(x) <= 1.0


def test_non_finite_inputs_never_give_nan_scores_or_poison_the_model():
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig())
    for x, y in spec_stream(random.Random(1), 200, False):
        model.learn(x, y, model.predict(x), 0)
    before = [model.predict(q) for q in PROBES]
    for bad in ({"a": float("nan"), "b": 0.0}, {"a": float("inf"), "b": 0.0}, {"a": 1e308, "b": -1e308}):
        assert 0.0 <= model.predict(bad) <= 1.0
        model.learn(bad, True, float("nan"), 0)
    assert model.status()["skipped"] == 3  # none of them learnt
    assert model.status()["log_loss"] is not None and math.isfinite(model.status()["log_loss"])
    assert [model.predict(q) for q in PROBES] == before  # the model is not poisoned


def test_folded_predict_equals_the_river_pipeline():
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig())
    rng = random.Random(2)
    for x, y in spec_stream(rng, 300, False):
        x["const"] = 1.0  # never varies: the scaler maps it to 0
        model.learn(x, y, model.predict(x), 0)
    for probe in [*PROBES, {"a": 1.0}, {"b": 2.0, "unknown": 5.0}]:
        want = model.pipeline.predict_proba_one(probe)[True]
        assert model.predict(probe) == pytest.approx(want, abs=1e-12)


def test_scores_are_written_rounded_for_every_model():
    m, p = Models(), rich_profile()
    m.on_event(p, "search", T0 + 3 * MIN)
    assert set(p.scores) == {PROPENSITY, CHURN}
    assert all(0.0 <= s <= 1.0 and round(s, 4) == s for s in p.scores.values())


# --------------------------------------------------------------------------- progressive validation


def test_metrics_see_the_score_given_when_the_example_was_made():
    m, p = Models(), Profile("user:a")
    touch(m, p, "add_to_cart", T0)
    assert p.labels[PROPENSITY][2] == 0.5  # the untrained model's answer
    x = p.labels[PROPENSITY][3]
    status = m.status()[PROPENSITY]
    assert status["log_loss"] is None and status["roc_auc"] is None and status["examples"] == 0
    [label] = m.advance(p, T0 + P_HORIZON)
    assert label.score == 0.5
    model = m.models[PROPENSITY]
    assert list(model.window) == [(False, 0.5, pytest.approx(math.log(2)))]
    assert m.status()[PROPENSITY]["log_loss"] == round(math.log(2), 6)
    assert model.predict(x) < 0.5  # and learnt it afterwards


def test_learn_scores_before_learning():
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig())
    x = {"a": 1.0}
    model.learn(x, True, 0.9, 0)  # the model itself would have said 0.5
    assert model.window[-1][2] == pytest.approx(-math.log(0.9))
    assert model.predict(x) > 0.5  # and it did learn the example


def test_rolling_auc_waits_for_both_classes_and_forgets_old_examples():
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig(metric_window=4))
    for y, s in ((False, 0.2), (False, 0.4)):
        model.learn({"a": 0.0}, y, s, 0)
    assert model.status()["roc_auc"] is None
    for y, s in ((True, 0.9), (True, 0.1), (False, 0.3), (False, 0.5)):
        model.learn({"a": 0.0}, y, s, 0)
    # window: (T .9) (T .1) (F .3) (F .5) -> pairs won: .9 beats both, .1 beats none
    assert model.status()["roc_auc"] == 0.5
    assert model.status()["window"] == 4 and model.status()["examples"] == 6


def test_roc_auc_matches_pair_counting():
    rng = random.Random(3)
    pairs = [(rng.random() < 0.3, round(rng.random(), 1)) for _ in range(300)]  # many ties
    pos = [s for y, s in pairs if y]
    neg = [s for y, s in pairs if not y]
    want = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    assert roc_auc(pairs) == pytest.approx(want, abs=1e-12)
    assert roc_auc([(True, 0.3)]) is None


# --------------------------------------------------------------------------- learning


def simulate(models: Models, n_users: int, seed: int = 1) -> None:
    """Users put something in the cart (then 70% buy within 10 minutes) or only look (5% buy)."""
    rng = random.Random(seed)
    offset = 0
    for u in range(n_users):
        p, ts = Profile(f"user:{u}"), T0 + u * MIN
        cart = rng.random() < 0.5
        steps = [("add_to_cart", ts, {"item_id": "tent", "price": 120})] if cart else \
            [("product_view", ts, {"item_id": "tent"})]
        if rng.random() < (0.7 if cart else 0.05):
            steps.append(("purchase", ts + 10 * MIN, {"item_id": "tent", "price": 120}))
        for etype, at, fields in steps:
            offset += 1
            doc = {"event_id": f"e{offset}", "type": etype, "user_id": str(u), "timestamp": at, **fields}
            p.apply(parse_event(orjson.dumps(doc), now_ms=at), "t/0", offset)
            models.on_event(p, etype, at)
        models.advance(p, ts + HOUR)


def test_the_propensity_model_learns_a_planted_signal():
    models = Models()
    simulate(models, 3000)
    status = models.status()[PROPENSITY]
    assert status["examples"] > 3000 and status["window"] == 1000
    assert status["roc_auc"] > 0.75
    assert status["log_loss"] < math.log(2)
    assert status["drifts"] == 0  # getting better is not a drift
    assert orjson.loads(orjson.dumps(models.status())) == models.status()  # JSON-safe


# --------------------------------------------------------------------------- stored form


def test_dumps_loads_round_trip_gives_identical_models():
    models = Models()
    simulate(models, 300)
    x = features(rich_profile(), T0 + 3 * MIN, "search")
    loaded = Models.loads(models.dumps(), ModelsConfig())
    assert loaded.status() == models.status()
    for name in (PROPENSITY, CHURN):
        assert loaded.models[name].predict(x) == models.models[name].predict(x)
    for m in (models, loaded):  # and they keep learning alike (detector, buffers, scaler)
        m.models[PROPENSITY].learn(x, True, 0.3, T0)
    assert loaded.models[PROPENSITY].predict(x) == models.models[PROPENSITY].predict(x)
    assert loaded.status() == models.status()


def test_loads_refuses_other_versions_and_garbage():
    state = pickle.loads(Models().dumps())
    state["v"] = 999
    with pytest.raises(ValueError, match="version 999"):
        Models.loads(pickle.dumps(state), ModelsConfig())
    with pytest.raises(ValueError, match="models state"):
        Models.loads(b"not a pickle", ModelsConfig())


def test_loads_applies_the_new_config():
    models = Models()
    simulate(models, 100)
    loaded = Models.loads(models.dumps(), ModelsConfig(propensity_horizon_ms=HOUR, drift_policy="log",
                                                       metric_window=10))
    assert loaded.models[PROPENSITY].status()["examples"] == 0  # other horizon: learns afresh
    churn = loaded.models[CHURN].status()
    assert churn["examples"] == models.status()[CHURN]["examples"] > 0
    assert churn["policy"] == "log" and churn["window"] <= 10
