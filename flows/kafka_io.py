"""Kafka at the edges of the flow: the event source and the dead-letter sink."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, Producer

from flows import metrics as m
from flows.records import DeadLetter, RawRecord

log = logging.getLogger(__name__)

# Headers on a dead-lettered record; its key and value are the original bytes.
DLQ_HEADER_REASON = "pulse.dlq.reason"
DLQ_HEADER_DETAIL = "pulse.dlq.detail"
DLQ_HEADER_SOURCE = "pulse.dlq.source"  # "topic/partition"
DLQ_HEADER_OFFSET = "pulse.dlq.offset"


class _RawPartition(StatefulSourcePartition[RawRecord, int | None]):
    """Adapts Bytewax's Kafka partition: emits ``RawRecord``; consumer errors are logged."""

    def __init__(self, inner: StatefulSourcePartition) -> None:
        self._inner = inner

    def next_batch(self) -> list[RawRecord]:
        out = []
        for msg in self._inner.next_batch():
            if isinstance(msg, KafkaError):
                m.SOURCE_ERRORS.labels(msg.msg.topic or "").inc()
                log.warning("kafka consumer error on %s: %s", msg.msg.topic, msg.err)
                continue
            out.append(_to_raw(msg))
        return out

    def next_awake(self):
        return self._inner.next_awake()

    def snapshot(self) -> int | None:
        return self._inner.snapshot()

    def close(self) -> None:
        self._inner.close()


def _to_raw(msg: KafkaSourceMessage) -> RawRecord:
    ts_type, ts = msg.timestamp if msg.timestamp is not None else (0, 0)
    ingest_ms = ts if ts_type != 0 and ts > 0 else int(time.time() * 1000)
    return RawRecord(msg.value, msg.key, f"{msg.topic}/{msg.partition}", msg.offset, ingest_ms)


class KafkaEventSource(KafkaSource):
    """The events topic(s) as ``RawRecord``s; offsets are kept by Bytewax recovery."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: list[str],
        *,
        batch_size: int = 1000,
        consumer_config: Mapping[str, str] | None = None,
        tail: bool = True,
    ) -> None:
        super().__init__(
            brokers=bootstrap_servers.split(","),
            topics=topics,
            tail=tail,
            starting_offset=OFFSET_BEGINNING,
            add_config=dict(consumer_config or {}),
            batch_size=batch_size,
            raise_on_errors=False,
        )

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RawPartition:
        return _RawPartition(super().build_part(step_id, for_part, resume_state))


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    return [
        (DLQ_HEADER_REASON, dl.error.reason.encode()),
        (DLQ_HEADER_DETAIL, dl.error.detail.encode()),
        (DLQ_HEADER_SOURCE, dl.record.source.encode()),
        (DLQ_HEADER_OFFSET, str(dl.record.offset).encode()),
    ]


class _DlqPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    def write_batch(self, items: list[DeadLetter]) -> None:
        for dl in items:
            self._producer.produce(self._topic, value=dl.record.value, key=dl.record.key,
                                   headers=dead_letter_headers(dl))
            self._producer.poll(0)
        # Block until the broker has them: a dead letter is never silently dropped.
        remaining = self._producer.flush(30)
        if remaining:
            raise RuntimeError(f"dead-letter topic {self._topic!r}: {remaining} records not acknowledged in 30 s")
        m.DLQ_PUBLISHED.inc(len(items))

    def close(self) -> None:
        self._producer.flush(30)


class KafkaDeadLetterSink(DynamicSink[DeadLetter]):
    """Invalid records to the dead-letter topic: original key and bytes, reason in headers."""

    def __init__(self, bootstrap_servers: str, topic: str, producer_config: Mapping[str, str] | None = None):
        self._config = {"bootstrap.servers": bootstrap_servers, "enable.idempotence": "true",
                        **dict(producer_config or {})}
        self._topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DlqPartition:
        return _DlqPartition(Producer(self._config), self._topic)
