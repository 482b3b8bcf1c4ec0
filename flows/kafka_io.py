"""Kafka at the edges of the flow: the event source and the dead-letter sink."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Consumer, Producer, TopicPartition
from confluent_kafka import KafkaError as KafkaErrorCode
from confluent_kafka.admin import AdminClient

from flows import metrics as m
from flows.shutdown import stop_requested
from flows.records import DeadLetter, RawRecord, Tick

log = logging.getLogger(__name__)
X = TypeVar("X")

# Headers on a dead-lettered record; its key and value are the original bytes.
DLQ_HEADER_REASON = "pulse.dlq.reason"
DLQ_HEADER_DETAIL = "pulse.dlq.detail"
DLQ_HEADER_SOURCE = "pulse.dlq.source"  # "topic/partition"
DLQ_HEADER_OFFSET = "pulse.dlq.offset"
TICK_INTERVAL_S = 0.2


class _KafkaPartition(StatefulSourcePartition[RawRecord, int]):
    """One topic partition, read with ``assign`` (no consumer group: Bytewax recovery
    keeps the offsets). Emits ``RawRecord``s; consumer errors are counted and logged."""

    def __init__(self, config: dict, topic: str, partition: int, start: int, batch_size: int,
                 poll_timeout: float, tail: bool = True, ticks: bool = True,
                 idle_awake_s: float | None = None) -> None:
        self._topic = topic
        self._idle_awake_s = idle_awake_s
        self._awake: datetime | None = None
        self._tail = tail
        self._ticks = ticks
        self._next_tick = 0.0
        self._ended = False
        self._partition = partition
        self._source = f"{topic}/{partition}"
        self._next = start
        self._batch_size = batch_size
        self._timeout = poll_timeout
        self._eof = False
        self._lag = m.CONSUMER_LAG.labels(topic, str(partition))
        self._errors = m.SOURCE_ERRORS.labels(topic)
        self._consumer = Consumer({**config, "stats_cb": self._on_stats})
        self._consumer.assign([TopicPartition(topic, partition, start)])

    def _on_stats(self, raw: str) -> None:
        stats = orjson.loads(raw)
        part = stats.get("topics", {}).get(self._topic, {}).get("partitions", {}).get(str(self._partition))
        if part and part.get("ls_offset", -1) >= 0 and self._next >= 0:
            self._lag.set(max(0, part["ls_offset"] - self._next))

    def next_batch(self) -> list[RawRecord | Tick]:
        if self._ended or stop_requested():
            raise StopIteration
        if self._eof:
            self._ended = True
            return [Tick(self._source, None, final=True)] if self._ticks else []
        out: list[RawRecord | Tick] = []
        source = self._source
        now_ms = 0
        for msg in self._consumer.consume(self._batch_size, self._timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaErrorCode._PARTITION_EOF:
                    self._eof = True
                    break
                self._errors.inc()
                log.warning("kafka consumer error on %s: %s", source, err)
                continue
            ts_type, ts = msg.timestamp()
            if ts_type == TIMESTAMP_NOT_AVAILABLE or ts <= 0:
                now_ms = now_ms or int(time.time() * 1000)
                ts = now_ms
            offset = msg.offset()
            out.append(RawRecord(msg.value(), msg.key(), source, offset, ts))
            self._next = offset + 1
        if self._idle_awake_s is not None:
            self._awake = None if out else datetime.now(timezone.utc) + timedelta(seconds=self._idle_awake_s)
        if self._ticks:
            now = time.monotonic()
            if now >= self._next_tick:
                self._next_tick = now + TICK_INTERVAL_S
                out.append(Tick(source, self._caught_up_ms() if not out else None))
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def _caught_up_ms(self) -> int | None:
        """The wall clock if nothing is left to read (tailing only): a quiet partition's
        event time follows the wall clock, so time-caused segment changes still happen.

        The high watermark is the one the consumer's last fetch response carried (it comes
        back within a millisecond of a new record on loopback): asking the broker instead
        blocked the worker 0.4-0.5 s per call behind the consumer's pending long-poll
        fetch, every tick of a caught-up partition."""
        if not self._tail:
            return None
        try:
            low, high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, self._partition),
                                                             cached=True)
        except Exception:  # unknown: hold time still rather than guess
            return None
        position = self._next if self._next >= 0 else low
        if high < 0 or position < 0:  # no fetch response yet
            return None
        return int(time.time() * 1000) if position >= high else None

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close()


class KafkaEventSource(FixedPartitionedSource[RawRecord, int]):
    """The events topic(s) as ``RawRecord``s, one Bytewax partition per Kafka partition;
    offsets are kept by Bytewax recovery (resume from the last snapshot)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: list[str],
        *,
        batch_size: int = 1000,
        consumer_config: Mapping[str, str] | None = None,
        tail: bool = True,
        poll_timeout: float = 0.002,
        ticks: bool = True,
        idle_awake_s: float | None = None,
    ) -> None:
        self._topics = list(topics)
        self._idle_awake_s = idle_awake_s
        self._tail = tail
        self._ticks = ticks
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._config = {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "pulse-unused",  # required by librdkafka; offsets are not committed
            "enable.auto.commit": "false",
            "enable.partition.eof": "false" if tail else "true",
            "statistics.interval.ms": "5000",
            **dict(consumer_config or {}),
        }

    def list_parts(self) -> list[str]:
        admin = AdminClient({k: v for k, v in self._config.items()
                             if k not in ("group.id", "enable.auto.commit", "enable.partition.eof")})
        parts = []
        for topic in self._topics:
            meta = admin.list_topics(topic, timeout=30).topics.get(topic)
            if meta is None or meta.error is not None:
                raise RuntimeError(f"Kafka topic {topic!r} is not available: {meta.error if meta else 'missing'}")
            parts.extend(f"{p}-{topic}" for p in sorted(meta.partitions))
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        idx, topic = for_part.split("-", 1)
        start = OFFSET_BEGINNING if resume_state is None else resume_state
        return _KafkaPartition(dict(self._config), topic, int(idx), start, self._batch_size, self._poll_timeout,
                               tail=self._tail, ticks=self._ticks, idle_awake_s=self._idle_awake_s)


class _ProducingPartition(StatelessSinkPartition[X]):
    def __init__(self, sink: _ProducingSink[X], producer: Producer) -> None:
        self._sink = sink
        self._producer = producer

    def write_batch(self, items: list[X]) -> None:
        topic = self._sink.topic
        for item in items:
            key, value, headers = self._sink.message(item)
            self._producer.produce(topic, value=value, key=key, headers=headers)
            self._producer.poll(0)
        # Block until the broker has them: nothing is silently dropped.
        remaining = self._producer.flush(30)
        if remaining:
            raise RuntimeError(f"{self._sink.what} {topic!r}: {remaining} records not acknowledged in 30 s")
        self._sink.delivered(len(items))

    def close(self) -> None:
        self._producer.flush(30)


class _ProducingSink(DynamicSink[X]):
    """Items to one topic with an idempotent producer, one flush per batch."""

    what = "topic"

    def __init__(self, bootstrap_servers: str, topic: str, producer_config: Mapping[str, str] | None = None):
        self._config = {"bootstrap.servers": bootstrap_servers, "enable.idempotence": "true",
                        **dict(producer_config or {})}
        self.topic = topic

    def message(self, item: X) -> tuple[bytes | None, bytes | None, list | None]:
        raise NotImplementedError

    def delivered(self, n: int) -> None:
        return None

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducingPartition[X]:
        return _ProducingPartition(self, Producer(self._config))


class KafkaControlSource(KafkaEventSource):
    """The control topic (erase requests) as ``RawRecord``s, parsed in the flow."""

    def __init__(self, bootstrap_servers: str, topics: list[str], *, consumer_config=None, tail: bool = True):
        # Never block the worker (it reads every partition in turn): poll without waiting,
        # and after an empty poll look again only in 250 ms - erase requests are not urgent.
        super().__init__(bootstrap_servers, topics, batch_size=100, consumer_config=consumer_config, tail=tail,
                         poll_timeout=0, ticks=False, idle_awake_s=0.25)


class KafkaErasureSink(_ProducingSink[dict]):
    """Erase records to a compacted topic (key: the alias the request named), so that
    downstream systems can follow deletions."""

    what = "erasures topic"

    def message(self, record: dict) -> tuple[bytes | None, bytes | None, list | None]:
        return record["alias"].encode(), orjson.dumps(record), None


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    return [
        (DLQ_HEADER_REASON, dl.error.reason.encode()),
        (DLQ_HEADER_DETAIL, dl.error.detail.encode()),
        (DLQ_HEADER_SOURCE, dl.record.source.encode()),
        (DLQ_HEADER_OFFSET, str(dl.record.offset).encode()),
    ]


class KafkaDeadLetterSink(_ProducingSink[DeadLetter]):
    """Invalid records to the dead-letter topic: original key and bytes, reason in headers."""

    what = "dead-letter topic"

    def message(self, dl: DeadLetter) -> tuple[bytes | None, bytes | None, list | None]:
        return dl.record.key, dl.record.value, dead_letter_headers(dl)

    def delivered(self, n: int) -> None:
        m.DLQ_PUBLISHED.inc(n)
