"""The flow's first steps: raw Kafka records into validated events, erase requests and
exposures, or dead letters with a reason (``flows.profile_flow`` wires them)."""

from __future__ import annotations

from typing import Any

import orjson

from flows import metrics as m
from flows.quality_metrics import observe_batch
from flows.records import DeadLetter, EraseRequest, ParsedEvent, ParsedExposure, RawRecord, Tick
from flows.runtime_state import ProcessorState
from operators.events import DEFAULT_OPTIONS, InvalidEvent, ParseOptions, parse_event
from operators.identity import is_alias
from operators.pii import scrub_record

_topic_counters: dict[str, Any] = {}


def parse_batch(records: list[RawRecord | Tick], options: ParseOptions = DEFAULT_OPTIONS,
                state: ProcessorState | None = None) -> list[ParsedEvent | DeadLetter | Tick]:
    """Parse a batch; metrics are counted once per batch, not per record. Invalid records
    keep their bytes for the dead-letter topic, with raw PII scrubbed out. With ``state``,
    every event is stamped with its source's watermark (segment time)."""
    out: list[ParsedEvent | DeadLetter | Tick] = []
    per_topic: dict[str, int] = {}
    invalid = 0
    clocks = state.clocks if state is not None else None
    ticks = False
    for rec in records:
        if type(rec) is Tick:
            ticks = True
            if clocks is not None:
                if rec.watermark_ms is not None:
                    clocks.stamp(rec.source, rec.watermark_ms)
                out.append(Tick(rec.source, clocks.read.get(rec.source, 0), rec.final,
                                clocks.parsed.get(rec.source, 0)))
            continue
        result = parse_event(rec.value, now_ms=rec.ingest_ms, options=options)
        if isinstance(result, InvalidEvent):
            invalid += 1
            m.INVALID_BY_REASON[result.reason].inc()
            value, _removed = scrub_record(rec.value, options.pii_key)
            key, _removed = scrub_record(rec.key, options.pii_key)  # producers may key by email
            if value is not rec.value or key is not rec.key:
                rec = RawRecord(value, key, rec.source, rec.offset, rec.ingest_ms)
            out.append(DeadLetter(rec, result))
        else:
            if clocks is not None:
                wm = clocks.stamp(rec.source, result.ts_ms)
                clocks.parsed[rec.source] = clocks.parsed.get(rec.source, 0) + 1
            else:
                wm = result.ts_ms
            out.append(ParsedEvent(result, rec.source, rec.offset, rec.ingest_ms, wm, rec))
        per_topic[rec.source] = per_topic.get(rec.source, 0) + 1
    for source, n in per_topic.items():
        counter = _topic_counters.get(source)
        if counter is None:
            counter = _topic_counters[source] = m.EVENTS_IN.labels(source.rsplit("/", 1)[0])
        counter.inc(n)
    if invalid:
        m.INVALID.inc(invalid)
    if ticks:
        records = [r for r in records if type(r) is not Tick]
        observe_batch(records, [x for x in out if type(x) is not Tick])
    else:
        observe_batch(records, out)
    return out


def parse_control(rec: RawRecord) -> EraseRequest | DeadLetter:
    """A control-topic record: ``{"command": "erase", "alias": "...", "request_id": "..."}``."""
    try:
        doc = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError as exc:
        return DeadLetter(rec, InvalidEvent("not_json", f"control record is not JSON: {exc}"))
    if not isinstance(doc, dict) or doc.get("command") != "erase":
        return DeadLetter(rec, InvalidEvent("bad_field", "control record needs \"command\": \"erase\""))
    alias, request_id = doc.get("alias"), doc.get("request_id")
    if not isinstance(alias, str) or not alias.strip() or len(alias) > 300:
        return DeadLetter(rec, InvalidEvent("bad_field", "control record needs a non-empty string 'alias'"))
    if not isinstance(request_id, str):
        request_id = f"{rec.source}@{rec.offset}"
    return EraseRequest(alias.strip(), request_id, rec.ingest_ms)


def parse_exposure(rec: RawRecord) -> ParsedExposure | DeadLetter:
    """An exposures-topic record (``serving.decisions.exposure``)."""
    try:
        doc = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError as exc:
        return DeadLetter(rec, InvalidEvent("not_json", f"exposure record is not JSON: {exc}"))
    if not isinstance(doc, dict):
        return DeadLetter(rec, InvalidEvent("not_object", "exposure record is not a JSON object"))
    for name in ("unit", "experiment_id", "variant_id"):
        if not isinstance(doc.get(name), str) or not doc[name] or len(doc[name]) > 300:
            return DeadLetter(rec, InvalidEvent("bad_field", f"exposure field {name!r} must be a non-empty string"))
    ts = doc.get("ts_ms")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
        return DeadLetter(rec, InvalidEvent("bad_timestamp", "exposure field 'ts_ms' must be epoch milliseconds"))
    unit = doc["unit"] if is_alias(doc["unit"]) else "user:" + doc["unit"]
    return ParsedExposure(unit, doc["experiment_id"], doc["variant_id"], ts, rec.source, rec.offset, rec.ingest_ms)
