"""Processor metrics, declared once (labels: never a user id)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from operators.events import INVALID_REASONS

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

EVENTS_IN = Counter("pulse_events_in_total", "Records read from the input, per source topic", ["topic"])
EVENTS_OUT = Counter(
    "pulse_events_out_total",
    "Records after processing, by outcome: applied to a profile, replayed (already applied "
    "before a restart, skipped), or invalid (sent to the dead-letter topic)",
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
DLQ_PUBLISHED = Counter("pulse_dlq_published_total", "Records written to the dead-letter sink")
CONSUMER_LAG = Gauge("pulse_consumer_lag", "Records in the partition not yet read (from librdkafka statistics)",
                     ["topic", "partition"])
SOURCE_ERRORS = Counter("pulse_source_errors_total", "Errors reported by the input consumer", ["topic"])

APPLIED = EVENTS_OUT.labels("applied")
REPLAYED = EVENTS_OUT.labels("replayed")
INVALID = EVENTS_OUT.labels("invalid")
INVALID_BY_REASON = {reason: EVENTS_INVALID.labels(reason) for reason in INVALID_REASONS}
LATENCY_INGEST = PROCESSING_LATENCY.labels("ingest")
LATENCY_EVENT = PROCESSING_LATENCY.labels("event")
