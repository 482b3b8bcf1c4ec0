"""Decide and experiments end to end: `pulse run` + `pulse serve` with the example
segments, content catalog and experiments; decisions follow the user's segments as events
arrive, and every exposure is on the exposures topic."""

from __future__ import annotations

import grpc
import orjson
import pytest

from proto.pulse.v1 import pulse_pb2
from tests.integration.test_pipeline import REPO, PulsePair, event, wait_for
from tests.integration.test_segments import TriggerReader

pytestmark = pytest.mark.kafka


def test_decisions_follow_segments_and_exposures_reach_kafka(kafka_bootstrap, kafka_topic, tmp_path):
    events, dlq = kafka_topic("events", partitions=2), kafka_topic("dlq")
    deploy = REPO / "deploy"
    pair = PulsePair(kafka_bootstrap, events, dlq, tmp_path, PULSE_SEGMENTS_PATH=str(deploy / "segments.yaml"),
                     PULSE_CONTENT_PATH=str(deploy / "content.yaml"),
                     PULSE_EXPERIMENTS_PATH=str(deploy / "experiments.yaml"))
    exposures = TriggerReader(kafka_bootstrap, events + ".exposures")
    try:
        def hero(user):
            try:
                reply = pair.stub.Decide(pulse_pb2.DecideRequest(
                    user_id=user, slots=["hero", "offer"], request_id="page-1",
                    context=pulse_pb2.DecisionContext(channel="web", page_type="home")), timeout=2)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    return None
                raise
            return reply

        first = wait_for(lambda: hero("dana"), 60, "the server\n" + pair.logs())
        assert [d.module_id for d in first.decisions] == ["hero_default", "offer_first_order"]
        # Dana adds to her cart: she enters cart_abandoner, and the hero reminds her.
        pair.produce([event("d1", "dana", "add_to_cart", item_id="tent-1", category="outdoor/tents", price=199.0)])
        reply = wait_for(lambda: (lambda r: r if r and r.decisions[0].module_id == "hero_cart_reminder" else None)(
            hero("dana")), 30, "the cart reminder for dana\n" + pair.logs())
        assert reply.personalized and "cart_abandoner" in reply.decisions[0].reason
        # Recommendations: dana is in the reco experiment (population all).
        reco = pair.stub.GetRecommendations(pulse_pb2.GetRecommendationsRequest(user_id="dana", k=3), timeout=2)
        assert reco.experiment.experiment_id == "reco_personal_vs_popular"
        assert (reco.strategy == "popular") == reco.experiment.control
        records = wait_for(lambda: (lambda rs: rs if any(r["surface"] == "recommendations" for r in rs) else None)(
            exposures.poll()), 30, "the recommendation exposure on Kafka\n" + pair.logs())
        reco_exposure = next(r for r in records if r["surface"] == "recommendations")
        assert (reco_exposure["experiment_id"], reco_exposure["variant_id"], reco_exposure["unit"]) == (
            "reco_personal_vs_popular", reco.experiment.variant_id, "user:dana")
        assert reco_exposure["shown"] == reco.strategy
        assert exposures.messages[-1].key() == b"user:dana"
        assert all(orjson.loads(m.value())["exposure_id"] for m in exposures.messages)
    finally:
        exposures.close()
        pair.stop()
