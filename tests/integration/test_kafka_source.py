"""The events source's heartbeats against a real broker: a partition read to its end
reports the wall clock as its event time (so time alone still moves segments), one with
records left to read does not."""

from __future__ import annotations

import time

import pytest

from flows.kafka_io import KafkaEventSource
from flows.records import RawRecord, Tick
from tests.integration.test_pipeline import produce, wait_for

pytestmark = pytest.mark.kafka


def test_a_partition_reports_the_wall_clock_only_once_it_is_read_to_its_end(kafka_bootstrap, kafka_topic):
    topic = kafka_topic("source", partitions=1)
    produce(kafka_bootstrap, topic, [(b"k", b"%d" % i) for i in range(50)])
    part = KafkaEventSource(kafka_bootstrap, [topic], batch_size=10).build_part("input", f"0-{topic}", None)
    records: list[RawRecord] = []
    behind: list[Tick] = []
    try:
        def read_all():
            for item in part.next_batch():
                if type(item) is Tick:
                    if len(records) < 50:
                        behind.append(item)
                    elif item.watermark_ms is not None:
                        return item
                else:
                    records.append(item)
            return None

        before = int(time.time() * 1000)
        tick = wait_for(read_all, 30, "a heartbeat with the wall clock after the last record")
        assert [r.value for r in records] == [b"%d" % i for i in range(50)]
        assert before <= tick.watermark_ms <= int(time.time() * 1000)
        assert all(t.watermark_ms is None for t in behind)  # records were left: time held still

        produce(kafka_bootstrap, topic, [(b"k", b"late")])
        fresh = wait_for(lambda: [r for r in part.next_batch() if type(r) is RawRecord], 30, "the new record")
        assert [r.value for r in fresh] == [b"late"] and fresh[0].offset == 50
    finally:
        part.close()
