"""Run every benchmark in turn and print one Markdown summary for the README.

    python -m bench.run_all

Runs ``bench.bench_flow`` (Kafka -> RocksDB throughput; starts the test broker unless
``PULSE_TEST_KAFKA_BOOTSTRAP`` is set), ``bench.bench_serving`` (gRPC GetProfile
latency) and ``bench.bench_serving --recommendations`` (GetRecommendations, sync and
grpc.aio servers), each with its defaults, then prints a table (benchmark, baseline, pulse,
ratio) and writes all figures to ``bench/results.json``.

Every ratio is pulse's cost relative to its baseline measured in the same run, so
above 1 means pulse is that many times slower: time ratios for latency, inverse
throughput ratios for throughput.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"


def _run(name: str, fn) -> dict:
    print(f"\n=== {name} ===", flush=True)
    try:
        return fn([])
    except Exception as exc:  # keep going: the other benchmark's figures are still worth having
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def recommendation_rows(recs: dict) -> list[tuple[str, str, str, str]]:
    """GetRecommendations rows (bench_serving --recommendations): per phase and server kind,
    p50/p99 at 1 in flight, p99 at N in flight and throughput, against the trivial server
    of the same kind (sync or grpc.aio)."""
    rows: list[tuple[str, str, str, str]] = []
    if not recs or "error" in recs:
        return rows
    where = f"{recs['items']:,} items, {recs['profiles']:,} profiles, k={recs['k']}"
    for phase, label in (("no_writes", ""), ("with_writes", ", writer running")):
        results = recs["phases"].get(phase)
        if not results:
            continue
        for mode in ("sync", "aio"):
            b, p = results.get(f"baseline-{mode}"), results.get(f"pulse-{mode}")
            if not (b and p):
                continue
            name = f"GetRecommendations ({mode} server{label}; {where})"
            for q in ("p50", "p99"):
                rows.append((f"{name} latency {q}, 1 in flight, ms", f"{b[f'{q}_ms']:.3f}", f"{p[f'{q}_ms']:.3f}",
                             f"{p[f'{q}_ms'] / b[f'{q}_ms']:.2f}×"))
            n = recs["in_flight"]
            rows.append((f"{name} latency p99, {n} in flight, ms", f"{b['load_p99_ms']:.2f}", f"{p['load_p99_ms']:.2f}",
                         f"{p['load_p99_ms'] / b['load_p99_ms']:.2f}×"))
            rows.append((f"{name} throughput, {n} in flight, requests/s", f"{b['rps']:,.0f}", f"{p['rps']:,.0f}",
                         f"{b['rps'] / p['rps']:.2f}×"))
    return rows


def segment_rows(segs: dict) -> list[tuple[str, str, str, str]]:
    """bench_segments: flow throughput with the 20 example segments vs none; event -> trigger latency."""
    rows: list[tuple[str, str, str, str]] = []
    for label, what in (("50ms", "events 50 ms apart"), ("3days", "events over 3 days")):
        r = (segs.get("flow") or {}).get(label)
        if r:
            rows.append((f"flow throughput with 20 segments vs none ({r['events']:,} events, {what}), events/s",
                         f"{r['baseline_events_per_s']:,.0f}", f"{r['segments_events_per_s']:,.0f}",
                         f"{1 / r['ratio']:.2f}× (with/without {r['ratio']:.2f})"))
    lat = segs.get("latency")
    if lat and lat.get("event_triggers"):
        rows.append((f"event produced → trigger on Kafka p99 at {lat['rate']:,} events/s, ms "
                     "(baseline: produced → on Kafka)", f"{lat['baseline_p99_ms']:.1f}", f"{lat['p99_ms']:.1f}",
                     f"{lat['p99_ms'] / max(lat['baseline_p99_ms'], 1e-9):.2f}×"))
    return rows


def summary_rows(flow: dict, serving: dict, recs: dict | None = None, segs: dict | None = None
                 ) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if "error" not in flow:
        rows.append((f"flow throughput, Kafka → RocksDB ({flow['events']:,} events), events/s",
                     f"{flow['baseline_events_per_s']:,.0f}", f"{flow['flow_events_per_s']:,.0f}",
                     # bench_flow's own throughput_ratio is pulse/baseline throughput (below 1 = slower);
                     # here every ratio reads "times slower", so invert it.
                     f"{flow['baseline_events_per_s'] / flow['flow_events_per_s']:.2f}×"))
    if "error" not in serving:
        s = serving
        for q in ("p50", "p99"):
            rows.append((f"GetProfile latency {q}, 1 in flight, ms",
                         f"{s[f'baseline_{q}_ms']:.3f}", f"{s[f'pulse_{q}_ms']:.3f}", f"{s[f'{q}_ratio']:.2f}×"))
        if "baseline_rps" in s:
            rows.append((f"GetProfile throughput, {s['tput_threads']} client threads, requests/s",
                         f"{s['baseline_rps']:,.0f}", f"{s['pulse_rps']:,.0f}", f"{s['throughput_ratio']:.2f}×"))
    rows += recommendation_rows(recs or {})
    rows += segment_rows(segs or {})
    return rows


def markdown(flow: dict, serving: dict, recs: dict | None = None, segs: dict | None = None) -> str:
    header = ("benchmark", "baseline", "pulse", "ratio")
    rows = summary_rows(flow, serving, recs, segs)
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = ["Ratio: pulse's cost relative to the baseline measured in the same run (above 1 = slower).",
             "Baselines: a plain confluent-kafka consume loop (flow); a trivial gRPC server returning a "
             "constant response with the same thread pool and message types (serving)."]
    if "error" not in serving:
        s = serving
        notes.append(f"Serving: {s['profiles']:,} profiles from {s['events']:,} synthetic events; "
                     f"server-side extra per request (p50 difference) {s['server_extra_us']:.0f} µs; "
                     f"store {s['store_bytes_per_profile']:,.0f} B/profile on disk "
                     f"(encoded record {s['record_bytes_mean']:.0f} B).")
    if recs and "error" not in recs:
        notes.append("GetRecommendations: the client is its own process (a sync stub at 1 in flight, a grpc.aio "
                     f"channel at {recs['in_flight']} in flight); baselines are trivial servers of the same kind "
                     "(sync thread pool or grpc.aio) answering a constant 20-item response; with the writer "
                     f"updating ~{recs['writer_profiles_per_s']:,.0f} profiles/s and "
                     f"~{recs['writer_items_per_s']:,.0f} items/s.")
    for name, res in (("bench_flow", flow), ("bench_serving", serving), ("bench_serving --recommendations", recs or {})):
        if "error" in res:
            notes.append(f"{name} failed: {res['error']}")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file to write (default {RESULTS})")
    args = ap.parse_args(argv)

    from bench import bench_flow, bench_segments, bench_serving

    segs = _run("bench_segments", lambda _argv: bench_segments.main(["--only", "flow", "--only", "latency",
                                                               "--rate", "2000", "--seconds", "30"]))
    flow = _run("bench_flow", bench_flow.main)
    serving = _run("bench_serving", bench_serving.main)
    recs = _run("bench_serving --recommendations", bench_serving.main_recommendations)
    combined = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "bench_flow": flow,
        "bench_serving": serving,
        "bench_serving_recommendations": recs,
        "bench_segments": segs,
    }
    print("\n=== summary (Markdown) ===\n")
    print(markdown(flow, serving, recs, segs))
    args.output.write_text(json.dumps(_finite(combined), indent=2, sort_keys=False) + "\n")
    print(f"\nwrote {args.output}", file=sys.stderr)
    return combined


if __name__ == "__main__":
    result = main()
    sys.exit(1 if any("error" in result[k] for k in ("bench_flow", "bench_serving", "bench_serving_recommendations"))
             else 0)
