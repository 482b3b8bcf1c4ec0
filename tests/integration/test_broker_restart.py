"""The Kafka broker stops mid-stream and comes back: `pulse run` and its trigger outbox
recover by themselves, and nothing is lost — the final profiles and the set of trigger ids
equal a run that never saw the outage.

This test needs a broker it may stop, so it always starts its own (even when
``PULSE_TEST_KAFKA_BOOTSTRAP`` names an external cluster for the other tests)."""

from __future__ import annotations

import signal
import time

import pytest

from operators.synthetic import ClickstreamGenerator
from tests.integration.test_pipeline import REPO, Pulse, all_profiles, free_port, metric, produce, pulse_env, wait_for
from tests.integration.test_segments import SCORE_SEGMENTS, trigger_ids
from tests.kafka_broker import KafkaBroker, create_topic

pytestmark = pytest.mark.kafka
MODEL_FIELDS = {"factors", "scores", "labels"}  # what the models learnt: not exact (README)


def comparable(profiles: dict) -> dict:
    """Profiles without what the models learnt, nor the segments defined on model scores:
    both depend on the order the models learnt in (README), which the wall-clock heartbeats
    of a live run change; the same segments' triggers are left out below."""
    out = {}
    for pid, rec in profiles.items():
        rec = {k: v for k, v in rec.items() if k not in MODEL_FIELDS}
        rec["segments"] = {seg: v for seg, v in rec["segments"].items() if seg not in SCORE_SEGMENTS}
        out[pid] = rec
    return out


def without_score_segments(triggers: dict) -> dict:
    return {k: t for k, t in triggers.items() if t["segment_id"] not in SCORE_SEGMENTS}


def test_a_broker_outage_mid_stream_loses_nothing(tmp_path):
    gen = ClickstreamGenerator(seed=31, users=500, invalid_rate=0.0)
    start_ms = int(time.time() * 1000) - 3 * 3_600_000
    # History first; the events produced after the outage are current, as live traffic is:
    # once the processor has caught up, its event time follows the wall clock, so events
    # hours old would be too late, and events behind the wall clock would be applied late
    # (at the segment clock, not at their own time), unlike in the reference run. So they
    # are stamped a little ahead of the wall clock (within privacy.max_future_skew_seconds).
    first = [gen.next_record(start_ms + i * 800) for i in range(6_000)]
    segments = str(REPO / "deploy" / "segments.yaml")
    with KafkaBroker() as broker:
        events = create_topic(broker.bootstrap, "outage-events", 1)
        dlq = create_topic(broker.bootstrap, "outage-dlq", 1)
        port = free_port()
        env = pulse_env(broker.bootstrap, events, dlq, tmp_path / "live", PULSE_SEGMENTS_PATH=segments,
                        PULSE_PROCESSOR_METRICS_PORT=str(port))
        url = f"http://127.0.0.1:{port}/metrics"
        produce(broker.bootstrap, events, first)
        live = Pulse(["run"], env, tmp_path / "live.log")
        try:
            def applied(n):
                def check():
                    try:
                        return metric(url, 'pulse_events_out_total{outcome="applied"}') >= n
                    except OSError:
                        return False
                return check

            wait_for(applied(3_000), 120, f"3,000 events applied before the outage\n{live.text()[-2000:]}")
            broker.stop(keep_data=True)
            # The broker is away for a while; the processor must stay up, not exit.
            outage_end = time.monotonic() + 8.0
            while time.monotonic() < outage_end:
                assert live.proc.poll() is None, f"pulse run exited during the outage\n{live.text()[-3000:]}"
                time.sleep(0.5)
            broker.start()  # same ports, same data
            now_ms = int(time.time() * 1000)
            second = [gen.next_record(now_ms + 60_000 + 10 * i) for i in range(4_000)]
            records = first + second
            produce(broker.bootstrap, events, second)
            wait_for(applied(len(records)), 180, f"every event applied after the outage\n{live.text()[-3000:]}")

            def drained():
                try:
                    return metric(url, "pulse_outbox_depth") == 0 and metric(url, "pulse_triggers_published_total") > 0
                except OSError:
                    return False

            wait_for(drained, 120, f"the trigger outbox drained after the outage\n{live.text()[-3000:]}")
        finally:
            live.stop(signal.SIGTERM)
        assert live.proc.returncode == 0, live.text()[-3000:]
        got_triggers = trigger_ids(broker.bootstrap, events + ".triggers", 100)

        # The reference: the same topic, read to its end by a run that saw no outage.
        ref_env = pulse_env(broker.bootstrap, events, dlq, tmp_path / "ref", PULSE_SEGMENTS_PATH=segments,
                            PULSE_KAFKA_TRIGGERS_TOPIC=events + ".ref-triggers")
        ref = Pulse(["run", "--exit-at-end"], ref_env, tmp_path / "ref.log")
        assert ref.wait(300) == 0, ref.text()[-3000:]
        want_triggers = trigger_ids(broker.bootstrap, events + ".ref-triggers", 100)

    got, want = comparable(all_profiles(tmp_path / "live")), comparable(all_profiles(tmp_path / "ref"))
    assert set(got) == set(want) and len(want) > 300
    assert {pid for pid in got if got[pid] != want[pid]} == set(), [
        (pid, {k: (got[pid][k], want[pid][k]) for k in got[pid] if got[pid][k] != want[pid][k]})
        for pid in got if got[pid] != want[pid]][:3]
    got_t, want_t = without_score_segments(got_triggers), without_score_segments(want_triggers)
    assert want_t and set(got_t) == set(want_t), (len(set(want_t) - set(got_t)), len(set(got_t) - set(want_t)))
