"""The store's write path: RocksDB options under the processor's write pattern, compared in
one run.

    python -m bench.bench_store [--profiles 200000] [--seconds 120] [--rate 20]

What the processor writes (measured on a 1.2-million-event replay of 200,000 heavy-tailed
users, see the README): one WriteBatch per batch of events, overwriting whole profile
records. Records are small for most users and tens of KB for the heaviest, and the heavy
users are also the ones written most often, so most written bytes are large records
rewritten again and again. With RocksDB's leveled compaction every byte written is
rewritten several times as it moves down the levels; once the store is large, that
background work can fall behind and RocksDB then slows the writes down (write stalls).

Each configuration gets a fresh store in a temporary directory and the same workload:

1. fill: every profile written once (in random order), as fast as possible;
2. steady: for ``--seconds``, batches of ``--batch`` records chosen by a heavy-tailed
   popularity (the same rank decides size and frequency), offered at ``--rate`` MB/s.

Reported per configuration: the steady phase's WriteBatch time (p50, p99, max), the
throughput reached against the rate offered, RocksDB's stall seconds, the files in level
0 at the end, the bytes RocksDB wrote in flushes and compactions (compressed) per byte
the application wrote, the CPU seconds those took (``rocksdb.cfstats``, "Sum" row: the
background work that competes with the processor for the machine's cores), and the
store's size. Compared with RocksDB's defaults measured in the same run (ratios).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time

import orjson

from bench.bench_segments import percentile
from flows.store_stats import directory_size
from state.store import PROFILES_CF, RocksStore, StoreOptions

CONFIGS = {
    "defaults": StoreOptions(defaults=True),  # RocksDB's defaults (Pulse before the change)
    "tuned": StoreOptions(),  # Pulse's defaults now (state.store.StoreOptions)
}


def record_sizes(profiles: int, seed: int = 7) -> list[int]:
    """Encoded record size per profile, by popularity rank (rank 0 the busiest): a power law
    fitted to the replay's profiles (3.8 KB at the top 10%, 10 KB at the top 1%, 33 KB at
    the top 0.1%, 89 KB the heaviest; 1.6-2.2 KB for the other half)."""
    rng = random.Random(seed)
    out = []
    for rank in range(profiles):
        top = (rank + 1) / profiles
        size = 1400 + 665 * top ** -0.56
        out.append(int(min(90_000, size * rng.uniform(0.85, 1.15))))
    return out


_CATEGORIES = ("outdoor/hiking-boots", "outdoor/tents", "apparel/jackets", "home/kitchen", "electronics/audio")


def value(size: int, rng: random.Random) -> bytes:
    """A record of ``size`` bytes shaped like the processor's JSON records (repeated field
    names, nearby millisecond timestamps, prices), so that it compresses like them."""
    base = rng.randrange(1_790_000_000_000, 1_800_000_000_000)
    parts, n = [], 0
    while n < size:
        ts = base + rng.randrange(0, 86_400_000)
        cat = rng.choice(_CATEGORIES)
        chunk = orjson.dumps({f"{cat}:{rng.randrange(1000):03d}": {
            "ops": [[ts, rng.choice((1, -1))]], "since": ts, "price": round(rng.uniform(5, 400), 2) * 1.0,
            "price_ms": ts, "category": cat, "category_ms": ts + rng.randrange(0, 10_000)}})
        parts.append(chunk[1:-1])
        n += len(chunk) - 1
    return (b"{" + b",".join(parts))[: max(0, size - 1)] + b"}"


def _compaction_sum(stats: str) -> tuple[float, float]:
    """Write(GB) and CompMergeCPU(sec) of the "Sum" row in RocksDB's per-family compaction
    statistics (``rocksdb.cfstats``): flushes and compactions of every level."""
    lines = (stats or "").splitlines()
    header = next((ln.split() for ln in lines if ln.lstrip().startswith("Level") and "Write(GB)" in ln), None)
    row = next((ln.split() for ln in lines if ln.lstrip().startswith("Sum ")), None)
    if header is None or row is None:
        return 0.0, 0.0
    # "Files" and "Size" span two columns each in the rows ("0/0", "0.00 KB")
    at = {name: i + 1 for i, name in enumerate(header)}
    return float(row[at["Write(GB)"]]), float(row[at["CompMergeCPU(sec)"]])


def run_config(name: str, options, profiles: int, seconds: float, rate_mb: float, batch: int, skew: float) -> dict:
    rng = random.Random(11)
    sizes = record_sizes(profiles)
    ranks = range(profiles)
    cum = list(itertools.accumulate((rank + 1) ** -skew for rank in ranks))  # popularity, cumulated
    pool = {}  # a few values per size class, reused: generating bytes is not what is measured

    def payload(size: int) -> bytes:
        key = size // 256
        vals = pool.setdefault(key, [])
        if len(vals) < 4:
            vals.append(value(size, rng))
            return vals[-1]
        return vals[rng.randrange(4)]

    with tempfile.TemporaryDirectory(prefix="pulse-bench-store-") as tmp:
        store = RocksStore(tmp, options=options)
        try:
            order = list(range(profiles))
            rng.shuffle(order)
            t0 = time.perf_counter()
            written = 0
            for i in range(0, profiles, batch):
                rows = [(PROFILES_CF, b"p%08d" % r, payload(sizes[r])) for r in order[i:i + batch]]
                written += sum(len(v) for _, _, v in rows)
                store.raw_apply(rows)
            fill_s = time.perf_counter() - t0
            fill_mb = written / 1e6
            before = store.health().stall_seconds
            times, steady_bytes = [], 0
            start = time.perf_counter()
            budget = rate_mb * 1e6
            while (now := time.perf_counter()) - start < seconds:
                due = start + steady_bytes / budget
                if now < due:
                    time.sleep(min(due - now, 0.05))
                    continue
                rows = [(PROFILES_CF, b"p%08d" % r, payload(sizes[r]))
                        for r in rng.choices(ranks, cum_weights=cum, k=batch)]
                t = time.perf_counter()
                store.raw_apply(rows)
                times.append(time.perf_counter() - t)
                steady_bytes += sum(len(v) for _, _, v in rows)
            elapsed = time.perf_counter() - start
            health = store.health()
            stats = store.family_stats(PROFILES_CF)
            compacted_gb, compaction_cpu_s = _compaction_sum(stats)
        finally:
            store.close()
        size_mb = directory_size(tmp) / 1e6
    times.sort()
    pick = lambda q: percentile(times, q) * 1000  # noqa: E731
    return {
        "config": name, "fill_mb": round(fill_mb), "fill_mb_per_s": round(fill_mb / fill_s, 1),
        "steady_mb_per_s": round(steady_bytes / 1e6 / elapsed, 1), "offered_mb_per_s": rate_mb,
        "batches": len(times), "write_ms_p50": round(pick(50), 2), "write_ms_p99": round(pick(99), 2),
        "write_ms_max": round(times[-1] * 1000, 1), "stall_s": round(health.stall_seconds - before, 2),
        "level0_files": health.level0_files[PROFILES_CF],
        "write_amplification": round(compacted_gb * 1e9 / max(1.0, written + steady_bytes), 2),
        "compaction_cpu_s": compaction_cpu_s,
        "store_mb": round(size_mb),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_store", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the steady phase per configuration")
    ap.add_argument("--rate", type=float, default=16.0, help="MB/s of records offered in the steady phase")
    ap.add_argument("--batch", type=int, default=200, help="records per WriteBatch")
    ap.add_argument("--skew", type=float, default=0.78, help="popularity exponent (rank ** -skew)")
    ap.add_argument("--configs", default="defaults,tuned",
                    help=f"comma-separated, the first is the baseline; known: {', '.join(CONFIGS)}")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or len(names) < 2:
        ap.error(f"--configs needs two or more of {', '.join(CONFIGS)}; got {args.configs!r}")
    results = [run_config(c, CONFIGS[c], args.profiles, args.seconds, args.rate, args.batch, args.skew)
               for c in names]
    base, tuned = results[0], results[1]
    ratio = {"p99_ratio": round(tuned["write_ms_p99"] / max(base["write_ms_p99"], 1e-9), 2),
             "compaction_cpu_ratio": (round(tuned["compaction_cpu_s"] / base["compaction_cpu_s"], 2)
                                      if base["compaction_cpu_s"] else None)}
    if args.json:
        print(json.dumps({"configs": results, **ratio}))
        return 0
    for r in results:
        print(f"{r['config']:>9}: fill {r['fill_mb']} MB at {r['fill_mb_per_s']} MB/s; steady "
              f"{r['steady_mb_per_s']}/{r['offered_mb_per_s']} MB/s, WriteBatch p50 {r['write_ms_p50']} ms "
              f"p99 {r['write_ms_p99']} ms max {r['write_ms_max']} ms, stalled {r['stall_s']} s, "
              f"L0 files {r['level0_files']}, write amplification {r['write_amplification']}, "
              f"flush+compaction CPU {r['compaction_cpu_s']} s, "
              f"store {r['store_mb']} MB")
    print(f"{tuned['config']} / {base['config']}: WriteBatch p99 {ratio['p99_ratio']}, "
          f"flush+compaction CPU {ratio['compaction_cpu_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
