"""A soak: `pulse run` for a long time at a steady share of its measured maximum
throughput, watching latency and memory.

    python -m bench.soak [--minutes 30] [--share 0.8] [--users 1000000]
    python -m bench.soak --users 200000 --burst 3000000 --probe 0 --sustain 0.9,0.8,0.7,0.6

(the second: the sustainable maximum, without a probe whose timers echo into the soak)

1. Warm-up: a backlog of ``--burst`` synthetic events is produced and ``pulse run`` (the
   default configuration: the 20 example segments, the models) applies it, so profiles
   and items have a history and the profile cache is full: young state is cheaper to
   update, and a rate measured on it overstates the steady one. The users' activity is
   heavy-tailed (``ClickstreamGenerator``): out of a million users, a few hundred are very
   active and most come back rarely, so the cache turns over as it does in production.
   The cost per event keeps rising long after the cache is full, as fewer events come
   from users never seen (a new profile is cheaper than reloading an evicted one): in
   process, ~265 us per event over the first 20,000 events, ~530 us at 340,000, 650-750
   us from 500,000 on. Hence a backlog of a million events by default. The backlog's
   event times are spread evenly over the last ``--span`` minutes (60): a window of up to
   an hour is kept in one-second buckets, so a heavy user's such series grows until an
   hour of event time has passed (on 2026-12-05, a backlog over 33 minutes left the
   busiest add-to-cart series at ~1,100 of up to 3,600 buckets, and they kept growing
   through the soak, with the cost per event). Longer windows use minute or hour buckets
   and grow by one bucket per minute at most.
   With ``--settle M``, live events then arrive at ``--settle-share`` of the warm-up's
   last rate until M minutes after the backlog's first event time, so that what falls
   due only later (profiles leaving a 2-hour window: M = 122 puts the maximum and the
   soak inside that wave, as in production, where it never stops) is part of the load
   measured; without it the maximum is measured on a lighter load than the soak gets.
2. Maximum: live events are offered faster than they can be applied (``--offer``,
   4,000/s) for ``--probe`` seconds (60); the rate at which the processor applies them
   over the last two thirds is the maximum — measured while the producer and the broker
   load the machine (a little more than they do during the soak). The backlog this leaves
   is then applied. A longer probe measures the maximum on older state: the cost per
   event keeps rising for a while (on 2026-12-05, 60 s measured 1,723 events/s where
   ~1,200-1,350 held as the state aged).
   With ``--sustain 0.9,0.8,...``, rates at those shares of it are then offered for
   ``--step`` seconds each, highest first, and the first one the processor keeps up with
   (finishes 98% of it over the step's second half, fewer than 3 s of events waiting at
   the end) is the *sustainable* maximum. The drain rate overstates it: while the
   processor lags, event time — and every timer with it — advances slower than the wall
   clock, and a backlog's large batches write a profile once for several events (on
   2026-12-05, at 80% of a drain maximum of 1,237 events/s the processor ran saturated
   from the first minute).
3. Soak: the same process then gets current events at ``--share`` of that rate (of the
   sustainable maximum when measured) for
   ``--minutes``. Every ``--sample`` seconds: the process's RSS (``/proc/<pid>/status``),
   events applied, and the ingest -> store latency p50/p99 over the last window (from the
   processor's own histogram, ``pulse_processing_latency_seconds{clock="ingest"}``), records
   written per second, the mean store write and store writes per second (a batch each: when
   the processor falls behind, batches and their writes grow), timers pending, the
   processor's CPU seconds (all threads, the main thread, RocksDB's background threads),
   and RocksDB's stall seconds, level-0 files and pending compaction bytes.

Reported: the windows, and the verdicts the issue asks for — RSS growth after warm-up
(the first ``--warmup`` minutes) under 10%, latency p99 steady (the last third's median
of window p99s within 2x of the first third's after warm-up), and whether the processor
kept up (applied at least 95% of the rate after warm-up; 0.2% of the events are
invalid). The broker is the test broker (or ``PULSE_TEST_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.bench_segments import ROOT, SEGMENTS, kafka
from pulse.status import histogram_quantile, scrape
from operators.synthetic import ClickstreamGenerator
from tests.kafka_broker import create_topic, produce_all, produce_one, unique_topic


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _applied(snap) -> float:
    return sum(v for labels, v in snap.series("pulse_events_out_total") if labels.get("outcome") == "applied")


def _out(url: str) -> float:
    """Records the processor is done with (applied, replayed, invalid, ...); 0 until its
    metrics answer."""
    for _attempt in range(5):
        snap = scrape(url, timeout=10)
        if not snap.error:
            return sum(v for _labels, v in snap.series("pulse_events_out_total"))
    return 0.0


class Paced(threading.Thread):
    """Produces ``gen``'s events to ``topic`` at ``rate`` per second, stamped now."""

    def __init__(self, producer, topic: str, gen: ClickstreamGenerator, rate: float) -> None:
        super().__init__(daemon=True)
        self.producer, self.topic, self.gen, self.rate = producer, topic, gen, rate
        self.sent = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self._stop_event.is_set():
            due = int((time.monotonic() - start) * self.rate) - self.sent
            now_ms = int(time.time() * 1000)
            for _ in range(max(0, min(due, 5000))):
                key, value = self.gen.next_record(now_ms)
                produce_one(self.producer, self.topic, key, value)
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)
        self.producer.flush(30)


def _step(url: str, producer, topic: str, gen: ClickstreamGenerator, rate: float, step_s: float,
          produced: float) -> tuple[bool, dict, int]:
    """Offer ``rate`` for ``step_s`` (``produced``: records produced before); sustained if
    over the second half the processor finished at least 98% of that rate and at the end
    fewer than 3 seconds' worth of events were waiting. Returns the verdict, the figures
    and the records this step produced."""
    paced = Paced(producer, topic, gen, rate)
    paced.start()
    time.sleep(step_s / 2)
    done_half, t_half = _out(url), time.monotonic()
    time.sleep(step_s / 2)
    done_end, t_end = _out(url), time.monotonic()
    sent = paced.sent
    paced.stop()
    finished = (done_end - done_half) / (t_end - t_half)
    waiting = produced + sent - done_end
    ok = finished >= 0.98 * rate and waiting <= 3 * rate
    return ok, {"rate": round(rate, 1), "finished_per_s": round(finished, 1), "waiting": int(waiting),
                "sustained": ok}, paced.sent


def _drain(url: str, produced: float, what: str, limit_s: float = 900) -> None:
    """Until the events produced are done and no timer that fell due while the processor
    lagged is still waiting (they are woken 500 per batch: on 2026-12-05 the probe's left
    the soak's first 7 minutes saturated). One scrape per look."""
    deadline = time.monotonic() + limit_s
    while True:
        snap = scrape(url, timeout=10)
        if (not snap.error and _gauge(snap, "pulse_events_out_total") >= produced - 0.001 * produced
                and not _gauge(snap, "pulse_segment_timers_behind")):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: the backlog was not applied in {limit_s / 60:.0f} minutes")
        time.sleep(0.5)


def _gauge(snap, name: str) -> float:
    return sum(v for _labels, v in snap.series(name))


def _per_s(before, after, name: str, seconds: float) -> float:
    """A counter's increase between two scrapes, per second."""
    return round((_gauge(after, name) - _gauge(before, name)) / seconds, 1)


def _mean_ms(before, after, name: str) -> float | None:
    n = _gauge(after, name + "_count") - _gauge(before, name + "_count")
    return round(1000 * (_gauge(after, name + "_sum") - _gauge(before, name + "_sum")) / n, 2) if n else None


def _cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds the process has used (user + system): all threads, the main thread (the
    dataflow's Python work), and RocksDB's background threads (flushes and compactions)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"all": 0.0, "main": 0.0, "rocksdb": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        out["all"] += used
        if task.name == str(pid):
            out["main"] += used
        elif name.startswith("rocksdb"):
            out["rocksdb"] += used
    return out


def _buckets(snap) -> list[tuple[float, float]]:
    out = []
    for labels, v in snap.series("pulse_processing_latency_seconds_bucket"):
        if labels.get("clock") == "ingest":
            le = labels.get("le")
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def _window_quantiles(before, after) -> tuple[float | None, float | None]:
    a, b = dict(_buckets(before)), _buckets(after)
    delta = [(le, v - a.get(le, 0.0)) for le, v in b]
    return histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)


def run(minutes: float, share: float, users: int, burst: int, sample_s: float, warmup_min: float,
        probe_s: float, offer: float, span_min: float, settle_min: float,
        settle_share: float, sustain: tuple[float, ...], step_s: float) -> dict:
    """The soak; every setting comes from ``main``'s command line, whose defaults are the
    only ones (a second set here once drifted from them)."""
    from confluent_kafka import Producer

    from tests.integration.test_pipeline import free_port

    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="pulse-soak-") as d:
        topic = create_topic(bootstrap, unique_topic("soak-events"), partitions=3)
        port = free_port()
        env = {**os.environ, "PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PULSE_KAFKA_EVENTS_TOPIC": topic,
               "PULSE_KAFKA_DLQ_TOPIC": topic + ".dlq", "PULSE_KAFKA_CONTROL_TOPIC": topic + ".control",
               "PULSE_KAFKA_ERASURES_TOPIC": topic + ".erasures", "PULSE_KAFKA_TRIGGERS_TOPIC": topic + ".triggers",
               "PULSE_KAFKA_EXPOSURES_TOPIC": topic + ".exposures", "PULSE_SEGMENTS_PATH": str(SEGMENTS),
               "PULSE_STATE_DIR": str(Path(d) / "state"), "PULSE_PRIVACY_PII_SECRET": "soak-secret",
               "PULSE_PROCESSOR_METRICS_PORT": str(port)}
        url = f"http://127.0.0.1:{port}/metrics"
        gen = ClickstreamGenerator(seed=9, users=users, invalid_rate=0.002)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": "20"})
        now = int(time.time() * 1000)
        t_backlog = now / 1000  # the backlog's last event time (its first: span_ms earlier)
        span_ms = max(burst, int(span_min * 60_000))  # at least 1 ms apart
        produce_all(producer, topic, (gen.next_record(now - span_ms + i * span_ms // burst) for i in range(burst)),
                    on_each=lambda n: producer.poll(0) if n % 10_000 == 0 else None)
        log_path = Path(tempfile.gettempdir()) / f"pulse-soak-{os.getpid()}.log"  # kept after the run
        print(f"processor log: {log_path}", flush=True)
        log = open(log_path, "wb")
        proc = subprocess.Popen([sys.executable, "-m", "pulse.cli", "run"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            # 1. warm-up: the backlog is applied (profiles get a history, the cache fills).
            t_start = time.monotonic()
            limit_s = max(900.0, burst / 400)
            deadline = time.monotonic() + limit_s
            mark = None  # (time, records done) when 80% of the backlog was done
            while (done := _out(url)) < 0.99 * burst:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the backlog was not applied in {limit_s / 60:.0f} minutes")
                if mark is None and done >= 0.8 * burst:
                    mark = (time.monotonic(), done)
                time.sleep(0.5)
            warm_end = time.monotonic()
            # The warm-up's rate over its last fifth (the cost per event rises as it goes).
            warm_rate = (done - mark[1]) / max(1e-3, warm_end - mark[0]) if mark else done / (warm_end - t_start)
            # 1b. settle: live events at a moderate rate until ``settle_min`` minutes after the
            # backlog's first event time, so that the instants at which the backlog's
            # profiles leave a 2-hour window (``cart_abandoned_30m`` reads
            # ``count(add_to_cart, 2h)``: about every profile with a cart) fall due while
            # the maximum and the soak are measured. Before the first of them, 2 hours after
            # the backlog's first event, no such timer falls due at all, and a maximum
            # measured then lacks a load the processor carries in production. (Three soaks
            # of 2026-12-05 stepped to full load ~2 hours after their backlog's first
            # event time, which suggested this; the 15:21 run points at the probe's own
            # 30-minute echo instead — see ``--probe 0``.)
            settle_until = t_backlog + settle_min * 60 - span_ms / 1000
            settled = 0
            if time.time() < settle_until:
                pre = Paced(producer, topic, gen, max(50.0, settle_share * warm_rate))
                pre.start()
                print(f"warm-up applied in {(warm_end - t_start) / 60:.1f} min; settling at {pre.rate:,.0f} events/s "
                      f"for {(settle_until - time.time()) / 60:.1f} min", flush=True)
                while time.time() < settle_until:
                    time.sleep(1.0)
                pre.stop()
                settled = pre.sent
            # 2. the maximum: live events offered faster than they can be applied, so the
            # processor runs flat out while the producer and the broker load the machine
            # as they do during the soak; measured over the last two thirds of ``probe_s``.
            # With ``probe_s`` 0, the warm-up's last rate stands for it (also a backlog's
            # drain rate): a probe's burst of current events echoes into the soak, as the
            # timers it plants fall due 10 and 30 minutes later (on 2026-12-05: time
            # visits at 350-400/s against 110-250/s, and p50 from ~0.7 s to 2.5 s, from
            # minute 22.5 to 27 of the soak — the probe's 30-minute echo).
            probe_sent = 0
            if probe_s > 0:
                offered = Paced(producer, topic, gen, offer)
                offered.start()
                time.sleep(probe_s / 3)
                before, t_before = _out(url), time.monotonic()
                time.sleep(probe_s * 2 / 3)
                maximum = (_out(url) - before) / (time.monotonic() - t_before)
                offered.stop()
                probe_sent = offered.sent
                if maximum > 0.9 * offer:
                    raise RuntimeError(f"the processor applied {maximum:,.0f} events/s of the {offer:,.0f}/s offered: "
                                       "not a maximum; offer more (--offer)")
            else:
                maximum = warm_rate
            if maximum < 1.0:
                raise RuntimeError(f"the processor applied {maximum:.1f} events/s while its maximum was measured")
            # 2b. the sustainable maximum: the drain rate above overstates what the processor
            # keeps up with. While it lags, event time (and so every timer: windows
            # expiring, since() thresholds, model horizons) advances slower than the wall
            # clock, so the probe does less of that work per second than a processor that
            # keeps up; and a backlog's large batches coalesce a profile's events into one
            # encode and write (bench_segments --only batches). So rates below it are
            # offered, highest first, for ``step_s`` each; the first one the processor
            # keeps up with (``_step``) is the sustainable maximum.
            produced = burst + settled + probe_sent
            _drain(url, produced, "the probe")
            steps: list[dict] = []
            sustainable = None
            for k in sustain:
                ok, rec, sent = _step(url, producer, topic, gen, k * maximum, step_s, produced)
                produced += sent
                steps.append(rec)
                print(f"step at {k:.2f} of the maximum: {json.dumps(rec)}", flush=True)
                _drain(url, produced, "a step")
                if ok:
                    sustainable = rec["rate"]
                    break
            if sustain and sustainable is None:
                raise RuntimeError(f"the processor kept up with none of the rates tried: {steps}")
            rate = share * (sustainable or maximum)
            print(f"maximum {maximum:,.0f} events/s ({'probe' if probe_s > 0 else 'warm-up'}); sustainable "
                  f"{sustainable if sustainable is not None else 'not measured'}; soaking at {rate:,.0f} "
                  f"events/s for {minutes} min", flush=True)

            # 3. the soak: events at `rate`, current timestamps.
            thread = Paced(producer, topic, gen, rate)
            thread.start()
            windows = []
            prev = scrape(url, timeout=10)
            cpu_prev = _cpu_s(proc.pid)
            end = time.monotonic() + minutes * 60
            t0 = time.monotonic()
            t_prev = time.monotonic()
            while time.monotonic() < end:
                time.sleep(sample_s)
                snap = scrape(url, timeout=10)
                if snap.error:  # this window joins the next one
                    print(f"scrape failed ({snap.error}); window merged into the next", flush=True)
                    continue
                p50, p99 = _window_quantiles(prev, snap)
                t_now = time.monotonic()
                cpu_now = _cpu_s(proc.pid)
                windows.append({"minute": round((t_now - t0) / 60, 2), "rss_mb": round(rss_mb(proc.pid), 1),
                                "events_per_s": round((_applied(snap) - _applied(prev)) / (t_now - t_prev), 1),
                                "ingest_p50_s": p50, "ingest_p99_s": p99,
                                "profiles_in_memory": _gauge(snap, "pulse_profiles_in_memory"),
                                "cache_mb": round(_gauge(snap, "pulse_profile_cache_bytes") / 2**20, 1),
                                # what may change the processor's cost: records written to the store per
                                # second, the mean store write (one WriteBatch), the timers waiting
                                "writes_per_s": _per_s(prev, snap, "pulse_profiles_written_total", t_now - t_prev),
                                "store_write_ms": _mean_ms(prev, snap, "pulse_store_write_seconds"),
                                "batches_per_s": _per_s(prev, snap, "pulse_store_write_seconds_count",
                                                        t_now - t_prev),
                                "timers": _gauge(snap, "pulse_segment_timers_pending"),
                                # profiles woken by their timer, and read from the store (not in memory)
                                "time_visits_per_s": _per_s(prev, snap, "pulse_segment_time_visits_total",
                                                            t_now - t_prev),
                                "loads_per_s": _per_s(prev, snap, "pulse_profile_loads_total", t_now - t_prev),
                                # where the CPU went: the main thread, RocksDB's compactions
                                "cpu_s": round(cpu_now["all"] - cpu_prev["all"], 1),
                                "cpu_main_s": round(cpu_now["main"] - cpu_prev["main"], 1),
                                "cpu_rocksdb_s": round(cpu_now["rocksdb"] - cpu_prev["rocksdb"], 1),
                                # RocksDB's write path (flows.store_stats, refreshed every 10 s; both
                                # column families summed)
                                "store_stall_s": round(_gauge(snap, "pulse_store_stall_seconds_total")
                                                       - _gauge(prev, "pulse_store_stall_seconds_total"), 2),
                                "level0_files": _gauge(snap, "pulse_store_level0_files"),
                                "pending_compaction_mb": round(_gauge(snap, "pulse_store_pending_compaction_bytes")
                                                               / 1e6, 1)})
                print(json.dumps(windows[-1]), flush=True)
                prev, t_prev, cpu_prev = snap, t_now, cpu_now
            thread.stop()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
    steady = [w for w in windows if w["minute"] >= warmup_min]
    rss_start, rss_end = steady[0]["rss_mb"], steady[-1]["rss_mb"]
    third = max(1, len(steady) // 3)
    p99s = lambda ws: sorted(w["ingest_p99_s"] for w in ws if w["ingest_p99_s"] is not None)  # noqa: E731
    first, last = p99s(steady[:third]), p99s(steady[-third:])
    med = lambda xs: xs[len(xs) // 2] if xs else None  # noqa: E731
    applied = sum(w["events_per_s"] for w in steady) / len(steady)
    return {"maximum_events_per_s": maximum, "rate": rate, "minutes": minutes, "windows": windows,
            "settled_events": settled, "settle_min": settle_min,
            "sustainable_events_per_s": sustainable, "steps": steps,
            "applied_per_s_after_warmup": applied,
            "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end,
            "rss_growth": (rss_end - rss_start) / rss_start,
            "p99_first_third_s": med(first), "p99_last_third_s": med(last)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--share", type=float, default=0.8)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--burst", type=int, default=1_000_000)
    ap.add_argument("--sample", type=float, default=30.0, help="seconds per window")
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes of warm-up left out of the verdicts")
    ap.add_argument("--probe", type=float, default=60.0,
                    help="seconds of the maximum's probe (measured over its last two thirds)")
    ap.add_argument("--offer", type=float, default=4000.0,
                    help="events/s offered during the probe (must exceed the maximum; what is not applied "
                         "is drained before the soak)")
    ap.add_argument("--span", type=float, default=60.0,
                    help="minutes of event time the backlog's events are spread over")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="minutes after the backlog's first event time before the maximum is measured, with "
                         "live events at --settle-share of the warm-up's last rate meanwhile (0: none); "
                         "e.g. 122: the backlog's events are then leaving their 2-hour windows")
    ap.add_argument("--settle-share", type=float, default=0.6)
    ap.add_argument("--sustain", type=lambda t: tuple(float(v) for v in t.split(",") if v.strip()), default=(),
                    help="shares of the maximum to offer in turn, e.g. 0.9,0.8,0.7,0.6: the first the processor "
                         "keeps up with is the sustainable maximum, and the soak runs at --share of it")
    ap.add_argument("--step", type=float, default=900.0,
                    help="seconds per --sustain step; longer than the segments' shortest timer (10 min in the "
                         "examples): a shorter step ends before the time visits its own events cause (the "
                         "2026-12-05 17:37 run sustained 0.9 of the maximum for 180 s, then fell behind at "
                         "0.8 of that once they came)")
    args = ap.parse_args(argv)
    # Stop cleanly (the processor and the broker too) on SIGTERM, and on SIGINT even when
    # started in the background, where the shell ignores it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit("soak: terminated"))
    r = run(args.minutes, args.share, args.users, args.burst, args.sample, args.warmup, args.probe, args.offer, args.span,
            args.settle, args.settle_share, args.sustain, args.step)
    growth_ok = r["rss_growth"] < 0.10
    p99_ok = (r["p99_first_third_s"] is not None and r["p99_last_third_s"] is not None
              and r["p99_last_third_s"] <= 2 * max(r["p99_first_third_s"], 0.01))
    kept_up = r["applied_per_s_after_warmup"] >= 0.95 * r["rate"]  # 0.2% of the events are invalid
    print(f"\nmaximum {r['maximum_events_per_s']:,.0f} events/s; sustainable {r['sustainable_events_per_s']}; "
          f"soaked {r['minutes']} min at {r['rate']:,.0f}/s")
    print(f"applied after warm-up {r['applied_per_s_after_warmup']:,.0f}/s "
          f"({'kept up' if kept_up else 'fell BEHIND'})")
    print(f"RSS after warm-up {r['rss_after_warmup_mb']:.0f} MB -> end {r['rss_end_mb']:.0f} MB "
          f"({100 * r['rss_growth']:+.1f}%; target < +10%: {'met' if growth_ok else 'NOT met'})")
    print(f"ingest->store p99 (median of windows): first third {r['p99_first_third_s']} s, last third "
          f"{r['p99_last_third_s']} s ({'steady' if p99_ok else 'NOT steady'})")
    Path(ROOT / "bench" / "soak-latest.json").write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
