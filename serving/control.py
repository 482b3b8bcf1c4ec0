"""Erase requests onto the processor's control topic (the flow is the only store writer).

A request is one record: key = the typed alias (UTF-8), value = orjson
``{"command": "erase", "alias": "<alias>", "request_id": "<id>"}`` (the shape
``flows.parse.parse_control`` reads). ``ControlPublisher.erase`` returns once the
broker has acknowledged the record; the idempotent producer never writes it twice, and
a repeated request is harmless anyway (erasing an erased profile changes nothing).

The Kafka producer is created on the first erase, so a server whose admin RPCs are
never used does not connect to Kafka at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import orjson
from confluent_kafka import KafkaException, Producer

from serving.errors import ControlUnavailable

DEFAULT_TIMEOUT_S = 10.0


def erase_record(alias: str, request_id: str) -> tuple[bytes, bytes]:
    """The control record (key, value) asking the processor to erase ``alias``'s profile.

    >>> erase_record("user:u1", "r-1")
    (b'user:u1', b'{"command":"erase","alias":"user:u1","request_id":"r-1"}')
    """
    return alias.encode("utf-8"), orjson.dumps({"command": "erase", "alias": alias, "request_id": request_id})


class ControlPublisher:
    """Publishes erase requests to ``topic`` and waits (at most ``timeout_s``) for the ack.

    Thread-safe: gRPC handler threads may call ``erase`` concurrently.
    ``producer_config`` holds extra librdkafka settings (security, client id, …);
    idempotence is always on.
    """

    def __init__(self, bootstrap_servers: str, topic: str, producer_config: Mapping[str, str] | None = None,
                 *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self._timeout = timeout_s
        self._config = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": "pulse-control",
            # librdkafka gives up (and reports it) when we stop waiting.
            "message.timeout.ms": str(int(timeout_s * 1000)),
            **dict(producer_config or {}),
            "enable.idempotence": "true",
        }
        self._producer: Producer | None = None
        self._topic_seen = False
        self._closed = False
        self._lock = threading.Lock()

    def _ready_producer(self) -> Producer:
        """The producer, created on first use, once the topic is known to exist."""
        with self._lock:
            if self._closed:
                raise ControlUnavailable("the control publisher is closed")
            if self._producer is None:
                try:
                    self._producer = Producer(self._config)
                except KafkaException as exc:
                    raise ControlUnavailable(f"cannot create a Kafka producer for {self.bootstrap_servers}: "
                                             f"{exc.args[0]}") from exc
            if not self._topic_seen:
                # All topics (no topic argument): asking for one topic may auto-create it.
                try:
                    meta = self._producer.list_topics(timeout=self._timeout)
                except KafkaException as exc:
                    raise ControlUnavailable(f"cannot reach Kafka at {self.bootstrap_servers}: {exc.args[0]}") from exc
                found = meta.topics.get(self.topic)
                if found is None or found.error is not None:
                    why = "does not exist" if found is None else f"is not usable ({found.error})"
                    raise ControlUnavailable(f"control topic {self.topic!r} {why} on {self.bootstrap_servers}: "
                                             "`pulse run` (or `pulse erase`) creates it")
                self._topic_seen = True
            return self._producer

    def erase(self, alias: str, request_id: str) -> None:
        """Publish an erase request for ``alias``; raise ``ControlUnavailable`` unless acknowledged."""
        key, value = erase_record(alias, request_id)
        producer = self._ready_producer()
        done = threading.Event()
        errors: list = []

        def on_delivery(err, _msg) -> None:
            errors.append(err)
            done.set()

        try:
            producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise ControlUnavailable(f"erase request {request_id!r}: Kafka producer refused it: {exc}") from exc
        deadline = time.monotonic() + self._timeout + 1.0  # librdkafka times out first
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ControlUnavailable(
                    f"erase request {request_id!r}: no acknowledgement from Kafka at {self.bootstrap_servers} "
                    f"within {self._timeout:g}s; retrying with the same request_id is safe"
                )
            producer.poll(min(left, 0.05))  # serves any thread's callbacks; ours sets `done`
        if errors[0] is not None:
            raise ControlUnavailable(
                f"erase request {request_id!r} not written to {self.topic!r} on {self.bootstrap_servers}: "
                f"{errors[0].str()}; retrying with the same request_id is safe"
            )

    def close(self) -> None:
        """Deliver what is pending (at most ``timeout_s``) and release the producer (idempotent)."""
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(self._timeout)
            producer.close()
