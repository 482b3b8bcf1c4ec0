"""flows.quality_metrics.observe_batch: field issues and input volume from one parsed batch,
as the flow's parse step hands it over."""

from __future__ import annotations

import math

import orjson
from prometheus_client import REGISTRY

from flows.quality_metrics import QualityMetrics, observe_batch
from flows.records import DeadLetter, ParsedEvent, RawRecord
from operators.events import InvalidEvent, parse_event
from operators.quality import VolumeMonitor

MINUTE = 60_000
T0 = 1_795_773_600_000 // MINUTE * MINUTE


def issues(field: str, issue: str) -> float:
    return REGISTRY.get_sample_value("pulse_field_issues_total", {"field": field, "issue": issue}) or 0.0


def batch(n_valid: int, n_missing_id: int, ingest_ms: int) -> tuple[list[RawRecord], list]:
    records, results = [], []
    for i in range(n_valid + n_missing_id):
        doc = {"event_id": f"e{i}", "type": "page_view", "user_id": "u1", "timestamp": ingest_ms}
        if i >= n_valid:
            del doc["event_id"]
        rec = RawRecord(orjson.dumps(doc), b"u1", "pulse.events/0", i, ingest_ms)
        result = parse_event(rec.value, now_ms=ingest_ms)
        records.append(rec)
        results.append(DeadLetter(rec, result) if isinstance(result, InvalidEvent)
                       else ParsedEvent(result, rec.source, rec.offset, rec.ingest_ms))
    return records, results


def test_field_issues_are_counted_per_field_and_issue():
    before_id, before_geo = issues("event_id", "missing"), issues("context.geo", "missing")
    records, results = batch(5, 2, T0)
    observe_batch(records, results)
    assert issues("event_id", "missing") - before_id == 2
    assert issues("context.geo", "missing") - before_geo == 5  # valid events without a context


def test_other_kinds_of_results_are_ignored():
    records, results = batch(1, 0, T0)
    QualityMetrics().observe_batch(records, results + ["a later step's message", None])


def test_volume_gauges_follow_the_monitor():
    quality = QualityMetrics(VolumeMonitor(half_life_minutes=5, warmup_minutes=2))
    for minute in range(6):
        records, results = batch(10, 0, T0 + minute * MINUTE)
        quality.observe_batch(records, results)
    assert REGISTRY.get_sample_value("pulse_volume_events_per_minute") == 10
    assert REGISTRY.get_sample_value("pulse_volume_level_per_minute") == 10
    assert REGISTRY.get_sample_value("pulse_volume_ratio") == 1.0
    records, results = batch(1, 0, T0 + 6 * MINUTE)  # then minutes 5 (10 records) and 6 (1) become final
    quality.observe_batch(records, results)
    records, results = batch(1, 0, T0 + 8 * MINUTE)
    quality.observe_batch(records, results)
    assert REGISTRY.get_sample_value("pulse_volume_events_per_minute") == 1
    assert REGISTRY.get_sample_value("pulse_volume_ratio") < 0.2


def test_the_volume_ratio_is_nan_until_warmed_up():
    quality = QualityMetrics()
    records, results = batch(3, 0, T0)
    quality.observe_batch(records, results)
    assert math.isnan(REGISTRY.get_sample_value("pulse_volume_ratio"))
