"""`pulse replay`: history from JSONL files rebuilds the state live processing built from
the same events on Kafka, at full speed, and the same segment triggers (deterministic ids)."""

from __future__ import annotations

import time

import orjson
import pytest

from operators.synthetic import ClickstreamGenerator
from tests.integration.test_pipeline import REPO, Pulse, all_profiles, produce, pulse_env
from tests.integration.test_segments import SCORE_SEGMENTS, trigger_ids

pytestmark = pytest.mark.kafka
# Where one event source and another may differ by construction: which source and offset
# each profile last read (Kafka partition vs file line), and what the online models learnt
# (README: Recommendations and models).
SOURCE_FIELDS = {"positions"}
MODEL_FIELDS = {"factors", "scores", "labels"}


def comparable(profiles: dict) -> dict:
    """Profile records without their sources and model state, and without memberships of
    segments reading model scores: the online models learn a profile's labels when it is
    woken, which live processing does at heartbeats and a replay at its batches, so their
    scores differ (as in the crash tests, which compare triggers the same way)."""
    return {pid: {k: ({s: m for s, m in v.items() if s not in SCORE_SEGMENTS} if k == "segments" else v)
                  for k, v in rec.items() if k not in SOURCE_FIELDS | MODEL_FIELDS}
            for pid, rec in profiles.items()}


def test_replay_of_a_file_equals_live_processing_of_the_topic(kafka_bootstrap, kafka_topic, tmp_path):
    events, dlq = kafka_topic("events", partitions=1), kafka_topic("dlq")
    gen = ClickstreamGenerator(seed=21, users=600, invalid_rate=0.01)
    start_ms = int(time.time() * 1000) - 4 * 3_600_000
    records = [gen.next_record(start_ms + i * 1000) for i in range(12_000)]
    produce(kafka_bootstrap, events, records)
    segments = str(REPO / "deploy" / "segments.yaml")

    live_env = pulse_env(kafka_bootstrap, events, dlq, tmp_path / "live", PULSE_SEGMENTS_PATH=segments)
    live = Pulse(["run", "--exit-at-end"], live_env, tmp_path / "live.log")
    assert live.wait(300) == 0, live.text()[-3000:]
    expected_triggers = trigger_ids(kafka_bootstrap, events + ".triggers", 100)

    # The same records, as a file of history: one event per line (blank lines are skipped).
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"\n".join(value for _key, value in records) + b"\n\n")
    triggers_file = tmp_path / "replayed-triggers.jsonl"
    replay_env = pulse_env(kafka_bootstrap, events, dlq, tmp_path / "replay", PULSE_SEGMENTS_PATH=segments)
    replay = Pulse(["replay", str(history), "--triggers-file", str(triggers_file), "--batch-size", "500"],
                   replay_env, tmp_path / "replay.log")
    assert replay.wait(300) == 0, replay.text()[-3000:]
    text = replay.text()
    assert "replay history.jsonl: 12001 lines (100%)" in text and "replay finished" in text, text[-2000:]

    live_profiles, replayed = all_profiles(tmp_path / "live"), all_profiles(tmp_path / "replay")
    assert len(live_profiles) > 500 and set(replayed) == set(live_profiles)
    got, want = comparable(replayed), comparable(live_profiles)
    diffs = {pid: sorted(k for k in got[pid] if got[pid][k] != want[pid][k]) for pid in got}
    assert {pid: ks for pid, ks in diffs.items() if ks} == {}
    assert all(set(p["positions"]) == {"replay:history.jsonl/0"} for p in replayed.values())

    # The same triggers, by id (those reading model scores aside, as in the crash tests).
    replayed_triggers = {}
    for line in triggers_file.read_bytes().splitlines():
        rec = orjson.loads(line)
        rec.pop("written_ms", None)
        replayed_triggers[rec["trigger_id"]] = rec
    keep = {k: t for k, t in expected_triggers.items() if t["segment_id"] not in SCORE_SEGMENTS}
    assert keep and {k: t for k, t in replayed_triggers.items() if t["segment_id"] not in SCORE_SEGMENTS} == keep

    # Invalid lines went to the replay's dead-letter file, with their reason.
    dead = [orjson.loads(line) for line in (tmp_path / "replay" / "replay-dead-letters.jsonl").read_bytes().splitlines()]
    assert dead and all(d["reason"] and d["source"] == "replay:history.jsonl/0" for d in dead)

    # Replaying the same file again changes nothing: every line is already applied.
    again = Pulse(["replay", str(history), "--triggers-file", str(triggers_file)], replay_env, tmp_path / "again.log")
    assert again.wait(300) == 0, again.text()[-3000:]
    assert "applied=0" in again.text() and all_profiles(tmp_path / "replay") == replayed
