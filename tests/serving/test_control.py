"""ControlPublisher and EraseUser against a real Kafka broker (and against none)."""

from __future__ import annotations

import time

import grpc
import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from flows.parse import parse_control
from flows.records import EraseRequest, RawRecord
from serving import ControlPublisher, ControlUnavailable
from state.store import MemoryStore
from tests.serving.conftest import ADMIN_KEY, make_profile, put_profile


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list:
    """The first ``count`` records of partition 0 of ``topic`` (fails after ``timeout``)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pulse-test-unused",
                         "enable.auto.commit": "false"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(records)} of {count} records on {topic} after {timeout}s")
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                records.append(msg)
    finally:
        consumer.close()
    return records


def test_erase_record_is_what_the_flow_parses():
    from serving import erase_record

    key, value = erase_record("anon:a-9", "r-1")
    parsed = parse_control(RawRecord(value, key, "pulse.control/0", 3, 1_796_205_600_000))
    assert isinstance(parsed, EraseRequest)
    assert (parsed.alias, parsed.request_id) == ("anon:a-9", "r-1")


def test_an_unreachable_broker_is_reported():
    publisher = ControlPublisher("127.0.0.1:1", "pulse.control", timeout_s=1.0)
    try:
        with pytest.raises(ControlUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
            publisher.erase("user:u1", "r-1")
    finally:
        publisher.close()


def test_closed_publisher_refuses():
    publisher = ControlPublisher("127.0.0.1:1", "pulse.control")
    publisher.close()
    publisher.close()  # idempotent
    with pytest.raises(ControlUnavailable, match="closed"):
        publisher.erase("user:u1", "r-1")


@pytest.mark.kafka
def test_erase_user_lands_on_the_control_topic(kafka_bootstrap, kafka_topic, start_server):
    topic = kafka_topic("control")
    store = MemoryStore()
    put_profile(store, make_profile("user:u1"), "anon:a1")
    publisher = ControlPublisher(kafka_bootstrap, topic)
    try:
        srv = start_server(store, admin_api_key=ADMIN_KEY, control=publisher)
        first = srv.erase("u1", request_id="ticket-1")
        second = srv.erase("anon:a1")
        assert (first.request_id, first.profile_id, first.accepted) == ("ticket-1", "user:u1", True)
        assert (second.profile_id, second.accepted) == ("user:u1", True)

        records = read_topic(kafka_bootstrap, topic, 2)
        assert [(r.key(), orjson.loads(r.value())) for r in records] == [
            (b"user:u1", {"command": "erase", "alias": "user:u1", "request_id": "ticket-1"}),
            (b"anon:a1", {"command": "erase", "alias": "anon:a1", "request_id": second.request_id}),
        ]
    finally:
        publisher.close()


@pytest.mark.kafka
def test_a_missing_control_topic_is_unavailable(kafka_bootstrap, start_server):
    topic = f"pulse-missing-{time.monotonic_ns()}"
    publisher = ControlPublisher(kafka_bootstrap, topic, timeout_s=5.0)
    try:
        srv = start_server(MemoryStore(), admin_api_key=ADMIN_KEY, control=publisher)
        with pytest.raises(grpc.RpcError) as info:
            srv.erase("u1", request_id="r")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == (f"control topic {topic!r} does not exist on {kafka_bootstrap}: "
                                        "`pulse run` (or `pulse erase`) creates it")
    finally:
        publisher.close()


@pytest.mark.kafka
def test_publisher_passes_producer_settings_and_stays_idempotent(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("control")
    # A caller's setting cannot turn idempotence off.
    publisher = ControlPublisher(kafka_bootstrap, topic, {"enable.idempotence": "false", "linger.ms": "1"})
    try:
        assert publisher._config["enable.idempotence"] == "true"
        assert publisher._config["linger.ms"] == "1"
        publisher.erase("device:d1", "r-9")
    finally:
        publisher.close()
    (record,) = read_topic(kafka_bootstrap, topic, 1)
    assert record.key() == b"device:d1"
