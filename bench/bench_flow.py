"""Throughput of the profile flow, Kafka -> RocksDB, beside a plain consume loop.

Both read the same synthetic events from the same topic on the same broker in the same
run; the figure that matters is the ratio (this machine is shared and noisy).

    python -m bench.bench_flow [--events 200000] [--partitions 3]

Uses ``PULSE_TEST_KAFKA_BOOTSTRAP`` if set, else starts the test broker.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from bytewax.testing import run_main
from confluent_kafka import Consumer, Producer, TopicPartition

from flows.runtime import kafka_flow
from operators.synthetic import ClickstreamGenerator
from pulse.config import PulseConfig
from state.store import RocksStore
from tests.kafka_broker import KafkaBroker, create_topic, external_bootstrap, produce_all, unique_topic


@contextlib.contextmanager
def kafka():
    ext = external_bootstrap()
    if ext:
        yield ext
        return
    with KafkaBroker(heap="1g") as broker:
        yield broker.bootstrap


def fill_topic(bootstrap: str, topic: str, n: int) -> None:
    gen = ClickstreamGenerator(seed=5, users=20_000, invalid_rate=0.002)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": "20", "batch.num.messages": "10000",
                  "queue.buffering.max.messages": "500000", "compression.type": "lz4"})
    t0 = int(time.time() * 1000) - 3_600_000
    produce_all(p, topic, (gen.next_record(t0 + i) for i in range(n)),
                on_each=lambda i: i % 10_000 == 0 and progress(f"producing {i}/{n}"))
    progress(f"produced {n} events", end="\n")


def progress(text: str, end: str = "\r") -> None:
    print(f"  {text:<60}", end=end, file=sys.stderr, flush=True)


def baseline_consume(bootstrap: str, topic: str, partitions: int, n: int) -> float:
    """Seconds for a plain confluent-kafka batch consume loop to read all ``n`` records."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-baseline", "enable.auto.commit": "false",
                  "enable.partition.eof": "true"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = eof = 0
    t0 = time.perf_counter()
    while eof < partitions:
        for msg in c.consume(1000, 0.5):
            if msg.error() is None:
                seen += 1
                _ = msg.value()
            elif msg.error().code() == -191:  # _PARTITION_EOF
                eof += 1
    elapsed = time.perf_counter() - t0
    c.close()
    if seen != n:
        raise RuntimeError(f"baseline read {seen} records, expected {n}")
    return elapsed


def flow_run(bootstrap: str, topic: str, state_dir: Path) -> tuple[float, int]:
    cfg = (PulseConfig()
           .with_overrides("kafka", bootstrap_servers=bootstrap, events_topic=topic, dlq_topic=topic + ".dlq")
           .with_overrides("privacy", pii_secret="bench-secret"))
    store = RocksStore(state_dir / "store")
    flow = kafka_flow(cfg, store, tail=False)
    t0 = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - t0
    profiles = store.count()
    store.close()
    return elapsed, profiles


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args(argv)
    with kafka() as bootstrap:
        topic = unique_topic("bench-events")
        create_topic(bootstrap, topic, partitions=args.partitions)
        create_topic(bootstrap, topic + ".dlq")
        fill_topic(bootstrap, topic, args.events)
        progress("baseline: plain consume loop")
        base = baseline_consume(bootstrap, topic, args.partitions, args.events)
        progress("pulse flow: Kafka -> parse -> profile -> RocksDB")
        with tempfile.TemporaryDirectory() as d:
            flow, profiles = flow_run(bootstrap, topic, Path(d))
    result = {
        "events": args.events,
        "profiles": profiles,
        "baseline_events_per_s": args.events / base,
        "flow_events_per_s": args.events / flow,
        "throughput_ratio": base / flow,
    }
    progress("done", end="\n")
    print(f"flow throughput, Kafka -> RocksDB ({args.events} events, {profiles} profiles, "
          f"{args.partitions} partitions, 1 worker)")
    print(f"  baseline  plain confluent-kafka consume loop  {result['baseline_events_per_s']:>10,.0f} events/s")
    print(f"  pulse     bytewax flow into RocksDB           {result['flow_events_per_s']:>10,.0f} events/s")
    print(f"  ratio     pulse / baseline                    {result['throughput_ratio']:>10.3f}")
    return result


if __name__ == "__main__":
    main()
