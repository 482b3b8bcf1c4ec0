"""Running the profile flow for real: the Kafka pipeline (`pulse run`) and the embedded
demo pipeline (`pulse demo`), with Bytewax recovery and the processor's /metrics."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka.admin import AdminClient, NewTopic

from flows.generator_io import GeneratorSource, JsonlDeadLetterSink
from flows.kafka_io import KafkaDeadLetterSink, KafkaEventSource
from flows.profile_flow import build_flow
from flows.shutdown import install_handlers, stop_requested
from pulse.config import PulseConfig
from state.store import ProfileStore

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A Kafka topic the flow needs is missing or unreachable."""


def recovery_config(directory: Path) -> RecoveryConfig:
    """Bytewax recovery in ``directory``, initialised (one partition) on first use."""
    if not directory.exists() or not any(directory.iterdir()):
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, 1)
    return RecoveryConfig(directory)


def ensure_topics(cfg: PulseConfig, timeout: float = 15.0) -> None:
    """Check the events and DLQ topics exist; create them if configured to."""
    conf = {"bootstrap.servers": cfg.kafka.bootstrap_servers, **dict(cfg.kafka.producer)}
    admin = AdminClient(conf)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except Exception as exc:
        raise TopicError(f"cannot reach Kafka at {cfg.kafka.bootstrap_servers}: {exc}") from exc
    missing = [t for t in (cfg.kafka.events_topic, cfg.kafka.dlq_topic) if t not in existing]
    if not missing:
        return
    if not cfg.kafka.create_topics:
        raise TopicError(f"topics {missing} do not exist on {cfg.kafka.bootstrap_servers} "
                         "(create them, or set kafka.create_topics = true)")
    futures = admin.create_topics([NewTopic(t, cfg.kafka.topic_partitions) for t in missing])
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
            log.info("created topic %s with %d partitions", topic, cfg.kafka.topic_partitions)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopicError(f"cannot create topic {topic!r}: {exc}") from exc


def kafka_flow(cfg: PulseConfig, store: ProfileStore, *, tail: bool = True) -> Dataflow:
    source = KafkaEventSource(cfg.kafka.bootstrap_servers, [cfg.kafka.events_topic],
                              batch_size=cfg.kafka.batch_size, consumer_config=cfg.kafka.consumer, tail=tail)
    dlq = KafkaDeadLetterSink(cfg.kafka.bootstrap_servers, cfg.kafka.dlq_topic, cfg.kafka.producer)
    return build_flow(source, dlq, store, idle_evict_seconds=cfg.state.idle_evict_seconds)


def demo_flow(cfg: PulseConfig, store: ProfileStore, *, limit: int | None = None) -> Dataflow:
    g = cfg.generator
    source = GeneratorSource(users=g.users, events_per_second=g.events_per_second, seed=g.seed,
                             invalid_rate=g.invalid_rate, limit=limit, batch_size=cfg.kafka.batch_size)
    dlq = JsonlDeadLetterSink(Path(cfg.state.dir) / "dead-letters.jsonl")
    return build_flow(source, dlq, store, idle_evict_seconds=cfg.state.idle_evict_seconds)


def run_flow(flow: Dataflow, cfg: PulseConfig) -> bool:
    """Run ``flow`` in this process until its source ends (or forever, when tailing).

    SIGINT/SIGTERM end the sources, so the flow drains and takes a final snapshot.
    Returns False when stopped by a signal, True at the end of the input. Effects are
    safe either way: a restart resumes from the last recovery snapshot and skips what
    was already applied.
    """
    install_handlers()
    try:
        cli_main(
            flow,
            workers_per_process=cfg.processor.workers,
            epoch_interval=timedelta(milliseconds=cfg.processor.epoch_interval_ms),
            recovery_config=recovery_config(cfg.recovery_dir),
        )
    except (BytewaxRuntimeError, KeyboardInterrupt) as exc:
        if not _interrupted(exc):
            raise
    if stop_requested():
        log.info("stopping on signal")
        return False
    return True


def _interrupted(exc: BaseException | None) -> bool:
    """A second signal raises KeyboardInterrupt wherever Python runs; Bytewax wraps it."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            log.info("stopping on signal")
            return True
        exc = exc.__cause__
    return False
