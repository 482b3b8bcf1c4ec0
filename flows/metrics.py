"""Processor metrics, declared once (labels: never a user id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from operators.events import INVALID_REASONS
from operators.profile import OUTCOMES

# Finer between 0.5 and 10 s than a 1-2.5-5 ladder: a p99 between 2.5 and 5 s read from
# such buckets is an interpolation, not a measurement (the soak's verdicts read these).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10,
                    30, 60)

EVENTS_IN = Counter("pulse_events_in_total", "Records read from the input, per source topic", ["topic"])
EVENTS_OUT = Counter(
    "pulse_events_out_total",
    "Records after processing, by outcome: applied to a profile; duplicate (event_id seen "
    "before, dropped); replayed (re-read after a restart, dropped); suppressed (no analytics "
    "consent, not stored); too_late (older than its partition's watermark minus the allowed "
    "lateness: dead-lettered); invalid (sent to the dead-letter topic)",
    ["outcome"],
)
EVENTS_INVALID = Counter("pulse_events_invalid_total", "Invalid records by reason", ["reason"])
PROCESSING_LATENCY = Histogram(
    "pulse_processing_latency_seconds",
    "Time from ingestion (broker append) or from event time until the profile change is in the "
    "store; observed once per store write, for the oldest record (ingest) and newest event (event)",
    ["clock"],
    buckets=_LATENCY_BUCKETS,
)
STORE_WRITE = Histogram(
    "pulse_store_write_seconds", "Duration of one WriteBatch to RocksDB",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
PROFILES_WRITTEN = Counter("pulse_profiles_written_total", "Profile records written to the store")
PROFILES_IN_MEMORY = Gauge("pulse_profiles_in_memory", "Profiles currently held in processor memory")
PROFILE_LOADS = Counter("pulse_profile_loads_total",
                        "Profile reads from the store: profiles not in processor memory (cache misses), "
                        "found or not")
PROFILE_CACHE_BYTES = Gauge("pulse_profile_cache_bytes",
                            "Estimated process memory of the profiles held in memory (bounded by state.cache_mb)")
DLQ_PUBLISHED = Counter("pulse_dlq_published_total", "Records written to the dead-letter sink")
CONSUMER_LAG = Gauge("pulse_consumer_lag", "Records in the partition not yet read (from librdkafka statistics)",
                     ["topic", "partition"])
RECORDS_MOVED = Counter("pulse_records_moved_total",
                        "Records this process read and handed to the profile step on process 0 (only with "
                        "several pulse run processes, processor.addresses)", ["input"])
SOURCE_ERRORS = Counter("pulse_source_errors_total", "Errors reported by the input consumer", ["topic"])

OUTCOME = {outcome: EVENTS_OUT.labels(outcome) for outcome in (*OUTCOMES, "too_late")}
APPLIED = OUTCOME["applied"]
REPLAYED = OUTCOME["replayed"]
DUPLICATES = OUTCOME["duplicate"]
INVALID = EVENTS_OUT.labels("invalid")
IDENTITY_MERGES = Counter("pulse_identity_merges_total", "Profiles merged into another by identity stitching")
IDENTITY_CONFLICTS = Counter("pulse_identity_conflicts_total",
                             "Links refused because they would merge two different user ids")
IDENTITY_CAPPED = Counter("pulse_identity_alias_cap_hits_total",
                          "Links refused because the profile reached identity.max_aliases")
ERASURES = Counter("pulse_erasures_total", "Erase requests carried out (GDPR/CCPA)")
INVALID_BY_REASON = {reason: EVENTS_INVALID.labels(reason) for reason in INVALID_REASONS}
LATENCY_INGEST = PROCESSING_LATENCY.labels("ingest")
LATENCY_EVENT = PROCESSING_LATENCY.labels("event")

# --- operations (issue 8): build info, store, data quality --------------------------------
# pulse_build_info is shared with serving.metrics (one process may export both): declared
# once in pulse.buildinfo, imported here so every processor exports it.
from pulse.buildinfo import BUILD_INFO  # noqa: E402,F401

PROFILES_IN_STORE = Gauge(
    "pulse_profiles_in_store",
    "Profiles in the state store: RocksDB's estimate (counts overwrites until compaction), "
    "refreshed every few seconds by flows.store_stats",
)
STORE_SIZE = Gauge("pulse_store_size_bytes", "Size on disk of the state store directory (RocksDB files)")
# RocksDB's write path (state.store.StoreHealth), refreshed with the two above: when the
# store's write time grows, these tell compaction falling behind from anything else.
STORE_STALL = Counter("pulse_store_stall_seconds",
                      "Time RocksDB delayed or stopped the processor's store writes (compaction behind)")
STORE_DELAYED_RATE = Gauge("pulse_store_delayed_write_rate_bytes",
                           "Rate RocksDB throttles writes to now (bytes/s); 0 when it is not throttling")
STORE_WRITE_STOPPED = Gauge("pulse_store_write_stopped", "1 while RocksDB stops writes until compaction catches up")
STORE_COMPACTIONS = Gauge("pulse_store_compactions_running", "RocksDB compactions running now")
STORE_LEVEL0 = Gauge("pulse_store_level0_files",
                     "Files in level 0 per column family (RocksDB slows writes down at 20 and stops them at 36)", ["family"])
STORE_PENDING = Gauge("pulse_store_pending_compaction_bytes",
                      "Bytes RocksDB estimates compaction still has to rewrite, per column family", ["family"])
STORE_MEMTABLES = Gauge("pulse_store_memtable_bytes", "Bytes in memtables per column family", ["family"])
FIELD_ISSUES = Counter(
    "pulse_field_issues_total",
    "Records with a missing or invalid field (field names without array indexes; see "
    "operators.quality): on required fields the record was dead-lettered, on optional ones "
    "(context.*, category) the event was applied without it",
    ["field", "issue"],
)
VOLUME_PER_MINUTE = Gauge("pulse_volume_events_per_minute",
                          "Input records in the last complete minute of ingestion time")
VOLUME_LEVEL = Gauge("pulse_volume_level_per_minute",
                     "Recent level of input records per minute (exponentially weighted average)")
VOLUME_RATIO = Gauge(
    "pulse_volume_ratio",
    "Last complete minute's input records / their recent level: ~1 normal, near 0 collapse, "
    ">> 1 flood; NaN while warming up (the first minutes) or when the input is near-silent",
)
for _gauge in (PROFILES_IN_STORE, STORE_SIZE, VOLUME_PER_MINUTE, VOLUME_LEVEL, VOLUME_RATIO):
    _gauge.set(float("nan"))  # unknown until measured: never a false 0 that alerts

# --- segments and triggers (issue 4) --------------------------------------------------------
SEGMENT_MEMBERS = Gauge("pulse_segment_members", "Profiles currently in the segment", ["segment"])
SEGMENT_TRANSITIONS = Counter("pulse_segment_transitions_total",
                              "Segment entries and exits (triggers written to the outbox)",
                              ["segment", "transition"])
LATE_EVENTS = Counter("pulse_late_events_total",
                      "Events older than their profile's segment clock (applied late) or than the "
                      "partition watermark minus the allowed lateness (too_late: dead-lettered)",
                      ["outcome"])
LATE_APPLIED = LATE_EVENTS.labels("applied")
LATE_DROPPED = LATE_EVENTS.labels("too_late")
TIMERS_PENDING = Gauge("pulse_segment_timers_pending", "Profiles waiting for a time-caused segment check")
TIMERS_BEHIND = Gauge("pulse_segment_timers_behind",
                      "1 while profiles whose timer is due wait for later batches (at most 500 are woken per "
                      "batch: after a restart or a lag, time catches up over several batches)")
TIME_VISITS = Counter("pulse_segment_time_visits_total",
                      "Profiles woken by a timer (an instant at which time alone may change a membership "
                      "or a model label) and evaluated there")
OUTBOX_DEPTH = Gauge("pulse_outbox_depth", "Triggers written to the store's outbox and not yet acknowledged by Kafka")
TRIGGERS_PUBLISHED = Counter("pulse_triggers_published_total", "Triggers acknowledged by the triggers topic")
TRIGGER_PUBLISH_LATENCY = Histogram(
    "pulse_trigger_publish_seconds",
    "Time from a trigger's outbox write to the broker's acknowledgement",
    buckets=_LATENCY_BUCKETS,
)
WATERMARK_LAG = Gauge("pulse_watermark_lag_seconds",
                      "Wall clock minus the lowest processed source watermark (event time)")

# --- experiments (issue 7) ------------------------------------------------------------------
EXPOSURES_IN = Counter("pulse_exposures_joined_total", "Exposures read from the exposures topic and joined to profiles")
EXPOSURES_UNKNOWN = Counter("pulse_exposures_unknown_total",
                            "Exposures naming an experiment or variant the processor does not know (ignored)")
EXPERIMENT_UNITS = Counter("pulse_experiment_units_total", "Units enrolled in an experiment variant (first exposure)",
                           ["experiment", "variant"])
EXPERIMENT_CONVERSIONS = Counter("pulse_experiment_conversions_total",
                                 "Enrolled units that purchased within the attribution window", ["experiment", "variant"])
EXPERIMENT_REVENUE = Counter("pulse_experiment_revenue_total",
                             "Revenue of enrolled units within the attribution window", ["experiment", "variant"])


def experiment_gauges(experiment: str, variant: str, change) -> None:
    if change.units:
        EXPERIMENT_UNITS.labels(experiment, variant).inc(change.units)
    if change.converted:
        EXPERIMENT_CONVERSIONS.labels(experiment, variant).inc(change.converted)
    if change.revenue:
        EXPERIMENT_REVENUE.labels(experiment, variant).inc(change.revenue)

# --- models (issue 5) -----------------------------------------------------------------------
MODEL_EXAMPLES = Counter("pulse_model_examples_total",
                         "Delayed-label examples learnt, per model and label (1: the outcome happened)",
                         ["model", "label"])
MODEL_AUC = Gauge("pulse_model_roc_auc",
                  "Rolling ROC AUC of each model's scores, progressive validation (scored before learnt)", ["model"])
MODEL_LOG_LOSS = Gauge("pulse_model_log_loss", "Rolling log loss of each model's scores (progressive validation)",
                       ["model"])
MODEL_DRIFTS = Counter("pulse_model_drifts_total", "Drifts detected in each model's error stream", ["model"])
