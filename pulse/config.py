"""Configuration: embedded defaults, overridden by a TOML file, overridden by environment.

Every setting is ``[section] key`` in the file and ``PULSE_<SECTION>_<KEY>`` in the
environment (e.g. ``PULSE_KAFKA_BOOTSTRAP_SERVERS``). librdkafka settings go in the
``[kafka.consumer]`` / ``[kafka.producer]`` tables, or ``PULSE_KAFKA_CONSUMER__<NAME>`` /
``PULSE_KAFKA_PRODUCER__<NAME>`` with dots written as ``_`` (``..._SECURITY_PROTOCOL``).
Variables named ``PULSE_TEST_*`` belong to the test suite and are ignored here, as are
Kubernetes service links (``PULSE_GRPC_PORT``, ``PULSE_GRPC_SERVICE_HOST``, ...).
A bad file or value fails at start with the file, the line and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad configuration; the message names where (file:line or variable) and what."""


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    events_topic: str = "pulse.events"
    dlq_topic: str = "pulse.dlq"
    control_topic: str = "pulse.control"  # erase requests (admin RPC, `pulse erase`)
    erasures_topic: str = "pulse.erasures"  # compacted: one record per erased person
    triggers_topic: str = "pulse.triggers"  # segment entered/exited, keyed by profile id
    exposures_topic: str = "pulse.exposures"  # experiment exposures published by `pulse serve`
    changelog_topic: str = "pulse.profiles"  # compacted: every state change, for serving replicas
    batch_size: int = 1000
    # `pulse run` creates missing topics with this many partitions (false: fail instead).
    create_topics: bool = True
    topic_partitions: int = 3
    consumer: Mapping[str, str] = field(default_factory=dict)
    producer: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StateConfig:
    dir: str = "./pulse-data"
    cache_profiles: int = 100_000  # profiles (and 2x identity links) kept in processor memory
    cache_mb: int = 2048  # estimated memory of the profiles kept in processor memory
    write_buffer_mb: int = 256  # RocksDB memtable of the profiles column family (up to two)


@dataclass(frozen=True)
class PrivacyConfig:
    # Keyed hash secret for emails and phone numbers. `pulse run` refuses to start
    # without one; `pulse demo` uses a fixed demo secret when it is empty.
    pii_secret: str = ""
    default_consent: str = "opt-out"  # "opt-out": granted until withdrawn; "opt-in": denied until granted
    dedupe_horizon_hours: float = 24.0
    dedupe_max_ids: int = 1000
    max_future_skew_seconds: float = 300.0


@dataclass(frozen=True)
class IdentityConfig:
    max_aliases: int = 50


_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def parse_addresses(text: str) -> list[str]:
    """``host:port,host:port`` -> the list; ValueError naming the bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        m = _ADDRESS.match(part)
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise ValueError(f"{part!r} is not host:port")
        out.append(part)
    if len(set(out)) != len(out):
        raise ValueError("an address is listed twice")
    return out



@dataclass(frozen=True)
class ProcessorConfig:
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    workers: int = 1
    # Bytewax snapshot interval. Each snapshot of the live flow stalls it (~0.1-0.5 s here), so
    # a short one costs latency (measured, event -> trigger p99: 680 ms at 1 s and 40 ms at
    # 10 s with 500 events/s; 341 ms at 10 s and 45 ms at 60 s with 1,000 events/s); a long
    # one only means more records re-read (and skipped) after a crash.
    epoch_interval_ms: int = 60_000
    # Events older than their partition's watermark (highest event time read) minus this
    # go to the dead-letter topic as too_late; younger late events update the right buckets.
    lateness_ms: int = 600_000
    # Also publish every state change to kafka.changelog_topic, for `pulse serve --from-changelog`
    # replicas on other machines (costs one extra produce per changed record).
    changelog: bool = False
    # More than one `pulse run` process (Bytewax -i/-a): every process's host:port, comma
    # separated, the same list in every process, and this process's index in it. Process 0
    # holds the store and runs the profile step; the others share the Kafka consumption.
    addresses: str = ""
    process_id: int = 0

    def cluster(self) -> list[str]:
        """The processes' addresses (empty for one process)."""
        return parse_addresses(self.addresses) if self.addresses else []


@dataclass(frozen=True)
class ServingConfig:
    grpc_address: str = "127.0.0.1:50051"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9465
    # "aio": grpc.aio, every Pulse RPC in one event-loop thread; "sync": a thread pool of
    # max_workers handler threads. Same services, keys and TLS (see the README for figures).
    server: str = "aio"
    # Handler threads of the "sync" server. On 2 cores, 2 gave the most throughput: more
    # threads contend for the GIL.
    max_workers: int = 2
    catch_up_interval_ms: int = 20
    # Admin RPCs (erase, export) need this key in the `x-api-key` metadata; empty disables them.
    admin_api_key: str = ""
    # More keys, one `KEY ROLE` per line (role read|admin, `#` comments). With any key
    # configured (here or above) every pulse.v1 RPC needs one; with none, reads are open.
    api_keys_file: str = ""
    # TLS: certificate and private key (PEM, given together); a client CA adds mTLS.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Larger requests are refused by gRPC (RESOURCE_EXHAUSTED).
    max_request_bytes: int = 64 * 1024
    # GetRecommendations: at most this many items of one category per answer (diversity),
    # the largest `k` a request may ask for, and how often the item index is rebuilt
    # (only when the store changed).
    max_per_category: int = 3
    max_k: int = 100
    items_refresh_ms: int = 2000
    # `pulse serve --from-changelog`: where the replica keeps its own store (empty: <state.dir>/replica).
    replica_dir: str = ""


@dataclass(frozen=True)
class SegmentsConfig:
    # The segment definitions (YAML, see deploy/segments.yaml). Empty: no segments;
    # `pulse demo` then uses the example file shipped in deploy/.
    path: str = ""


@dataclass(frozen=True)
class ContentConfig:
    # The content catalog Decide chooses from (YAML, see deploy/content.yaml). Empty: Decide
    # answers FAILED_PRECONDITION; `pulse demo` then uses the example in deploy/.
    path: str = ""


@dataclass(frozen=True)
class ExperimentsConfig:
    # Experiment definitions (YAML, see deploy/experiments.yaml). Empty: no experiments;
    # `pulse demo` then uses the example in deploy/.
    path: str = ""


@dataclass(frozen=True)
class ModelsConfig:
    enabled: bool = True  # learn propensity, churn and recommendation models in the flow
    propensity_horizon_minutes: float = 30.0  # "will purchase within this horizon"
    churn_days: int = 14  # "no activity for this many days"
    drift_policy: str = "reset"  # on a detected drift: "log", "reset" or "retrain"
    retrain_examples: int = 500  # "retrain": the recent labelled examples a fresh model learns
    metric_window: int = 1000  # examples in the rolling ROC AUC and log loss
    factors: int = 32  # latent dimensions of the collaborative filtering model
    factor_learning_rate: float = 0.15  # its SGD step (0.05 learnt a third less on the quality benchmark)
    negatives: int = 2  # sampled negative items per interaction
    save_interval_s: float = 30.0  # how often the processor writes the models to the store
    # Item catalog (JSONL: item_id, category, brand, price, in_stock), loaded into the
    # store at start; empty: items are known from events only.
    catalog_path: str = ""


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 2000
    events_per_second: float = 200.0
    seed: int = 7
    invalid_rate: float = 0.005


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "text"  # "text" or "json" (one JSON object per line)


@dataclass(frozen=True)
class PulseConfig:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    state: StateConfig = field(default_factory=StateConfig)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    log: LogConfig = field(default_factory=LogConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)

    @property
    def store_dir(self) -> Path:
        return Path(self.state.dir) / "store"

    @property
    def recovery_dir(self) -> Path:
        return Path(self.state.dir) / "recovery"

    def with_overrides(self, section: str, **values: Any) -> PulseConfig:
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)})


_SECTION_TYPES = {
    "kafka": KafkaConfig,
    "state": StateConfig,
    "processor": ProcessorConfig,
    "segments": SegmentsConfig,
    "content": ContentConfig,
    "experiments": ExperimentsConfig,
    "models": ModelsConfig,
    "serving": ServingConfig,
    "generator": GeneratorConfig,
    "log": LogConfig,
    "privacy": PrivacyConfig,
    "identity": IdentityConfig,
}
_TABLE_FIELDS = {("kafka", "consumer"), ("kafka", "producer")}
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, <SERVICE>_PORT_50051_TCP...
# for every Service; a Service named "pulse-..." must not break configuration loading.
_SERVICE_LINK = re.compile(r"^PULSE_[A-Z0-9_]*?(_SERVICE_HOST|_SERVICE_PORT(_[A-Z0-9_]+)?|_PORT_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?)$")
_SERVICE_LINK_PORT = re.compile(r"^PULSE_[A-Z0-9_]+_PORT$")  # value: tcp://host:port


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of ``key`` in ``[section]`` (tomllib keeps no positions)."""
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.\-]+)\s*\]", stripped)
        if header:
            current = header.group(1)
            if key is None and current == section:
                return n
            continue
        if key is not None and current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped):
            return n
    return None


def _coerce(value: Any, typ: Any, where: str, name: str) -> Any:
    typ_name = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if typ_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if typ_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {name} must be an integer, got {value!r}")
        return value
    if typ_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        return float(value)
    if typ_name == "str":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {name} must be a non-empty string, got {value!r}")
        return value
    if typ_name.startswith("Mapping"):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name} must be a table of librdkafka settings")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    raise ConfigError(f"{where}: {name}: unsupported setting type {typ_name}")


def _from_env_string(raw: str, typ: Any, var: str) -> Any:
    typ_name = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if typ_name == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment variable {var}: expected true or false, got {raw!r}")
    try:
        if typ_name == "int":
            return int(raw)
        if typ_name == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {var}: expected {typ_name}, got {raw!r}") from None
    return raw


def _validate(cfg: PulseConfig, where_of) -> None:
    checks = [
        ("processor", "metrics_port", 0 <= cfg.processor.metrics_port <= 65535, "must be a port in 0..65535"),
        ("serving", "metrics_port", 0 <= cfg.serving.metrics_port <= 65535, "must be a port in 0..65535"),
        ("processor", "workers", cfg.processor.workers >= 1, "must be at least 1"),
        ("processor", "epoch_interval_ms", cfg.processor.epoch_interval_ms >= 10, "must be at least 10"),
        ("processor", "lateness_ms", 0 <= cfg.processor.lateness_ms <= 7 * 86_400_000, "must be in 0..604800000 (7 days)"),
        ("kafka", "batch_size", 1 <= cfg.kafka.batch_size <= 100_000, "must be in 1..100000"),
        ("kafka", "topic_partitions", cfg.kafka.topic_partitions >= 1, "must be at least 1"),
        ("state", "cache_profiles", cfg.state.cache_profiles >= 100, "must be at least 100"),
        ("state", "cache_mb", cfg.state.cache_mb >= 16, "must be at least 16"),
        ("state", "write_buffer_mb", 4 <= cfg.state.write_buffer_mb <= 4096, "must be between 4 and 4096"),
        ("privacy", "default_consent", cfg.privacy.default_consent in ("opt-in", "opt-out"),
         "must be \"opt-in\" or \"opt-out\""),
        ("privacy", "dedupe_horizon_hours", cfg.privacy.dedupe_horizon_hours > 0, "must be positive"),
        ("privacy", "dedupe_max_ids", cfg.privacy.dedupe_max_ids >= 10, "must be at least 10"),
        ("privacy", "max_future_skew_seconds", cfg.privacy.max_future_skew_seconds >= 0, "must be >= 0"),
        ("identity", "max_aliases", cfg.identity.max_aliases >= 2, "must be at least 2"),
        ("serving", "server", cfg.serving.server in ("aio", "sync"), "must be \"aio\" or \"sync\""),
        ("serving", "max_workers", cfg.serving.max_workers >= 1, "must be at least 1"),
        ("serving", "catch_up_interval_ms", cfg.serving.catch_up_interval_ms >= 1, "must be at least 1"),
        ("serving", "grpc_address", ":" in cfg.serving.grpc_address, "must be host:port"),
        ("serving", "max_per_category", cfg.serving.max_per_category >= 1, "must be at least 1"),
        ("serving", "max_k", 1 <= cfg.serving.max_k <= 10_000, "must be in 1..10000"),
        ("serving", "items_refresh_ms", cfg.serving.items_refresh_ms >= 10, "must be at least 10"),
        ("serving", "max_request_bytes", 1024 <= cfg.serving.max_request_bytes <= 64 * 1024 * 1024,
         "must be in 1024..67108864"),
        ("serving", "tls_key_file", bool(cfg.serving.tls_cert_file) == bool(cfg.serving.tls_key_file),
         "must be given together with serving.tls_cert_file (both or neither)"),
        ("serving", "tls_client_ca_file", not cfg.serving.tls_client_ca_file or bool(cfg.serving.tls_cert_file),
         "needs serving.tls_cert_file and serving.tls_key_file (mTLS is on top of TLS)"),
        ("models", "propensity_horizon_minutes", 0 < cfg.models.propensity_horizon_minutes <= 7 * 1440,
         "must be in (0, 10080] (7 days)"),
        ("models", "churn_days", 0 < cfg.models.churn_days <= 90, "must be in (0, 90]"),
        ("models", "drift_policy", cfg.models.drift_policy in ("log", "reset", "retrain"),
         "must be \"log\", \"reset\" or \"retrain\""),
        ("models", "retrain_examples", 10 <= cfg.models.retrain_examples <= 100_000, "must be in 10..100000"),
        ("models", "metric_window", 50 <= cfg.models.metric_window <= 100_000, "must be in 50..100000"),
        ("models", "factors", 2 <= cfg.models.factors <= 256, "must be in 2..256"),
        ("models", "factor_learning_rate", 0 < cfg.models.factor_learning_rate <= 1, "must be in (0, 1]"),
        ("models", "negatives", 1 <= cfg.models.negatives <= 20,
         "must be in 1..20 (BPR learns from an interaction against sampled negatives)"),
        ("models", "save_interval_s", cfg.models.save_interval_s > 0, "must be positive"),
        ("generator", "users", cfg.generator.users >= 1, "must be at least 1"),
        ("generator", "events_per_second", cfg.generator.events_per_second > 0, "must be positive"),
        ("generator", "invalid_rate", 0 <= cfg.generator.invalid_rate <= 1, "must be in [0, 1]"),
        ("log", "level", cfg.log.level in ("DEBUG", "INFO", "WARNING", "ERROR"),
         "must be one of DEBUG, INFO, WARNING, ERROR"),
        ("log", "format", cfg.log.format in ("text", "json"), "must be \"text\" or \"json\""),
    ]
    try:
        processes = len(cfg.processor.cluster())
    except ValueError as exc:
        raise ConfigError(f"{where_of('processor', 'addresses')}: processor.addresses = "
                          f"{cfg.processor.addresses!r}: {exc} (expected host:port,host:port,...)") from None
    checks.append(("processor", "process_id", 0 <= cfg.processor.process_id < max(processes, 1),
                   f"must be in 0..{max(processes, 1) - 1} (an index into processor.addresses)"))
    for section, key, ok, what in checks:
        if not ok:
            value = getattr(getattr(cfg, section), key)
            raise ConfigError(f"{where_of(section, key)}: {section}.{key} = {value!r} {what}")


def with_cluster(cfg: PulseConfig, addresses: str | None, process_id: int | None) -> PulseConfig:
    """``cfg`` with the command line's ``-a``/``-i`` (None: keep the configured value),
    checked like the configuration."""
    changes = {k: v for k, v in (("addresses", addresses), ("process_id", process_id)) if v is not None}
    if not changes:
        return cfg
    out = dataclasses.replace(cfg, processor=dataclasses.replace(cfg.processor, **changes))
    _validate(out, lambda s, k: "command line" if (s, k) in {("processor", n) for n in changes} else "configuration")
    return out


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> PulseConfig:
    """Defaults, then the TOML file at ``path`` (or ``$PULSE_CONFIG``), then ``PULSE_*``."""
    env = os.environ if env is None else env
    path = path if path is not None else env.get("PULSE_CONFIG") or None
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_TYPES}
    origin: dict[tuple[str, str], str] = {}
    text = ""
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read configuration file: {exc.strerror}") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = _TOML_POS.search(str(exc))
            msg = _TOML_POS.sub("", str(exc)).strip()
            line = f":{m.group(1)}:{m.group(2)}" if m else ""
            raise ConfigError(f"{p}{line}: invalid TOML: {msg}") from None
        for section, body in doc.items():
            if section not in _SECTION_TYPES:
                line = _line_of(text, section, None)
                raise ConfigError(
                    f"{p}:{line}: unknown section [{section}]; known: {', '.join(_SECTION_TYPES)}"
                )
            if not isinstance(body, dict):
                raise ConfigError(f"{p}:{_line_of(text, section, None) or _line_of(text, '', section)}: "
                                  f"{section} must be a [{section}] table")
            known = {f.name: f.type for f in dataclasses.fields(_SECTION_TYPES[section])}
            for key, value in body.items():
                line = _line_of(text, section, key)
                if line is None and (section, key) in _TABLE_FIELDS:
                    line = _line_of(text, f"{section}.{key}", None)
                where = f"{p}:{line}" if line else str(p)
                if key not in known:
                    raise ConfigError(f"{where}: unknown setting {section}.{key}; known: {', '.join(known)}")
                sections[section][key] = _coerce(value, known[key], where, f"{section}.{key}")
                origin[(section, key)] = where

    prefix = "PULSE_"
    for var, raw in env.items():
        if not var.startswith(prefix) or var == "PULSE_CONFIG" or var.startswith("PULSE_TEST_"):
            continue
        link = _SERVICE_LINK.match(var) or (_SERVICE_LINK_PORT.match(var) and "://" in raw)
        if link and not any(var.startswith(f"PULSE_{sec.upper()}_") for sec in _SECTION_TYPES):
            continue
        rest = var[len(prefix):].lower()
        for section, cls in _SECTION_TYPES.items():
            if not rest.startswith(section + "_"):
                continue
            key = rest[len(section) + 1:]
            for table in ("consumer", "producer"):
                if section == "kafka" and key.startswith(table + "__"):
                    setting = key[len(table) + 2:].replace("_", ".")
                    merged = dict(sections["kafka"].get(table, {}))
                    merged[setting] = raw
                    sections["kafka"][table] = merged
                    break
            else:
                known = {f.name: f.type for f in dataclasses.fields(cls)}
                if key not in known or (section, key) in _TABLE_FIELDS:
                    raise ConfigError(f"environment variable {var}: unknown setting {section}.{key}")
                value = _from_env_string(raw, known[key], var)
                sections[section][key] = _coerce(value, known[key], f"environment variable {var}", f"{section}.{key}")
                origin[(section, key)] = f"environment variable {var}"
            break
        else:
            raise ConfigError(f"environment variable {var}: unknown section; known: {', '.join(_SECTION_TYPES)}")

    cfg = PulseConfig(**{name: cls(**sections[name]) for name, cls in _SECTION_TYPES.items()})
    _validate(cfg, lambda s, k: origin.get((s, k), "default"))
    return cfg
