"""One million profiles: process memory while they are created, and store bytes per profile.

    python -m bench.bench_scale [--profiles 1000000] [--cache 100000] [--models/--no-models]

The profile flow (the real one: parse, identity, profile step with the 20 example segments,
RocksDB sink) reads a bounded source that makes each of ``--profiles`` users show up with
two events (a product view and, for a third of them, an add-to-cart), in user order, so the
number of stored profiles grows linearly with time. A thread samples the process's RSS
every few seconds. The processor keeps at most ``--cache`` profiles in memory (the
``state.cache_profiles`` setting; the least recently used go); memory must stop growing
once that many exist, however many more are stored.

Reported: RSS against profiles stored, the store's size on disk per profile (after a
compaction), and the throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, run_main

from bench.bench_segments import SEGMENTS
from bench.soak import rss_mb
from flows.learning import Learner
from flows.profile_flow import build_flow
from flows.records import RawRecord, Tick
from operators.models import Models, ModelsConfig
from operators.profile import Policy
from operators.reco import MatrixFactorization
from operators.segments import load_segments
from state.store import RocksStore

START_MS = 1_796_205_600_000


class _Part(StatefulSourcePartition):
    def __init__(self, users: int, batch: int) -> None:
        self._users, self._batch, self._next, self._done = users, batch, 0, False

    def next_batch(self):
        if self._done:
            raise StopIteration
        out = []
        for u in range(self._next, min(self._users, self._next + self._batch)):
            ts = START_MS + u * 10
            item = f"sku-{u % 5000}"
            out.append(RawRecord(orjson.dumps({"event_id": f"v{u}", "type": "product_view", "user_id": f"u{u:07d}",
                                               "timestamp": ts, "item_id": item, "category": "outdoor/tents",
                                               "price": 99.0}), None, "scale/0", 2 * u, ts))
            if u % 3 == 0:
                out.append(RawRecord(orjson.dumps({"event_id": f"c{u}", "type": "add_to_cart", "user_id": f"u{u:07d}",
                                                   "timestamp": ts + 5, "item_id": item, "price": 99.0,
                                                   "quantity": 1}), None, "scale/0", 2 * u + 1, ts + 5))
        self._next += self._batch
        out.append(Tick("scale/0", None, final=self._next >= self._users))
        self._done = self._next >= self._users
        return out

    def snapshot(self):
        return None


class UsersSource(FixedPartitionedSource):
    def __init__(self, users: int, batch: int = 1000) -> None:
        self._users, self._batch = users, batch

    def list_parts(self):
        return ["users"]

    def build_part(self, step_id, for_part, resume_state):
        return _Part(self._users, self._batch)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(profiles: int, cache: int, models: bool, sample_s: float = 5.0) -> dict:
    with tempfile.TemporaryDirectory(prefix="pulse-scale-") as d:
        store = RocksStore(Path(d) / "store")
        learner = (Learner(Models(ModelsConfig()), MatrixFactorization(dim=32, learning_rate=0.15))
                   if models else None)
        flow = build_flow(UsersSource(profiles), TestingSink([]), store, policy=Policy(), cache_profiles=cache,
                          segments=load_segments(str(SEGMENTS)), learner=learner)
        samples: list[dict] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.wait(sample_s):
                samples.append({"s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb_self(), 1),
                                "profiles_estimate": store.estimate_count()})
                print(json.dumps(samples[-1]), flush=True)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        run_main(flow)
        took = time.monotonic() - t0
        stop.set()
        thread.join()
        count = store.count()
        store._db.compact_range(None, None)
        store._cfs["profiles"].compact_range(None, None)
        size = dir_bytes(Path(d) / "store")
        sample_raw = [len(v) for _k, v in zip(range(10_000), store._cfs["profiles"].values())]
        store.close()
    return {"profiles": count, "cache_profiles": cache, "models": models, "seconds": took,
            "events_per_s": (profiles + (profiles + 2) // 3) / took, "store_bytes": size,
            "store_bytes_per_profile": size / max(1, count),
            "encoded_profile_bytes_mean": sum(sample_raw) / max(1, len(sample_raw)), "samples": samples}


def rss_mb_self() -> float:
    import os
    return rss_mb(os.getpid())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--cache", type=int, default=100_000)
    ap.add_argument("--models", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)
    r = run(args.profiles, args.cache, args.models)
    rss = [s["rss_mb"] for s in r["samples"]]
    print(f"\n{r['profiles']:,} profiles in {r['seconds']:.0f} s ({r['events_per_s']:,.0f} events/s), "
          f"cache {r['cache_profiles']:,}, models {'on' if r['models'] else 'off'}")
    print(f"store {r['store_bytes'] / 1e6:,.0f} MB on disk = {r['store_bytes_per_profile']:.0f} B per profile "
          f"(encoded record {r['encoded_profile_bytes_mean']:.0f} B before compression)")
    if rss:
        quarter = max(1, len(rss) // 4)
        print(f"RSS: max {max(rss):.0f} MB; first quarter of the run max {max(rss[:quarter]):.0f} MB, "
              f"last quarter max {max(rss[-quarter:]):.0f} MB")
    Path(Path(__file__).parent / "scale-latest.json").write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
