"""Throughput of `pulse run` with one worker, two workers (`processor.workers = 2`) and two
processes on loopback (`-i 0|1 -a A,B`), over the same topic in the same run.

Each configuration is a real `pulse run --exit-at-end` (the wall time from start to exit,
start-up included, the same for all three) over the same events; one worker is the
baseline, so the figures to watch are the ratios.

    python -m bench.bench_processes [--events 100000] [--partitions 4]

Uses ``PULSE_TEST_KAFKA_BOOTSTRAP`` if set, else starts the test broker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_flow import fill_topic, kafka, progress
from state.store import RocksStore
from tests.integration.test_pipeline import free_port
from tests.kafka_broker import create_topic, unique_topic

REPO = Path(__file__).resolve().parent.parent
CONFIGS = (("1 worker", 1, 1), ("2 workers", 2, 1), ("2 processes", 1, 2))


def run(name: str, workers: int, processes: int, env: dict[str, str], state_dir: Path) -> float:
    """Seconds from starting the processes to the last one's exit."""
    env = {**os.environ, **env, "PULSE_STATE_DIR": str(state_dir), "PULSE_PROCESSOR_WORKERS": str(workers)}
    args = [sys.executable, "-m", "pulse.cli", "run", "--exit-at-end"]
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    t0 = time.perf_counter()
    procs = []
    for i in range(processes):
        extra = ["-i", str(i), "-a", addresses] if processes > 1 else []
        log = (state_dir.parent / f"{name.replace(' ', '-')}-{i}.log").open("wb")
        procs.append((subprocess.Popen([*args, *extra], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        if proc.wait(1800) != 0:
            raise RuntimeError(f"{name}: pulse run exited with {proc.returncode}; see {log.name}")
        log.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args(argv)
    result: dict = {"events": args.events, "partitions": args.partitions}
    with kafka() as bootstrap, tempfile.TemporaryDirectory(prefix="pulse-bench-processes-") as tmp:
        topic = unique_topic("bench-processes")
        create_topic(bootstrap, topic, partitions=args.partitions)
        fill_topic(bootstrap, topic, args.events)
        for name, workers, processes in CONFIGS:
            progress(f"pulse run, {name}")
            tag = name.replace(" ", "-")
            env = {"PULSE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PULSE_KAFKA_EVENTS_TOPIC": topic,
                   "PULSE_PRIVACY_PII_SECRET": "bench-secret", "PULSE_PROCESSOR_METRICS_PORT": "0",
                   **{f"PULSE_KAFKA_{t.upper()}_TOPIC": f"{topic}.{t}-{tag}"
                      for t in ("dlq", "control", "erasures", "triggers", "exposures")}}
            state_dir = Path(tmp) / tag / "state"
            state_dir.parent.mkdir(parents=True)
            seconds = run(name, workers, processes, env, state_dir)
            store = RocksStore(state_dir / "store")
            profiles = store.count()
            store.close()
            result[name] = {"seconds": seconds, "events_per_s": args.events / seconds, "profiles": profiles}
    progress("done", end="\n")
    base = result["1 worker"]
    print(f"pulse run --exit-at-end over {args.events:,} events ({args.partitions} partitions), start-up included")
    for name, _w, _p in CONFIGS:
        r = result[name]
        r["ratio"] = r["events_per_s"] / base["events_per_s"]
        print(f"  {name:<12} {r['events_per_s']:>8,.0f} events/s  {r['seconds']:6.1f} s  "
              f"{r['profiles']:>7,} profiles  ratio {r['ratio']:.2f}")
    if len({result[name]["profiles"] for name, _w, _p in CONFIGS}) != 1:
        raise RuntimeError("the configurations built different numbers of profiles")
    return result


if __name__ == "__main__":
    main()
