"""Decide and experiments over gRPC: validation, consent, constraints, experiment
assignment with exposures, recommendations under an experiment, configuration reload."""

from __future__ import annotations

import grpc
import orjson
import pytest

from operators.items import ItemStats
from proto.pulse.v1 import pulse_pb2
from serving.decisions import ExposureSink
from state.store import MemoryStore
from tests.serving.conftest import ADMIN_KEY, make_profile, put_items, put_profile

CONTENT = "deploy/content.yaml"
SEGMENTS = "deploy/segments.yaml"
EXPERIMENTS = """experiments:
  - id: hero_test
    surface: hero
    variants:
      - {id: control, weight: 0.5, control: true}
      - {id: vip_hero, weight: 0.5, module: hero_vip}
  - id: reco_test
    surface: recommendations
    variants:
      - {id: control, weight: 0.5, control: true}
      - {id: personal, weight: 0.5, strategy: personal}
"""


class Recorder(ExposureSink):
    def __init__(self) -> None:
        self.records: list[dict] = []

    def publish(self, record: dict) -> None:
        self.records.append(record)


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def decide(srv, user_id="", slots=("hero",), channel="web", page_type="home", metadata=()):
    return srv.stub.Decide(pulse_pb2.DecideRequest(user_id=user_id, slots=list(slots), context=pulse_pb2.DecisionContext(
        channel=channel, page_type=page_type)), metadata=metadata, timeout=5)


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    put_profile(s, make_profile("user:vip", segments={"vip": [1, "v"], "cart_abandoner": [2, "v"]}, orders=9))
    put_profile(s, make_profile("user:shy", segments={"vip": [1, "v"]},
                                consent={"personalization": [False, 1_796_205_000_000]}))
    put_items(s, *(ItemStats(f"tents:{i}", "outdoor/tents" if i % 2 else "home/kitchen", price=100.0 + i,
                             score=float(100 - i), ref_ms=1_796_205_000_000) for i in range(8)))
    return s


def test_one_module_per_slot_in_request_order_with_payload_and_reason(start_server, store):
    srv = start_server(store, content_file=CONTENT, segments_file=SEGMENTS)
    reply = decide(srv, "vip", slots=("offer", "hero"))
    assert reply.personalized
    assert [(d.slot, d.module_id) for d in reply.decisions] == [("offer", "offer_vip_shipping"),
                                                                ("hero", "hero_cart_reminder")]
    assert orjson.loads(reply.decisions[1].payload_json)["url"] == "/cart"
    assert reply.decisions[1].reason == "targets segment cart_abandoner, channel web (priority 90)"


def test_without_personalization_consent_or_profile_the_decision_is_anonymous(start_server, store):
    srv = start_server(store, content_file=CONTENT)
    for user in ("shy", "unknown-user", ""):
        reply = decide(srv, user, slots=("hero", "offer"))
        assert not reply.personalized
        assert [d.module_id for d in reply.decisions] == ["hero_default", "offer_first_order"], user


@pytest.mark.parametrize("slots,message", [
    ((), "slots is empty"),
    (("banner",), "unknown slot 'banner'; slots: chatbot_greeting, hero, offer"),
    (("hero", "hero"), "slot 'hero' is requested twice"),
    (("hero",) * 21, "21 slots requested; the limit is 20"),
])
def test_bad_slots_are_invalid_argument_with_the_reason(start_server, store, slots, message):
    srv = start_server(store, content_file=CONTENT)
    err = rpc_error(lambda: decide(srv, "vip", slots=slots))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.details()


def test_decide_without_a_catalog_is_a_failed_precondition(start_server, store):
    err = rpc_error(lambda: decide(start_server(store), "vip"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "content.path" in err.details()


def test_experiments_assign_deterministically_and_publish_exposures(start_server, store, tmp_path):
    exp_file = tmp_path / "experiments.yaml"
    exp_file.write_text(EXPERIMENTS)
    sink = Recorder()
    srv = start_server(store, content_file=CONTENT, experiments_file=str(exp_file), segments_file=SEGMENTS,
                       exposures=sink)
    first = decide(srv, "vip", slots=("hero",)).decisions[0]
    again = decide(srv, "vip", slots=("hero",)).decisions[0]
    assert first.experiment == again.experiment and first.experiment.experiment_id == "hero_test"
    if first.experiment.control:  # the holdout sees the non-personal choice
        assert first.module_id == "hero_default" and "control (non-personal)" in first.reason
    else:
        assert first.module_id == "hero_vip" and first.reason.startswith("experiment variant")
    assert [(r["experiment_id"], r["variant_id"], r["unit"], r["surface"], r["shown"]) for r in sink.records] == [
        ("hero_test", first.experiment.variant_id, "user:vip", "hero", first.module_id)] * 2
    # Across many users both variants occur, and each user always gets the same one.
    variants = {u: decide(srv, u).decisions[0].experiment.variant_id for u in (f"u{i}" for i in range(60))}
    assert set(variants.values()) == {"control", "vip_hero"}
    assert variants == {u: decide(srv, u).decisions[0].experiment.variant_id for u in variants}
    # An anonymous request without an id is in no experiment, and exposes nothing.
    before = len(sink.records)
    assert not decide(srv, "").decisions[0].HasField("experiment")
    assert len(sink.records) == before


def test_recommendations_control_gets_exactly_the_non_personal_answer(start_server, store, tmp_path):
    exp_file = tmp_path / "experiments.yaml"
    exp_file.write_text(EXPERIMENTS)
    sink = Recorder()
    srv = start_server(store, content_file=CONTENT, experiments_file=str(exp_file), exposures=sink)
    anonymous = srv.recommend("", k=5)
    seen = set()
    for user in (f"u{i}" for i in range(40)):
        put_profile(store, make_profile(f"user:{user}"))
        reply = srv.recommend(user, k=5)
        seen.add(reply.experiment.variant_id)
        if reply.experiment.control:
            assert reply.strategy == "popular" and not reply.personalized
            assert [i.item_id for i in reply.items] == [i.item_id for i in anonymous.items]
        else:
            assert reply.strategy == "personal"
    assert seen == {"control", "personal"}
    assert {r["surface"] for r in sink.records} == {"recommendations"}
    assert len(sink.records) == 40


def test_reload_swaps_the_configuration_and_a_bad_file_keeps_the_running_one(start_server, store, tmp_path):
    content = tmp_path / "content.yaml"
    content.write_text("slots: {hero: {}}\nmodules:\n  - {id: only_one, slot: hero}\n")
    srv = start_server(store, content_file=str(content), admin_api_key=ADMIN_KEY)
    key = (("x-api-key", ADMIN_KEY),)
    assert decide(srv, "vip", metadata=key).decisions[0].module_id == "only_one"
    content.write_text("slots: {hero: {}}\nmodules:\n  - {id: only_one, slot: hero}\n  - {id: better, slot: hero, priority: 5}\n")
    reply = srv.admin.ReloadConfiguration(pulse_pb2.ReloadConfigurationRequest(), metadata=key, timeout=5)
    assert reply.modules == 2
    assert decide(srv, "vip", metadata=key).decisions[0].module_id == "better"
    content.write_text("slots: {hero: {}}\nmodules:\n  - {id: broken, slot: nowhere}\n")
    err = rpc_error(lambda: srv.admin.ReloadConfiguration(pulse_pb2.ReloadConfigurationRequest(), metadata=key,
                                                          timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{content}:3:24: module 'broken': unknown slot 'nowhere'" in err.details()
    assert decide(srv, "vip", metadata=key).decisions[0].module_id == "better"  # still the good one


def test_experiment_results_over_grpc(start_server, tmp_path):
    from operators.attribution import Totals
    from state.store import experiment_key

    store = MemoryStore()
    day = 20_800
    raw = {}
    for variant, units, conv in (("control", 5000, 250), ("personal", 5000, 400)):
        t = Totals(units=units, converted=conv, engaged=units // 3, revenue=conv * 40.0, revenue_sq=conv * 1600.0)
        raw[experiment_key("reco_test", variant, day)] = orjson.dumps(t.to_record())
    store.apply({}, raw=raw)
    exp_file = tmp_path / "experiments.yaml"
    exp_file.write_text(EXPERIMENTS)
    srv = start_server(store, content_file=CONTENT, experiments_file=str(exp_file))
    reply = srv.stub.GetExperimentResults(pulse_pb2.GetExperimentResultsRequest(experiment_id="reco_test"), timeout=5)
    assert (reply.primary_metric, reply.days) == ("conversion", 1)
    assert [(v.variant_id, v.units, v.control) for v in reply.variants] == [("control", 5000, True),
                                                                          ("personal", 5000, False)]
    comp = next(c for c in reply.comparisons if c.metric == "conversion")
    assert comp.difference == pytest.approx(0.03) and comp.p_value < 1e-6 and comp.significant
    assert comp.ci_low > 0 and comp.relative_uplift == pytest.approx(0.6)
    assert not reply.sample_ratio.mismatch
    err = rpc_error(lambda: srv.stub.GetExperimentResults(
        pulse_pb2.GetExperimentResultsRequest(experiment_id="nope"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "experiments: hero_test, reco_test" in err.details()
    err = rpc_error(lambda: srv.stub.GetExperimentResults(pulse_pb2.GetExperimentResultsRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
