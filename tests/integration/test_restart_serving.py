"""The processor restarts (SIGKILL, then a new `pulse run`) while `pulse serve` keeps
serving: reads stay available during the outage, answer from the last state written,
and catch up once the new processor writes again."""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from proto.pulse.v1 import pulse_pb2
from tests.integration.test_pipeline import Pulse, PulsePair, event, wait_for

pytestmark = pytest.mark.kafka


def views(pair: PulsePair, user: str) -> int | None:
    try:
        reply = pair.stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=user), timeout=2)
    except grpc.RpcError as err:
        if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
            return None
        raise
    return reply.profile.event_counts.get("product_view", 0)


def test_reads_stay_available_while_the_processor_restarts_and_then_catch_up(kafka_bootstrap, kafka_topic, tmp_path):
    events, dlq = kafka_topic("events", partitions=1), kafka_topic("dlq")
    pair = PulsePair(kafka_bootstrap, events, dlq, tmp_path)
    try:
        pair.produce([event(f"a{i}", "carol", "product_view", item_id=f"sku-{i}", price=10.0) for i in range(5)])
        wait_for(lambda: views(pair, "carol") == 5, 60, f"carol's 5 views\n{pair.logs()}")

        pair.run.stop(signal.SIGKILL)
        assert pair.run.proc.returncode == -signal.SIGKILL
        # The processor is gone: the server keeps answering from what was written (for a
        # few catch-up rounds, not once), and new events wait on Kafka.
        pair.produce([event(f"b{i}", "carol", "product_view", item_id=f"sku-{i}", price=10.0) for i in range(3)])
        deadline = time.monotonic() + 2.0
        answers = 0
        while time.monotonic() < deadline:
            assert views(pair, "carol") == 5
            answers += 1
            time.sleep(0.1)
        assert answers >= 10

        pair.run = Pulse(["run"], pair.env, tmp_path / "run-2.log")
        wait_for(lambda: views(pair, "carol") == 8, 60, f"carol's 8 views after the restart\n{pair.logs()}")
        assert pair.serve.proc.poll() is None  # the same server process throughout
    finally:
        pair.stop()
