"""Recommendation and propensity quality on a clickstream with planted preferences, and
what the models cost per event.

    python -m bench.bench_reco_quality [--events 120000] [--users 3000] [--items 1500] [--seed 7]

The stream is ``operators.synthetic_prefs.PreferenceClickstream``: users like 1-3 latent
clusters of items that cut across categories, item popularity is Zipf-like, new users
keep arriving. It goes through the processor's own code (``parse_batch``,
``IdentityRouter``, ``ProfileLogic`` with its model step, writes into a ``MemoryStore``)
in batches of ``--batch`` events, and is evaluated progressively: before a batch is
applied, each product view in it is predicted from the state so far (recommend 10, then
reveal the item the user viewed). The item index is rebuilt every ``--refresh`` events,
as the server rebuilds it every 2 s.

Two recommenders answer each prediction from the same index and profile:

- ``hybrid``: ``serving.recommend.recommend`` with the default strategy;
- ``popular``: popularity plus trending (the non-personal answer), with the user's cart
  and purchases excluded like the personal strategies exclude them, so both play by the
  same rules.

HitRate@10 (the viewed item is among the 10) and NDCG@10 (1 / log2(rank + 1) of a hit)
per history length: the user's product interactions before the event (0, 1-4, 5+).
Targets (issue 5): hybrid >= 2x popular HitRate@10 for 5+, and not worse for new users.

Propensity (purchase within 30 minutes): ROC AUC over every example, each scored when it
was made (before the model learnt its label), against a features-free baseline scored
the same way: the running base rate of purchases among the examples labelled so far.

Cost: the time the model step (``flows.learning.Learner.on_event``) takes per event,
against the whole profile step per event, both measured in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict

import orjson

from flows.learning import Learner
from flows.parse import parse_batch
from flows.profile_flow import IdentityRouter, ProfileLogic
from flows.records import RawRecord
from flows.runtime_state import ProcessorState
from operators.models import Models, ModelsConfig, roc_auc
from operators.profile import Policy
from operators.reco import MatrixFactorization
from operators.synthetic_prefs import PreferenceClickstream
from serving.item_index import build_index
from serving.recommend import POPULAR, RecommendParams, recommend
from state.store import MemoryStore

START_MS = 1_796_205_600_000
K = 10
BUCKETS = ("0", "1-4", "5+")


def bucket(n: int) -> str:
    return "0" if n == 0 else "1-4" if n < 5 else "5+"


class TimedLearner(Learner):
    """The flow's learner, timing its per-event step and keeping every resolved label."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = 0.0
        self.calls = 0
        self.labels = []

    def on_event(self, profile, event, items):
        t0 = time.perf_counter()
        try:
            return super().on_event(profile, event, items)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def _labels(self, labels) -> None:
        self.labels.extend(labels)
        super()._labels(labels)


def run(events: int, users: int, items: int, seed: int, batch: int, refresh: int, item_skew: float = 0.7,
        cluster_share: float = 0.75, dim: int = 32, learning_rate: float = 0.15, negatives: int = 2) -> dict:
    gen = PreferenceClickstream(seed=seed, users=users, items=items, item_skew=item_skew, cluster_share=cluster_share)
    store = MemoryStore()
    learner = TimedLearner(Models(ModelsConfig()), MatrixFactorization(dim=dim, learning_rate=learning_rate),
                           negatives=negatives,
                           save_interval_s=1e9)
    state = ProcessorState(store, policy=Policy(), max_aliases=50, cache_profiles=10 * users, learner=learner)
    router, logic = IdentityRouter(state), ProfileLogic(state)
    names = ("hybrid", "popular", "oracle")
    hits = {name: defaultdict(float) for name in names}
    ndcg = {name: defaultdict(float) for name in names}
    counts: dict[str, int] = defaultdict(int)
    stages: dict[str, int] = defaultdict(int)
    index = build_index(())
    since_refresh = 0
    step_seconds = 0.0
    pending: list[dict] = []

    order_cache: dict[int, list[str]] = {}

    def popular_order() -> list[str]:
        key = id(index)
        if key not in order_cache:
            order_cache.clear()
            order_cache[key] = [index.id_list[row] for row in index.order]
        return order_cache[key]

    def evaluate(ev: dict) -> None:
        profile = state.profiles.get("user:" + ev["user_id"])
        n = profile.interactions() if profile is not None else 0
        b = bucket(n)
        target = ev["item_id"]
        now = ev["timestamp"]
        got = recommend(index, profile, RecommendParams(k=K), now)
        stages[got.stage or got.strategy] += 1
        blocked = frozenset(profile.cart) | frozenset(profile.purchased) if profile is not None else frozenset()
        base = recommend(index, None, RecommendParams(k=K, exclude=blocked), now, strategy=POPULAR)
        counts[b] += 1
        # The ceiling: what knowing the planted clusters gives (popular items of the user's clusters).
        mine = set(gen.clusters_of(ev["user_id"]))
        oracle = [item for item in popular_order() if gen.cluster_of(item) in mine and item not in blocked][:K]
        for name, ranked in (("hybrid", [r.item_id for r in got.items]), ("popular", [r.item_id for r in base.items]),
                             ("oracle", oracle)):
            if target in ranked:
                rank = ranked.index(target) + 1
                hits[name][b] += 1
                ndcg[name][b] += 1 / math.log2(rank + 1)

    def apply(evs: list[dict]) -> None:
        nonlocal step_seconds
        records = [RawRecord(orjson.dumps(e), e["user_id"].encode(), "events/0", off, e["timestamp"])
                   for off, e in evs]
        t0 = time.perf_counter()
        parsed = parse_batch(records, state=state)
        routed = [router(p) for p in parsed]
        for write in logic(routed):
            store.apply(write.profiles, write.aliases, write.members, write.items, write.raw)
            state.written({write.write_seq}, write.identity_seqs)
        step_seconds += time.perf_counter() - t0

    t_start = time.perf_counter()
    for offset, ev in enumerate(gen.events(events, START_MS)):
        pending.append((offset, ev))
        if len(pending) < batch:
            continue
        for _off, e in pending:
            if e["type"] == "product_view" and len(index):
                evaluate(e)
        apply(pending)
        since_refresh += len(pending)
        pending = []
        if since_refresh >= refresh:
            index = build_index(store.iter_items())
            since_refresh = 0
    if pending:
        apply(pending)
    wall = time.perf_counter() - t_start

    labels = [lab for lab in learner.labels if lab.model == "propensity"]
    pairs, base_pairs = [], []
    positives = seen = 0
    for lab in sorted(labels, key=lambda lab: (lab.created_ms, lab.profile_id)):
        pairs.append((lab.y, lab.score))
        base_pairs.append((lab.y, positives / seen if seen else 0.0))
        positives += lab.y
        seen += 1
    out = {
        "events": events, "users": users, "items": items, "seed": seed, "item_skew": item_skew,
        "cluster_share": cluster_share,
        "evaluated": dict(counts), "stages": dict(stages),
        "hit_rate@10": {name: {b: hits[name][b] / counts[b] for b in BUCKETS if counts[b]} for name in hits},
        "ndcg@10": {name: {b: ndcg[name][b] / counts[b] for b in BUCKETS if counts[b]} for name in ndcg},
        "propensity": {"examples": len(pairs), "positives": positives, "roc_auc": roc_auc(pairs),
                       "baseline_roc_auc": roc_auc(base_pairs)},
        "model_step_us_per_event": 1e6 * learner.seconds / max(1, learner.calls),
        "profile_step_us_per_event": 1e6 * step_seconds / events,
        "wall_s": wall,
    }
    return out


def report(r: dict) -> str:
    lines = [f"{r['events']} events, {r['users']} users, {r['items']} items (seed {r['seed']}, item skew "
             f"{r['item_skew']}, cluster share {r['cluster_share']}); "
             f"{sum(r['evaluated'].values())} views predicted; hybrid stages {r['stages']}",
             f"{'history':<8} {'views':>7} {'HR@10 hybrid':>13} {'HR@10 popular':>14} {'ratio':>6} "
             f"{'NDCG hybrid':>12} {'NDCG popular':>13} {'HR@10 oracle':>13}"]
    hr, nd = r["hit_rate@10"], r["ndcg@10"]
    for b in BUCKETS:
        if b not in hr["hybrid"]:
            continue
        ratio = hr["hybrid"][b] / hr["popular"][b] if hr["popular"][b] else float("inf")
        lines.append(f"{b:<8} {r['evaluated'][b]:>7} {hr['hybrid'][b]:>13.3f} {hr['popular'][b]:>14.3f} "
                     f"{ratio:>6.2f} {nd['hybrid'][b]:>12.3f} {nd['popular'][b]:>13.3f} {hr['oracle'][b]:>13.3f}")
    p = r["propensity"]
    lines.append(f"propensity: {p['examples']} examples ({p['positives']} positive), ROC AUC {p['roc_auc']:.3f} "
                 f"vs features-free baseline {p['baseline_roc_auc']:.3f}")
    lines.append(f"cost: model step {r['model_step_us_per_event']:.1f} us/event of a profile step of "
                 f"{r['profile_step_us_per_event']:.1f} us/event "
                 f"({100 * r['model_step_us_per_event'] / r['profile_step_us_per_event']:.0f}%); wall {r['wall_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--refresh", type=int, default=1000)
    parser.add_argument("--item-skew", type=float, default=0.7, help="Zipf exponent of item popularity")
    parser.add_argument("--cluster-share", type=float, default=0.75,
                        help="share of views from the user's own taste clusters")
    parser.add_argument("--dim", type=int, default=32, help="latent factors (models.factors)")
    parser.add_argument("--learning-rate", type=float, default=0.15, help="models.factor_learning_rate")
    parser.add_argument("--negatives", type=int, default=2, help="models.negatives")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    r = run(args.events, args.users, args.items, args.seed, args.batch, args.refresh, args.item_skew,
            args.cluster_share, args.dim, args.learning_rate, args.negatives)
    print(json.dumps(r, indent=2) if args.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
