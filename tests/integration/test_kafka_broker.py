"""Smoke test of the real Kafka broker harness: produce and consume keyed messages."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

PARTITIONS = 3
MESSAGES = 100
KEYS = 10


@pytest.mark.kafka
def test_produce_consume_keyed_roundtrip(kafka_bootstrap: str, kafka_topic) -> None:
    topic = kafka_topic("smoke", partitions=PARTITIONS)
    expected = {f"payload-{i}".encode(): f"user-{i % KEYS}".encode() for i in range(MESSAGES)}

    delivered: dict[bytes, set[int]] = defaultdict(set)
    errors: list[KafkaError] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.key()].add(msg.partition())

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for payload, key in expected.items():
        producer.produce(topic, value=payload, key=key, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert errors == []

    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap,
        "group.id": f"smoke-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumed: dict[bytes, bytes] = {}
    key_partitions: dict[bytes, set[int]] = defaultdict(set)
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(consumed) < MESSAGES and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            assert msg.value() not in consumed, f"duplicate {msg.value()!r}"
            consumed[msg.value()] = msg.key()
            key_partitions[msg.key()].add(msg.partition())
    finally:
        consumer.close()

    assert consumed == expected
    # The same key always lands in the same partition, on produce and on consume.
    assert all(len(parts) == 1 for parts in key_partitions.values()), key_partitions
    assert key_partitions == delivered
    assert len(set().union(*key_partitions.values())) > 1, "all keys hashed to one partition"
