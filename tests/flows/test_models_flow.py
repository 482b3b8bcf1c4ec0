"""Models in the profile flow (TestingSource, MemoryStore): delayed labels learnt on the
deciding event or when the horizon passes (timers), scores on profiles, item factors and
co-occurrence written with the items, models saved to the store and resumed, the item
catalog applied at start."""

from __future__ import annotations

import os

import orjson
from prometheus_client import REGISTRY
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.learning import MODELS_META, MODELS_STATUS_META, Learner
from flows.profile_flow import build_flow
from flows.records import RawRecord, Tick
from flows.runtime import load_item_catalog
from flows.runtime_state import ProcessorState
from operators.items import CatalogError
from operators.models import ModelsConfig
from operators.profile import Policy
from state.store import MemoryStore

T0 = 1_795_800_000_000
MIN = 60_000


def ev(i: int, type_: str, user: str, ts: int, **fields) -> dict:
    return {"event_id": f"e{i}", "type": type_, "user_id": user, "timestamp": ts, **fields}


def records(docs: list[dict], source: str = "events/0", start: int = 0) -> list:
    out: list = [RawRecord(orjson.dumps(d), d["user_id"].encode(), source, start + i, d["timestamp"])
                 for i, d in enumerate(docs)]
    out.append(Tick(source, None, final=True))
    return out


def learner(store) -> Learner:
    return Learner.load(store, ModelsConfig(propensity_horizon_ms=30 * MIN, churn_days=14), dim=8)


def run(store, items) -> None:
    flow = build_flow(TestingSource(items), TestingSink([]), store, learner=learner(store))
    run_main(flow)


def status(store) -> dict:
    return orjson.loads(store.get_meta(MODELS_STATUS_META))["models"]


def test_a_purchase_labels_1_at_once_and_a_quiet_horizon_labels_0_by_timer():
    store = MemoryStore()
    docs = [
        ev(1, "product_view", "a", T0, item_id="tent", price=100),
        ev(2, "product_view", "b", T0 + 1000, item_id="mug", price=8),
        ev(3, "purchase", "a", T0 + 5 * MIN, items=[{"item_id": "tent", "price": 100, "quantity": 1}]),
        # Another user moves the partition's event time past b's 30 minutes.
        ev(4, "page_view", "c", T0 + 40 * MIN),
    ]
    visits = REGISTRY.get_sample_value("pulse_segment_time_visits_total")
    run(store, records(docs))
    # c's event moved time past b's horizon and a's second one: each woken once.
    assert REGISTRY.get_sample_value("pulse_segment_time_visits_total") - visits == 2
    got = status(store)["propensity"]
    # a: the purchase decided a's first example (1) and started a second one, whose horizon
    # passed at T0 + 35 m (0, by the timer); b: the horizon passed (0); c's is pending.
    assert (got["examples"], got["positives"]) == (3, 1)
    a, b = store.get("user:a"), store.get("user:b")
    assert "propensity" not in a.labels and "propensity" not in b.labels
    assert store.get("user:c").labels["propensity"][1] == T0 + 70 * MIN
    for profile in (a, b):
        assert set(profile.scores) == {"propensity", "churn"}
        assert all(0.0 <= v <= 1.0 for v in profile.scores.values())
    # The churn example of a was decided by a's next event (activity within 14 days: 0).
    assert status(store)["churn"]["examples"] >= 1 and status(store)["churn"]["positives"] == 0


def test_a_pending_label_deadline_is_a_stored_timer_and_survives_a_restart():
    store = MemoryStore()
    run(store, records([ev(1, "product_view", "b", T0, item_id="mug", price=8)]))
    assert store.get("user:b").labels["propensity"][1] == T0 + 30 * MIN
    assert any(key.endswith(b"user:b") for key, _ in store.scan(b"t"))  # the timer, stored
    before = status(store)["propensity"]["examples"]
    # A second run on the same store: the event time passes the deadline, the stored timer fires.
    run(store, records([ev(2, "page_view", "c", T0 + 31 * MIN)], start=1))
    assert "propensity" not in store.get("user:b").labels
    assert status(store)["propensity"]["examples"] == before + 1


def test_interactions_train_item_and_user_factors_and_co_occurrence():
    store = MemoryStore()
    docs = [ev(i, "product_view", "a", T0 + i * 1000, item_id=item, price=10, category="kitchen")
            for i, item in enumerate(["k1", "k2", "k3", "k1"])]
    run(store, records(docs))
    a = store.get("user:a")
    assert len(a.factors) == 8
    k1, k2 = store.get_item("k1"), store.get_item("k2")
    assert len(k1.factors) == 8 and len(k2.factors) == 8
    assert k1.neighbors.get("k2", 0) > 0 and k2.neighbors.get("k1", 0) > 0  # viewed together, both ways


def test_models_resume_from_the_store_instead_of_starting_over():
    store = MemoryStore()
    run(store, records([ev(1, "product_view", "a", T0, item_id="x", price=5),
                        ev(2, "purchase", "a", T0 + MIN, items=[{"item_id": "x", "price": 5, "quantity": 1}])]))
    assert store.get_meta(MODELS_META) is not None
    first = status(store)["propensity"]["examples"]
    resumed = learner(store)
    assert resumed.models.status()["propensity"]["examples"] == first


def test_models_can_be_switched_off():
    store = MemoryStore()
    flow = build_flow(TestingSource(records([ev(1, "product_view", "a", T0, item_id="x")])), TestingSink([]), store)
    run_main(flow)
    assert store.get("user:a").scores == {} and store.get_meta(MODELS_STATUS_META) is None


def test_the_item_catalog_is_applied_once_and_bad_lines_name_file_and_line(tmp_path):
    store = MemoryStore()
    state = ProcessorState(store, policy=Policy(), max_aliases=50, cache_profiles=100)
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "x", "category": "kitchen", "brand": "Acme", "price": 9.5, "in_stock": false}\n'
                    '{"item_id": "y", "price": 3}\n')
    os.utime(path, (T0 / 1000, T0 / 1000))
    assert load_item_catalog(store, state, str(path)) == 2
    x = store.get_item("x")
    assert (x.category, x.brand, x.price, x.in_stock) == ("kitchen", "Acme", 9.5, False)
    assert load_item_catalog(store, state, str(path)) == 0  # the same file again: nothing to do
    path.write_text('{"item_id": "x"}\n{"item_id": "z", "price": "cheap"}\n')
    with pytest.raises(CatalogError, match=r"items\.jsonl:2: .*price"):
        load_item_catalog(store, state, str(path))
