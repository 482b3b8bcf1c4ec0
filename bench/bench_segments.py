"""What segments cost: counter reads, flow throughput with and without segments, and the
latency from an event produced to its trigger on Kafka.

    python -m bench.bench_segments [--events 60000] [--skip-latency] [--rate 2000 --seconds 40]
    python -m bench.bench_segments --only batches   # the flow by input batch size

Three parts, each compared with a baseline measured in the same run (this machine is
shared and noisy, so the figure that matters is the ratio):

1. ``micro``: ``SegmentSet.evaluate`` + ``next_change`` on one light profile (10 events)
   and one heavy profile (5,000 events over 3 days), with the 20 example segments of
   ``deploy/segments.yaml``; baseline: applying an event to the same profile.
2. ``flow``: the profile flow (Bytewax, ``TestingSource`` of pre-built records, RocksDB
   in a temporary directory) with those 20 segments and with none, same input, at two
   timestamp spreads: events 50 ms apart (the stream covers ~50 minutes) and the same
   events spread over 3 days. The issue's target: with segments >= 70% of without.
3. ``latency``: ``pulse run`` as a subprocess on a real broker (``PULSE_TEST_KAFKA_BOOTSTRAP``
   or the test broker), events produced at ``--rate`` per second with current
   timestamps; for every trigger caused by an event, the trigger's Kafka append time
   minus that event's produce time. Baseline: the append time of the event itself minus
   its produce time (what Kafka alone costs). Target: p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from operators.events import ParseOptions, parse_event
from operators.profile import Policy, Profile
from operators.segments import empty, load_segments
from operators.synthetic import ClickstreamGenerator
from operators.triggers import SegmentEngine

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = ROOT / "deploy" / "segments.yaml"
# The events' producer in the latency part: librdkafka's default linger.ms. With 0, each of
# 2,000 events/s was a produce request of its own, and the broker's handling of them took
# most of a core of this 2-core machine from the processor (p99 237-645 ms against 42-68 ms).
PRODUCER_LINGER_MS = 5
DAY_MS = 86_400_000
T0 = 1_795_773_600_000  # a fixed start, so every run reads the same event times


def progress(text: str, end: str = "\r") -> None:
    print(f"  {text:<70}", end=end, file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


# -- 1. counter reads ----------------------------------------------------------------------
def _profile_events(n: int, span_ms: int, seed: int = 3) -> list:
    """``n`` valid events of one user (the generator with one user), ``span_ms`` apart in total."""
    gen = ClickstreamGenerator(seed=seed, users=1, invalid_rate=0.0)
    step = max(1, span_ms // max(1, n))
    out = []
    for i in range(n):
        _key, value = gen.next_record(T0 + i * step)
        out.append(parse_event(value))
    return out


def _best_us(fn, repeat: int, rounds: int = 5) -> float:
    """Best of ``rounds`` mean times of ``fn()`` over ``repeat`` calls, in µs."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat * 1e6)
    return best


def micro(segments_path: Path = SEGMENTS) -> dict:
    segs = load_segments(segments_path)
    policy = Policy(plan=segs.plan)
    engine = SegmentEngine(segs, policy)
    out: dict = {}
    for name, n, span in (("light", 10, 10 * 60_000), ("heavy", 5000, 3 * DAY_MS)):
        events = _profile_events(n + 1000, span * (n + 1000) // n)
        build, more = events[:n], events[n:]
        p = Profile("user:bench")
        for i, e in enumerate(build):
            p.apply(e, "bench/0", i, policy)
            engine.on_event(p, e.event_id, e.ts_ms)
        p.compact(policy)
        now = p.clock_ms
        buckets = sum(len(flat) // 3 for _k, _r, flat in p.counters.to_record().get("b", []))
        repeat = 2000 if name == "light" else 300
        ev_us = _best_us(lambda: segs.evaluate(p, now), repeat)
        nc_us = _best_us(lambda: segs.next_change(p, now), repeat)
        # The whole per-event path, on copies of the profile: apply, advance, evaluate,
        # triggers' values, next_change (as ProfileLogic does), versus apply alone.

        def per_event(with_segments: bool) -> float:
            q = _copy(p)
            t0 = time.perf_counter()
            for i, e in enumerate(more, start=n):
                q.apply(e, "bench/0", i, policy)
                if with_segments:
                    if q.next_check_ms is not None and q.next_check_ms < e.ts_ms:
                        engine.advance(q, e.ts_ms)
                    engine.on_event(q, e.event_id, e.ts_ms)
            return (time.perf_counter() - t0) / len(more) * 1e6

        base_us = min(per_event(False) for _ in range(3))
        seg_us = min(per_event(True) for _ in range(3))
        out[name] = {"events": n, "buckets": buckets, "evaluate_us": ev_us, "next_change_us": nc_us,
                     "apply_us": base_us, "apply_with_segments_us": seg_us}
    print(f"segment reads, {len(segs)} segments of {segments_path.name} (best of 5, µs per call)")
    print(f"  {'profile':<34}{'buckets':>8}{'evaluate':>10}{'next_chg':>10}{'apply':>9}{'+segments':>11}{'ratio':>8}")
    for name, r in out.items():
        label = f"{name} ({r['events']:,} events" + (", 3 days)" if name == "heavy" else ")")
        print(f"  {label:<34}{r['buckets']:>8,}{r['evaluate_us']:>10.1f}{r['next_change_us']:>10.1f}"
              f"{r['apply_us']:>9.1f}{r['apply_with_segments_us']:>11.1f}"
              f"{r['apply_with_segments_us'] / r['apply_us']:>8.2f}")
    print("  apply: Profile.apply of the next 1,000 events; +segments: with advance + on_event (evaluate,")
    print("  values of the triggers, next_change) as the flow runs them; ratio = +segments / apply")
    return out


def _copy(p: Profile) -> Profile:
    from state.codec import decode_profile, encode_profile
    return decode_profile(encode_profile(p))


# -- 2. flow throughput -------------------------------------------------------------------
def flow_records(n: int, gap_ms: int, seed: int = 5, users: int = 20_000) -> list:
    from flows.records import RawRecord
    gen = ClickstreamGenerator(seed=seed, users=users, invalid_rate=0.002)
    out = []
    for i in range(n):
        ts = T0 + i * gap_ms
        key, value = gen.next_record(ts)
        out.append(RawRecord(value, key, "bench/0", i, ts))
    return out


def flow_run(records: list, segments_path: Path | None, batch_size: int = 1000,
             models: bool = False, counters_only: bool = False) -> tuple[float, int, int]:
    """Seconds to run the flow over ``records`` (delivered ``batch_size`` at a time);
    profiles stored; triggers written. ``models``: with the models of the default
    configuration learning in the flow, as ``pulse run`` has them. ``counters_only``: the
    windowed counters the segments read are kept (as for content rules), but no segment
    is evaluated: no next instant, timer or trigger."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    from flows.memory import GcFreezer
    from flows.profile_flow import build_flow
    from flows.runtime import learner
    from pulse.config import ModelsConfig
    from state.store import RocksStore

    segs = load_segments(segments_path) if segments_path else empty()
    options = ParseOptions(pii_key=b"bench-secret")
    with tempfile.TemporaryDirectory(prefix="pulse-bench-seg-") as d:
        store = RocksStore(Path(d) / "store")
        dead: list = []
        flow = build_flow(TestingSource(records, batch_size=batch_size), TestingSink(dead), store,
                          options=options, segments=empty() if counters_only else segs,
                          extra_requirements=tuple(segs.plan.requirements) if counters_only else (),
                          learner=learner(store, ModelsConfig()) if models else None)
        t0 = time.perf_counter()
        with GcFreezer():  # the collector policy `pulse run` runs the flow under
            run_main(flow)
        elapsed = time.perf_counter() - t0
        profiles = store.count()
        triggers = sum(1 for _ in store.scan(b"o"))
        store.close()
    return elapsed, profiles, triggers


def flow(n: int, segments_path: Path = SEGMENTS, rounds: int = 2, models: bool = False,
         counters_only: bool = False) -> dict:
    """``counters_only``: a third flow in each round, keeping the segments' counters without
    evaluating them (what the features alone cost: a bound for the ratio)."""
    out: dict = {}
    for label, gap in (("50ms", 50), ("3days", 3 * DAY_MS // n)):
        records = flow_records(n, gap)
        base = seg = bound = float("inf")
        profiles = triggers = 0
        for r in range(rounds):  # alternate, keep the best of each: the machine is shared
            progress(f"flow {label}: round {r + 1}/{rounds}, no segments")
            base = min(base, flow_run(records, None, models=models)[0])
            progress(f"flow {label}: round {r + 1}/{rounds}, {segments_path.name}")
            t, profiles, triggers = flow_run(records, segments_path, models=models)
            seg = min(seg, t)
            if counters_only:
                progress(f"flow {label}: round {r + 1}/{rounds}, counters only")
                bound = min(bound, flow_run(records, segments_path, models=models, counters_only=True)[0])
        out[label] = {"events": n, "gap_ms": gap, "profiles": profiles, "triggers": triggers,
                      "baseline_events_per_s": n / base, "segments_events_per_s": n / seg, "ratio": base / seg}
        if counters_only:
            out[label].update(counters_only_events_per_s=n / bound, counters_only_ratio=base / bound)
    progress("done", end="\n")
    nseg = len(load_segments(segments_path))
    print(f"flow throughput with {nseg} segments vs none ({n:,} events, 20,000 users, Bytewax TestingSource "
          f"batches of 1,000, RocksDB; models {'on (default configuration)' if models else 'off'}; best of {rounds})")
    for label, r in out.items():
        span = "~50 minutes (50 ms apart)" if label == "50ms" else f"3 days ({r['gap_ms']:,} ms apart)"
        print(f"  events over {span}: {r['profiles']:,} profiles, {r['triggers']:,} triggers")
        print(f"    baseline  no segments      {r['baseline_events_per_s']:>10,.0f} events/s")
        print(f"    pulse     {nseg} segments      {r['segments_events_per_s']:>10,.0f} events/s")
        print(f"    ratio     with / without   {r['ratio']:>10.3f}   (target >= 0.70)")
        if "counters_only_ratio" in r:
            print(f"    counters only (kept, not evaluated) {r['counters_only_events_per_s']:>8,.0f} events/s, "
                  f"ratio {r['counters_only_ratio']:.3f}")
    return out


def batches(n: int, sizes: tuple[int, ...] = (2000, 200, 50), segments_path: Path = SEGMENTS, rounds: int = 2) -> dict:
    """The same flow (with segments, events 50 ms apart) with the input delivered in
    batches of each size: a live processor's batch is what arrived while it handled the
    previous one (~200 records at 1,000 events/s), a backlog's is as large as the source
    allows, and a profile's several events in one batch are encoded and written once.
    Baseline: the largest batch."""
    records = flow_records(n, 50)
    best = {size: float("inf") for size in sizes}
    for r in range(rounds):  # alternate, keep the best of each
        for size in sizes:
            progress(f"batches: round {r + 1}/{rounds}, {size} per batch")
            best[size] = min(best[size], flow_run(records, segments_path, size)[0])
    progress("done", end="\n")
    base = max(sizes)
    out = {size: {"events_per_s": n / t, "ratio": best[base] / t} for size, t in best.items()}
    print(f"flow throughput by input batch size ({n:,} events, 20 segments; best of {rounds}; ratio to {base:,})")
    for size, row in out.items():
        print(f"  {size:>6,} per batch {row['events_per_s']:>10,.0f} events/s   ratio {row['ratio']:.3f}")
    return out


# -- 3. produce -> trigger latency ---------------------------------------------------------
@contextlib.contextmanager
def kafka():
    from tests.kafka_broker import KafkaBroker, external_bootstrap
    ext = external_bootstrap()
    if ext:
        yield ext
        return
    with KafkaBroker(heap="1g") as broker:
        yield broker.bootstrap


def latency(rate: int, seconds: float, segments_path: Path = SEGMENTS, users: int = 20_000,
            env_extra: dict | None = None, patch: str = "", warm: float = 5.0,
            linger_ms: int = PRODUCER_LINGER_MS) -> dict:
    from tests.kafka_broker import create_topic, unique_topic

    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="pulse-bench-lat-") as d:
        events_topic, triggers_topic = unique_topic("bench-seg-events"), unique_topic("bench-seg-triggers")
        for t in (events_topic, triggers_topic):
            # Broker append time on both topics, not the producers' create time.
            create_topic(bootstrap, t, partitions=3, config={"message.timestamp.type": "LogAppendTime"})
        env = {**os.environ,
               "PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PULSE_KAFKA_EVENTS_TOPIC": events_topic,
               "PULSE_KAFKA_TRIGGERS_TOPIC": triggers_topic, "PULSE_KAFKA_DLQ_TOPIC": events_topic + ".dlq",
               "PULSE_KAFKA_CONTROL_TOPIC": events_topic + ".control",
               "PULSE_KAFKA_ERASURES_TOPIC": events_topic + ".erasures",
               "PULSE_SEGMENTS_PATH": str(segments_path), "PULSE_STATE_DIR": str(Path(d) / "state"),
               "PULSE_PRIVACY_PII_SECRET": "bench-secret", "PULSE_PROCESSOR_METRICS_PORT": "0",
               **(env_extra or {})}
        log = open(Path(d) / "pulse-run.log", "wb")
        cmd = [sys.executable, "-c", f"{patch}\nfrom pulse.cli import main; raise SystemExit(main())", "run"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return _measure(bootstrap, events_topic, triggers_topic, rate, seconds, users, proc, Path(d), warm,
                            linger_ms)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()


def _measure(bootstrap, events_topic, triggers_topic, rate, seconds, users, proc, tmp: Path, warm: float,
             linger_ms: int) -> dict:
    from confluent_kafka import Consumer, Producer, TopicPartition

    sent: dict[str, float] = {}  # event_id -> produce wall time (ms)
    appended: dict[str, int] = {}  # event_id -> broker append time of the event (ms)
    lat: list[float] = []
    base: list[float] = []
    done = threading.Event()
    stats = {"triggers": 0, "time_triggers": 0, "unmatched": 0}
    by_second: dict[int, list[float]] = {}  # produce second -> latencies (does the lag grow?)
    t_start = time.time()

    def consume():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-seg-lat", "enable.auto.commit": "false",
                      "fetch.wait.max.ms": "5", "fetch.min.bytes": "1"})
        c.assign([TopicPartition(t, p, 0) for t in (triggers_topic, events_topic) for p in range(3)])
        while not done.is_set():
            for msg in c.consume(500, 0.05):
                if msg.error() is not None:
                    continue
                _tstype, ts = msg.timestamp()
                if msg.topic() == events_topic:
                    eid = orjson.loads(msg.value()).get("event_id")
                    appended[eid] = ts
                    continue
                stats["triggers"] += 1
                cause = orjson.loads(msg.value())["cause"]
                t_sent = sent.get(cause)
                if t_sent is None:
                    stats["time_triggers" if cause in ("time", "backfill") else "unmatched"] += 1
                    continue
                lat.append(ts - t_sent)
                by_second.setdefault(int((t_sent / 1000 - t_start)), []).append(ts - t_sent)
        c.close()

    # Wait until the processor reads its topic (it creates the other topics on start).
    progress("latency: starting pulse run")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pulse run exited with {proc.returncode}: "
                               f"{(tmp / 'pulse-run.log').read_text()[-2000:]}")
        if b"metrics" in (tmp / "pulse-run.log").read_bytes() or time.monotonic() > deadline - 80:
            break
        time.sleep(0.5)
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    # The events' producer batches as librdkafka does by default (``PRODUCER_LINGER_MS``);
    # its wait is inside every latency measured (from the produce call).
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": str(linger_ms), "acks": "1"})
    gen = ClickstreamGenerator(seed=11, users=users, invalid_rate=0.0)
    # Warm up (imports, first batches, the profile cache, the broker's and producer's own
    # start) for ``warm`` seconds without measuring.
    total = int(rate * (seconds + warm))
    t_start = time.time()
    for i in range(total):
        target = t_start + i / rate
        now = time.time()
        if target > now:
            time.sleep(target - now)
        now_ms = int(time.time() * 1000)
        key, value = gen.next_record(now_ms)
        if i >= rate * warm:
            sent[orjson.loads(value)["event_id"]] = time.time() * 1000
        p.produce(events_topic, value=value, key=key)
        p.poll(0)
        if i % rate == 0:
            progress(f"latency: produced {i:,}/{total:,} at {rate:,}/s")
    p.flush(30)
    achieved = total / (time.time() - t_start)
    time.sleep(3.0)  # let the last triggers arrive
    inside = _processor_metrics(tmp / "pulse-run.log")
    done.set()
    reader.join(10)
    for eid, t in sent.items():
        a = appended.get(eid)
        if a is not None:
            base.append(a - t)
    lat.sort()
    base.sort()
    progress("done", end="\n")
    res = {"rate": rate, "achieved_rate": achieved, "seconds": seconds, "producer_linger_ms": linger_ms,
           "triggers": stats["triggers"],
           "event_triggers": len(lat), "time_triggers": stats["time_triggers"], "unmatched": stats["unmatched"]}
    for q in (50, 95, 99):
        res[f"p{q}_ms"] = percentile(lat, q)
        res[f"baseline_p{q}_ms"] = percentile(base, q)
    res["max_ms"] = lat[-1] if lat else float("nan")
    res["p50_ms_by_second"] = {sec: percentile(sorted(v), 50) for sec, v in sorted(by_second.items())}
    print(f"event produced -> trigger on Kafka ({rate:,} events/s asked, {achieved:,.0f} achieved, "
          f"{seconds:g} s measured after {warm:g} s warm-up, producer linger.ms={linger_ms}, "
          "pulse run as a subprocess)")
    print(f"  triggers: {res['triggers']:,} ({res['event_triggers']:,} caused by a measured event, "
          f"{res['time_triggers']:,} by time/backfill, {res['unmatched']:,} by warm-up events)")
    print(f"  {'':<42}{'p50':>9}{'p95':>9}{'p99':>9}")
    print(f"  {'baseline  event produced -> event on Kafka':<42}" + "".join(
        f"{res[f'baseline_p{q}_ms']:>9.1f}" for q in (50, 95, 99)))
    print(f"  {'pulse     event produced -> trigger on Kafka':<42}" + "".join(
        f"{res[f'p{q}_ms']:>9.1f}" for q in (50, 95, 99)) + "   ms (target p99 < 100)")
    res["processor"] = inside
    for name, qs in inside.items():
        print(f"  processor {name:<32}" + "".join(f"{v:>9}" for v in qs) + "   (from its /metrics)")
    trend = list(res["p50_ms_by_second"].values())
    if trend:
        print("  p50 per produce second: " + " ".join(f"{v:.0f}" for v in trend[:: max(1, len(trend) // 12)]) + " ms")
    return res


def _processor_metrics(log_path: Path) -> dict:
    """Where the processor says the time goes: histogram quantiles (upper bucket bounds, ms)
    from its /metrics; the port is in its start-up log line."""
    import re
    import urllib.request

    m = re.search(rb"metrics on http://([0-9.]+):(\d+)/metrics", log_path.read_bytes())
    if m is None:
        return {}
    try:
        text = urllib.request.urlopen(f"http://{m[1].decode()}:{m[2].decode()}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for title, name, label in (("ingest -> store write p50/p95/p99", "pulse_processing_latency_seconds", "ingest"),
                               ("outbox write -> acked p50/p95/p99", "pulse_trigger_publish_seconds", None)):
        buckets = []
        for line in text.splitlines():
            if line.startswith(name + "_bucket") and (label is None or f'"{label}"' in line):
                le = re.search(r'le="([^"]+)"', line)[1]
                buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
        if buckets and buckets[-1][1] > 0:
            n = buckets[-1][1]
            out[title] = [next((f"<{le * 1000:g}" for le, c in buckets if c >= q * n), "inf") for q in (.5, .95, .99)]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000, help="events per flow run (default 60,000)")
    ap.add_argument("--rounds", type=int, default=2, help="flow runs per configuration, best kept")
    ap.add_argument("--rate", type=int, default=2000, help="events/s produced for the latency part")
    ap.add_argument("--seconds", type=float, default=40.0, help="measured seconds of the latency part")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds produced at --rate before measuring")
    ap.add_argument("--segments", type=Path, default=SEGMENTS)
    ap.add_argument("--linger-ms", type=int, default=PRODUCER_LINGER_MS,
                    help="linger.ms of the events' producer in the latency part (default: librdkafka's, "
                         f"{PRODUCER_LINGER_MS}; 0 sends every event in a request of its own)")
    ap.add_argument("--env", action="append", default=[], metavar="PULSE_X=v",
                    help="extra environment for pulse run (latency part), e.g. PULSE_PROCESSOR_EPOCH_INTERVAL_MS=100")
    ap.add_argument("--processor-patch", default="", metavar="PYTHON",
                    help="statements run in the processor before pulse starts (to try a knob, e.g. "
                         "'import flows.kafka_io as k; k.KafkaEventSource.__init__.__kwdefaults__[\"poll_timeout\"] = 0.002')")
    ap.add_argument("--models", action="store_true",
                    help="flow part: both flows with the default configuration's models learning (pulse run's "
                         "default); without it, models off in both, so that only segments differ")
    ap.add_argument("--counters-only", action="store_true",
                    help="flow part: also a flow keeping the segments' counters without evaluating any segment "
                         "(what the windowed features alone cost)")
    ap.add_argument("--only", choices=("micro", "flow", "batches", "latency"), action="append",
                    help="run only these parts (repeatable)")
    ap.add_argument("--skip-latency", action="store_true", help="no broker: micro and flow only")
    args = ap.parse_args(argv)
    parts = args.only or ["micro", "flow"] + ([] if args.skip_latency else ["latency"])
    result: dict = {}
    if "micro" in parts:
        result["micro"] = micro(args.segments)
    if "flow" in parts:
        result["flow"] = flow(args.events, args.segments, args.rounds, models=args.models,
                              counters_only=args.counters_only)
    if "batches" in parts:
        result["batches"] = batches(args.events, segments_path=args.segments, rounds=args.rounds)
    if "latency" in parts:
        env = dict(kv.split("=", 1) for kv in args.env)
        result["latency"] = latency(args.rate, args.seconds, args.segments, env_extra=env, patch=args.processor_patch,
                                    warm=args.warmup, linger_ms=args.linger_ms)
    return result


if __name__ == "__main__":
    main()
