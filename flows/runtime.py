"""Running the profile flow for real: the Kafka pipeline (`pulse run`) and the embedded
demo pipeline (`pulse demo`), with Bytewax recovery and the processor's /metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sqlite3
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka.admin import AdminClient, NewTopic

from flows.changelog import ChangelogPublisher
from flows.cluster import ClusterError, owner_key
from flows.generator_io import GeneratorSource, JsonlDeadLetterSink
from flows.learning import Learner
from flows.memory import GcFreezer
from flows.replay_io import JsonlReplaySource
from flows.kafka_io import KafkaControlSource, KafkaDeadLetterSink, KafkaErasureSink, KafkaEventSource
from flows.outbox import JsonlOutboxPublisher, OutboxPublisher
from flows.profile_flow import ProfileLogic, build_flow
from flows.runtime_state import ProcessorState
from flows.shutdown import install_handlers, stop_requested
from operators.events import ParseOptions
from operators.profile import Policy
from operators.content import load_catalog
from operators.experiments import ExperimentSet, load_experiments
from operators.items import load_catalog as load_item_records
from operators.models import ModelsConfig as OperatorModelsConfig
from operators.segments import SegmentSet, empty, load_segments
from pulse.config import ModelsConfig, PulseConfig
from state.codec import encode_item
from state.store import ProfileStore, meta_key

ITEM_CATALOG_META = "item_catalog"  # sha256 of the catalog file last applied

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A Kafka topic the flow needs is missing or unreachable."""


def check_state_consistent(store, recovery_dir: Path) -> None:
    """Refuse a new, empty store next to Bytewax recovery snapshots: the flow would resume
    after the snapshotted offsets and silently forget every profile before them."""
    if getattr(store, "created", False) and recovery_dir.exists() and any(recovery_dir.iterdir()):
        from state.store import StoreError

        raise StoreError(
            f"the state store at {store.path} is new and empty, but {recovery_dir} holds Bytewax "
            "recovery snapshots: the store was lost or moved. Restore the store from a backup "
            f"(and keep {recovery_dir}), or delete {recovery_dir} to rebuild every profile from the "
            "start of the events topic."
        )


def check_recovery(recovery_dir: Path) -> None:
    """Refuse damaged Bytewax recovery files (SQLite) with the path and what to do,
    before Bytewax meets them (it panics without saying which file)."""
    if not recovery_dir.is_dir():
        return
    from state.store import StoreError

    for part in sorted(recovery_dir.glob("*.sqlite3")):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
                tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
                if verdict == "ok" and not tables:
                    verdict = "no tables: an empty or truncated file"
        except sqlite3.Error as exc:
            verdict = str(exc)
        if verdict != "ok":
            raise StoreError(
                f"the recovery snapshot {part} is damaged ({verdict}). Delete the directory "
                f"{recovery_dir} and start again: the flow then re-reads the events topic from its "
                "start and every profile skips what it already applied, so the state store stays "
                "right (it takes as long as reading the topic again)."
            )


def open_writer_store(cfg: PulseConfig):
    """The flow's store, refused (and closed) if it is new beside recovery snapshots, or
    if those snapshots are damaged."""
    from state.store import RocksStore, StoreOptions

    check_recovery(cfg.recovery_dir)
    store = RocksStore(cfg.store_dir, StoreOptions(write_buffer_mb=cfg.state.write_buffer_mb))
    try:
        check_state_consistent(store, cfg.recovery_dir)
    except Exception:
        store.close()
        raise
    return store


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
    wanted = (cfg.kafka.events_topic, cfg.kafka.dlq_topic, cfg.kafka.control_topic, cfg.kafka.erasures_topic,
              cfg.kafka.triggers_topic, cfg.kafka.exposures_topic,
              *((cfg.kafka.changelog_topic,) if cfg.processor.changelog else ()))
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return
    if not cfg.kafka.create_topics:
        raise TopicError(f"topics {missing} do not exist on {cfg.kafka.bootstrap_servers} "
                         "(create them, or set kafka.create_topics = true)")
    def new_topic(name: str) -> NewTopic:
        if name == cfg.kafka.erasures_topic:  # one record per person, forever: compacted
            return NewTopic(name, 1, config={"cleanup.policy": "compact"})
        if name == cfg.kafka.changelog_topic:  # the newest value per key; tombstones kept a day
            return NewTopic(name, cfg.kafka.topic_partitions,
                            config={"cleanup.policy": "compact", "delete.retention.ms": "86400000"})
        if name == cfg.kafka.control_topic:
            return NewTopic(name, 1)
        return NewTopic(name, cfg.kafka.topic_partitions)

    futures = admin.create_topics([new_topic(t) for t in missing])
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
            log.info("created topic %s", topic)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopicError(f"cannot create topic {topic!r}: {exc}") from exc


DEMO_PII_SECRET = "pulse-demo-secret-not-for-production"
EXAMPLES = Path(__file__).resolve().parent.parent / "deploy"
EXAMPLE_SEGMENTS = EXAMPLES / "segments.yaml"


def example_or(path: str, name: str, demo: bool) -> str:
    """``path``, or for the demo the example file ``deploy/<name>`` when it is there."""
    if path or not demo:
        return path
    example = EXAMPLES / name
    return str(example) if example.exists() else ""


def segment_set(cfg: PulseConfig, *, demo: bool = False) -> SegmentSet:
    """The configured segment definitions (errors name the file, segment and position)."""
    path = example_or(cfg.segments.path, "segments.yaml", demo)
    return load_segments(path) if path else empty()


class ConfigurationMissing(RuntimeError):
    """A setting that `pulse run` needs has no value."""


def flow_settings(cfg: PulseConfig, *, demo: bool = False) -> dict:
    """The flow's privacy, identity and memory settings from the configuration."""
    p = cfg.privacy
    secret = p.pii_secret or (DEMO_PII_SECRET if demo else "")
    if not secret:
        raise ConfigurationMissing(
            "privacy.pii_secret is not set: emails and phone numbers are hashed with it at "
            "ingestion. Set PULSE_PRIVACY_PII_SECRET (keep it stable: changing it splits identities)."
        )
    return {
        "options": ParseOptions(pii_key=secret.encode(), max_future_skew_ms=int(p.max_future_skew_seconds * 1000)),
        "policy": Policy(default_consent=p.default_consent == "opt-out",
                         dedupe_horizon_ms=int(p.dedupe_horizon_hours * 3_600_000),
                         dedupe_max=p.dedupe_max_ids),
        "max_aliases": cfg.identity.max_aliases,
        "cache_profiles": cfg.state.cache_profiles,
        "cache_bytes": cfg.state.cache_mb * 1024 * 1024,
        "segments": segment_set(cfg, demo=demo),
        "lateness_ms": cfg.processor.lateness_ms,
        "content_requirements": content_requirements(cfg, demo=demo),
        "experiments": experiment_set(cfg, demo=demo),
        "models": cfg.models,
    }


def experiment_set(cfg: PulseConfig, *, demo: bool = False):
    """The experiment definitions (the processor joins their exposures with outcomes)."""
    path = example_or(cfg.experiments.path, "experiments.yaml", demo)
    return load_experiments(path) if path else ExperimentSet()


def content_requirements(cfg: PulseConfig, *, demo: bool = False) -> tuple:
    """The counters the content catalog's conditions read (the flow keeps them up to date)."""
    path = example_or(cfg.content.path, "content.yaml", demo)
    return load_catalog(path).requirements if path else ()


def processor_state(store: ProfileStore, settings: dict) -> ProcessorState:
    """The flow's shared state, with stored memberships brought in line with the segment
    definitions (a backfill when they changed since the last run)."""
    state = ProcessorState(store, policy=settings["policy"], max_aliases=settings["max_aliases"],
                           cache_profiles=settings["cache_profiles"],
                           cache_bytes=settings.get("cache_bytes"), segments=settings["segments"],
                           lateness_ms=settings["lateness_ms"], pii_key=settings["options"].pii_key,
                           extra_requirements=settings["content_requirements"],
                           experiments=settings["experiments"], learner=learner(store, settings.get("models")))
    ProfileLogic(state).backfill()
    models = settings.get("models")
    if models is not None and models.catalog_path:
        load_item_catalog(store, state, models.catalog_path)
    return state


def load_item_catalog(store: ProfileStore, state: ProcessorState, path: str) -> int:
    """Apply the JSONL item catalog at ``path`` to the stored items, as of the file's
    modification time (events newer than that still win), unless this very file was
    applied before. Returns the items written. A bad line fails the start
    (``CatalogError`` names the file and line)."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if store.get_meta(ITEM_CATALOG_META) == digest.encode():
        return 0
    records = load_item_records(path)
    at_ms = int(os.stat(path).st_mtime * 1000)
    written = {}
    for rec in records:
        stats = state.items.get(rec["item_id"])
        stats.apply_catalog(rec, at_ms)
        written[rec["item_id"]] = encode_item(stats)
    store.apply({}, items=written, raw={meta_key(ITEM_CATALOG_META): digest.encode()})
    log.info("item catalog %s: %d items applied (as of %d)", path, len(written), at_ms)
    return len(written)


def learner(store: ProfileStore, cfg: ModelsConfig | None) -> Learner:
    """The model step's learner (models resumed from the store), or an inactive one."""
    if cfg is None or not cfg.enabled:
        return Learner(None, None)
    config = OperatorModelsConfig(propensity_horizon_ms=int(cfg.propensity_horizon_minutes * 60_000),
                                  churn_days=cfg.churn_days, drift_policy=cfg.drift_policy,
                                  retrain_examples=cfg.retrain_examples, metric_window=cfg.metric_window)
    return Learner.load(store, config, dim=cfg.factors, learning_rate=cfg.factor_learning_rate, negatives=cfg.negatives,
                        save_interval_s=cfg.save_interval_s)


def kafka_flow(cfg: PulseConfig, store: ProfileStore, *, tail: bool = True,
               state: ProcessorState | None = None) -> Dataflow:
    k = cfg.kafka
    settings = flow_settings(cfg)
    state = state or processor_state(store, settings)
    source = KafkaEventSource(k.bootstrap_servers, [k.events_topic], batch_size=k.batch_size,
                              consumer_config=k.consumer, tail=tail)
    control = KafkaControlSource(k.bootstrap_servers, [k.control_topic], consumer_config=k.consumer, tail=tail)
    dlq = KafkaDeadLetterSink(k.bootstrap_servers, k.dlq_topic, k.producer)
    erasures = KafkaErasureSink(k.bootstrap_servers, k.erasures_topic, k.producer)
    exposures = None
    if state.experiments.experiments:
        # Exposures only join: no heartbeats (they would move the segment clock), no blocking.
        exposures = KafkaEventSource(k.bootstrap_servers, [k.exposures_topic], batch_size=k.batch_size,
                                     consumer_config=k.consumer, tail=tail, poll_timeout=0, ticks=False,
                                     idle_awake_s=0.1)
    return build_flow(source, dlq, store, control=control, erasure_sink=erasures, options=settings["options"],
                      state=state, exposures=exposures, owner=cluster_owner(cfg))


def cluster_owner(cfg: PulseConfig) -> str | None:
    """With several processes (``processor.addresses``): the key routing every record to
    the first worker of process 0; None for one process."""
    processes = len(cfg.processor.cluster())
    return owner_key(processes * cfg.processor.workers) if processes else None


def single_process(cfg: PulseConfig) -> PulseConfig:
    """``cfg`` without the cluster (a replay runs in one process)."""
    processor = dataclasses.replace(cfg.processor, addresses="", process_id=0)
    return dataclasses.replace(cfg, processor=processor)


def replay_flow(cfg: PulseConfig, store: ProfileStore, paths: list[str], *, state: ProcessorState,
                batch_size: int | None = None) -> Dataflow:
    """The profile flow over JSONL event files (``pulse replay``); dead letters go to
    ``<state.dir>/replay-dead-letters.jsonl``."""
    settings = flow_settings(cfg)
    source = JsonlReplaySource(paths, batch_size=batch_size or cfg.kafka.batch_size)
    dlq = JsonlDeadLetterSink(Path(cfg.state.dir) / "replay-dead-letters.jsonl")
    return build_flow(source, dlq, store, options=settings["options"], state=state, flow_id="pulse-replay")


def run_bounded(flow: Dataflow, cfg: PulseConfig) -> bool:
    """Run a bounded ``flow`` to its end without Bytewax recovery (a file replay is
    idempotent by itself: profiles skip lines they already applied). False if stopped
    by a signal."""
    install_handlers()
    try:
        with GcFreezer():
            cli_main(flow, workers_per_process=1)
    except (BytewaxRuntimeError, KeyboardInterrupt) as exc:
        if not _interrupted(exc):
            raise
    return not stop_requested()


def changelog_publisher(cfg: PulseConfig, store, state: ProcessorState) -> ChangelogPublisher | None:
    """With ``processor.changelog``: the flow writes changelog entries and this thread
    publishes them (``flows.changelog``); None otherwise."""
    if not cfg.processor.changelog:
        return None
    k = cfg.kafka
    publisher = ChangelogPublisher(store, k.bootstrap_servers, k.changelog_topic, k.producer)
    state.changelog = True
    state.changelog_listeners.append(publisher.wake)
    return publisher.start()


def trigger_publisher(cfg: PulseConfig, store, state: ProcessorState) -> OutboxPublisher:
    k = cfg.kafka
    publisher = OutboxPublisher(store, k.bootstrap_servers, k.triggers_topic, k.producer)
    state.listeners.append(publisher.wake)
    return publisher.start()


def demo_flow(cfg: PulseConfig, store: ProfileStore, *, limit: int | None = None,
              state: ProcessorState | None = None) -> Dataflow:
    g = cfg.generator
    settings = flow_settings(cfg, demo=True)
    state = state or processor_state(store, settings)
    source = GeneratorSource(users=g.users, events_per_second=g.events_per_second, seed=g.seed,
                             invalid_rate=g.invalid_rate, limit=limit, batch_size=cfg.kafka.batch_size)
    dlq = JsonlDeadLetterSink(Path(cfg.state.dir) / "dead-letters.jsonl")
    return build_flow(source, dlq, store, options=settings["options"], state=state)


def demo_trigger_publisher(cfg: PulseConfig, store, state: ProcessorState) -> OutboxPublisher:
    publisher = JsonlOutboxPublisher(store, Path(cfg.state.dir) / "triggers.jsonl")
    state.listeners.append(publisher.wake)
    return publisher.start()


def run_flow(flow: Dataflow, cfg: PulseConfig) -> bool:
    """Run ``flow`` in this process until its source ends (or forever, when tailing);
    with ``processor.addresses``, as one process of that cluster.

    SIGINT/SIGTERM end the sources, so the flow drains and takes a final snapshot.
    Returns False when stopped by a signal, True at the end of the input. Effects are
    safe either way: a restart resumes from the last recovery snapshot and skips what
    was already applied.
    """
    install_handlers()
    p = cfg.processor
    cluster = {"process_id": p.process_id, "addresses": p.cluster()} if p.addresses else {}
    if p.process_id == 0:
        recovery = recovery_config(cfg.recovery_dir)
    else:  # the snapshots live with process 0; this one holds no recovery partition
        empty = Path(cfg.state.dir) / f"recovery-process-{p.process_id}"
        empty.mkdir(parents=True, exist_ok=True)
        recovery = RecoveryConfig(empty)
    try:
        with GcFreezer():
            cli_main(
                flow,
                workers_per_process=p.workers,
                epoch_interval=timedelta(milliseconds=p.epoch_interval_ms),
                recovery_config=recovery,
                **cluster,
            )
    except (BytewaxRuntimeError, KeyboardInterrupt) as exc:
        if not _interrupted(exc):
            raise
    except BaseException as exc:
        # Timely panics when a peer process goes away (pyo3's PanicException is a BaseException).
        if not cluster or type(exc).__name__ != "PanicException":
            raise
        raise ClusterError(
            f"process {p.process_id} of {p.addresses} lost a peer process and stopped ({exc}). Restart every "
            "process of the cluster: they resume from process 0's recovery snapshots") from exc
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
