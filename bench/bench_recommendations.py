"""GetRecommendations served by ``pulse serve``'s server, sync thread pool and grpc.aio,
each beside a trivial handler of its own kind returning a constant response.

    python -m bench.bench_serving --recommendations [--items 10000] [--profiles 100000]
    python -m bench.bench_recommendations [same options]

Processes: a *writer* builds a catalog and profiles with learnt state (factors,
co-occurrence neighbours, recent interactions) in RocksDB and keeps writing while the
calls run (unless ``--no-with-writes``); one *server* process per kind
(``serving.server.create_server`` on a secondary instance of the store, or the trivial
handler); a separate *client* process times the calls at 1 in flight and drives
``--in-flight`` concurrent calls for throughput: Python by default, or with ``--client go``
ghz, a Go load generator (``bench.go_client``; ``make bench-tools``). Helpers shared with
the GetProfile benchmark come from ``bench.bench_serving``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing as mp
import random
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from bench.bench_serving import SERVICE, SOURCE, Child, _dir_bytes, progress, summary_ms
from bench.go_client import GoClient
from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc


RECS_SERVICE_METHOD = "GetRecommendations"
REC_KINDS = ("baseline-sync", "pulse-sync", "baseline-aio", "pulse-aio")


def rec_kinds(max_workers: list[int], aio: bool) -> dict[str, int]:
    """Server kind -> thread pool size. One pool size: "baseline-sync" and "pulse-sync";
    several (``--max-workers 2,4,8``): "baseline-sync-N" and "pulse-sync-N" for each N."""
    kinds: dict[str, int] = {}
    for n in max_workers:
        suffix = "" if len(max_workers) == 1 else f"-{n}"
        kinds[f"baseline-sync{suffix}"] = kinds[f"pulse-sync{suffix}"] = n
    if aio:
        kinds["baseline-aio"] = kinds["pulse-aio"] = 0
    return kinds


def _workers_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct positive pool sizes like 8 or 2,4,8, got {text!r}")
    return values


RECS_FACTORS, RECS_NEIGHBORS, RECS_RECENT = 32, 60, 20  # the models' defaults and bounds


def _recs_writer_main(conn, store_dir: str, n_items: int, n_profiles: int, seed: int,
                      profile_writes_per_ms: float, item_writes_per_ms: float) -> None:
    from operators.items import ItemStats
    from operators.profile import Profile
    from state.codec import encode_item, encode_profile
    from state.store import RocksStore, encode_members

    rng = random.Random(seed)
    now = int(time.time() * 1000)
    cats = [f"dept{a}/cat{b}" for a in range(20) for b in range(10)]  # 200 categories

    # What the models learn (operators.reco): factors on items and profiles, up to 60
    # co-occurrence neighbours per item, the last 20 product interactions per profile.
    brands = [f"brand{b}" for b in range(300)]

    def vector() -> list[float]:
        return [rng.gauss(0.0, 0.3) for _ in range(RECS_FACTORS)]

    def item(i: int, t: int) -> ItemStats:
        return ItemStats(f"sku-{i:06d}", cats[i % len(cats)], t - 10**7, round(rng.uniform(2, 400), 2), t - 10**7,
                         rng.expovariate(0.05), t - rng.randrange(3_600_000), rng.randrange(500),
                         rng.randrange(50), rng.randrange(20), brand=brands[i % len(brands)], brand_ms=t - 10**7,
                         trend=rng.expovariate(0.2), trend_ref_ms=t - rng.randrange(3_600_000), factors=vector(),
                         neighbors={f"sku-{rng.randrange(n_items):06d}": round(rng.expovariate(1.0), 3)
                                    for _ in range(RECS_NEIGHBORS)})

    def profile(n: int, t: int) -> Profile:
        pid = f"user:u{n:06d}"
        liked = rng.sample(cats, 5)
        recent = sorted([t - rng.randrange(86_400_000), f"sku-{rng.randrange(n_items):06d}",
                         rng.choice(("product_view", "product_view", "product_view", "add_to_cart", "purchase"))]
                        for _ in range(RECS_RECENT))
        cart = {f"sku-{rng.randrange(n_items):06d}": {"ops": [[t - 5000, 1]], "since": 0, "price": 10.0,
                                                      "price_ms": t - 5000, "category": liked[0]}
                for _ in range(rng.randrange(3))}
        return Profile(pid, counts={"page_view": rng.randrange(1, 200), "product_view": rng.randrange(50),
                                    "add_to_cart": rng.randrange(5)},
                       first_seen_ms=t - 86_400_000, last_seen_ms=t, cart_log=cart,
                       categories={c: rng.randrange(1, 30) for c in liked},
                       purchased={f"sku-{rng.randrange(n_items):06d}": t - 60_000 for _ in range(rng.randrange(4))},
                       positions={SOURCE: n}, version=n,
                       seen={f"{rng.getrandbits(64):016x}": t - k for k in range(16)},
                       factors=vector(), recent=recent, brands={b: rng.randrange(1, 10) for b in rng.sample(brands, 4)},
                       price_taste=[round(1_000_000 * rng.uniform(1.0, 5.0)) * 10, 10])

    t0 = time.perf_counter()
    path = Path(store_dir)
    store = RocksStore(path)
    store.apply({}, items={f"sku-{i:06d}": encode_item(item(i, now)) for i in range(n_items)})
    record_bytes = 0
    for start in range(0, n_profiles, 5000):
        chunk = {}
        for n in range(start, min(n_profiles, start + 5000)):
            raw = encode_profile(profile(n, now))
            record_bytes += len(raw)
            chunk[f"user:u{n:06d}"] = raw
        store.apply(chunk, {pid: pid for pid in chunk}, {pid: encode_members([pid]) for pid in chunk})
        progress(f"writer: profiles {start + len(chunk)}/{n_profiles}")
    store.close()
    store = RocksStore(path)
    conn.send(("ready", {"write_s": time.perf_counter() - t0, "record_bytes_mean": record_bytes / max(1, n_profiles),
                         "store_bytes": _dir_bytes(path)}))
    writing = False
    done_p = done_i = 0
    start = time.perf_counter()
    try:
        while True:
            if conn.poll(0.001):
                cmd = conn.recv()
                if cmd == "go":
                    writing, done_p, done_i, start = True, 0, 0, time.perf_counter()
                    conn.send(("going", None))
                    continue
                elapsed = time.perf_counter() - start
                conn.send(("stopped", {"profiles": done_p, "items": done_i, "seconds": elapsed}))
                return
            if not writing:
                continue
            ms = (time.perf_counter() - start) * 1000
            due_p = min(200, int(ms * profile_writes_per_ms) - done_p)
            due_i = min(200, int(ms * item_writes_per_ms) - done_i)
            if due_p <= 0 and due_i <= 0:
                continue
            t = int(time.time() * 1000)
            profiles = {}
            for _ in range(max(0, due_p)):
                n = rng.randrange(n_profiles)
                profiles[f"user:u{n:06d}"] = encode_profile(profile(n, t))
            items = {f"sku-{i:06d}": encode_item(item(i, t)) for i in
                     (min(n_items - 1, int(rng.paretovariate(1.2)) - 1) for _ in range(max(0, due_i)))}
            store.apply(profiles, items=items)
            done_p += max(0, due_p)
            done_i += max(0, due_i)
    finally:
        store.close()


class _PausableReader:
    """A reader whose catch-up can be switched off (an idle server must not steal a core)."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.paused = False

    def catch_up(self) -> bool:
        return False if self.paused else self._reader.catch_up()

    def __getattr__(self, name):
        return getattr(self._reader, name)


def _recs_baseline_response() -> "pulse_pb2.GetRecommendationsResponse":
    r = pulse_pb2.GetRecommendationsResponse(strategy="personal", personalized=True)
    for i in range(20):
        r.items.add(item_id=f"sku-{i:06d}", score=10.0 - i / 10, reason="popular in dept1/cat2, a category you like",
                    category="dept1/cat2", price=19.99)
    return r


def _recs_stats(reader) -> dict:
    from prometheus_client import REGISTRY

    def v(name, labels=None):
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    ok = {"method": RECS_SERVICE_METHOD, "code": "OK"}
    cpu = time.process_time()
    return {"cpu_s": cpu, "handler_s": v("pulse_rpc_latency_seconds_sum", ok),
            "handler_n": v("pulse_rpc_latency_seconds_count", ok),
            "catch_up_s": v("pulse_store_catch_up_seconds_sum"), "catch_up_n": v("pulse_store_catch_up_seconds_count")}


def _recs_server_main(conn, kind: str, store_dir: str, secondary_dir: str, max_workers: int,
                      catch_up_ms: int, items_refresh_ms: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    import asyncio

    reader = None
    if kind.startswith("pulse"):
        from state.store import RocksReader

        reader = _PausableReader(RocksReader(store_dir, secondary_dir))
    response = _recs_baseline_response()

    def trivial(request, context):
        return response

    def command(cmd, stop):
        if cmd == "stats":
            return "stats", _recs_stats(reader)
        if cmd in ("pause", "resume"):
            if reader is not None:
                reader.paused = cmd == "pause"
            return cmd + "d", None
        if cmd == "stop":
            stop()
            return "stopped", None
        raise ValueError(cmd)

    def trivial_handler(server):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            RECS_SERVICE_METHOD: grpc.unary_unary_rpc_method_handler(
                trivial, request_deserializer=pulse_pb2.GetRecommendationsRequest.FromString,
                response_serializer=pulse_pb2.GetRecommendationsResponse.SerializeToString)}),))

    if "-sync" in kind or kind == "pulse-aio":
        if kind.startswith("pulse"):
            from serving.server import create_server

            # The server `pulse serve` runs (keys, health, reflection and all), either kind.
            server, port = create_server("127.0.0.1:0", reader, max_workers=max(1, max_workers),
                                         catch_up_interval_ms=catch_up_ms, items_refresh_ms=items_refresh_ms,
                                         kind="aio" if kind == "pulse-aio" else "sync")
        else:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                 options=[("grpc.so_reuseport", 0)])
            trivial_handler(server)
            port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        conn.send(("port", port))
        stopped = threading.Event()
        while not stopped.is_set():
            kind_, value = command(conn.recv(), lambda: (server.stop(0).wait(), stopped.set()))
            conn.send((kind_, value))
        return

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        trivial_handler(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send(("port", port))
        done = asyncio.Event()
        while not done.is_set():
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                await server.stop(0)
                done.set()
                conn.send(("stopped", None))
            else:
                conn.send(command(cmd, lambda: None))

    asyncio.run(run())


def _recs_requests(seed: int, n: int, n_profiles: int, anon_rate: float) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = "" if rng.random() < anon_rate else f"u{rng.randrange(n_profiles):06d}"
        out.append(pulse_pb2.GetRecommendationsRequest(user_id=user, k=20))
    return out


def _recs_client_main(conn, seed: int, n_profiles: int, anon_rate: float) -> None:
    import asyncio

    requests = _recs_requests(seed, 20_000, n_profiles, anon_rate)
    stubs: dict[int, Any] = {}
    conn.send(("ready", None))
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            conn.send(("stopped", None))
            return
        if cmd[0] == "latency":  # ("latency", port, first, count): one call in flight, sync stub
            _, port, first, count = cmd
            if port not in stubs:
                ch = grpc.insecure_channel(f"127.0.0.1:{port}")
                grpc.channel_ready_future(ch).result(timeout=30)
                stubs[port] = pulse_pb2_grpc.PulseStub(ch)
            call = stubs[port].GetRecommendations
            times = []
            clock = time.perf_counter_ns
            gc.disable()
            try:
                for i in range(first, first + count):
                    t0 = clock()
                    call(requests[i % len(requests)], timeout=10)
                    times.append(clock() - t0)
            finally:
                gc.enable()
            conn.send(("times", times))
        elif cmd[0] == "load":  # ("load", port, in_flight, seconds): N tasks on one grpc.aio channel
            _, port, inflight, seconds = cmd

            async def load():
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                    call = pulse_pb2_grpc.PulseStub(ch).GetRecommendations
                    for i in range(50):
                        await call(requests[i], timeout=10)
                    times: list[int] = []
                    stop_at = time.perf_counter() + seconds
                    clock = time.perf_counter_ns

                    async def worker(k: int):
                        i = k * 997
                        while time.perf_counter() < stop_at:
                            t0 = clock()
                            await call(requests[i % len(requests)], timeout=10)
                            times.append(clock() - t0)
                            i += 1

                    t0 = time.perf_counter()
                    await asyncio.gather(*(worker(k) for k in range(inflight)))
                    return times, time.perf_counter() - t0

            gc.disable()
            try:
                times, elapsed = asyncio.run(load())
            finally:
                gc.enable()
            conn.send(("load", {"times": times, "seconds": elapsed}))


def main_recommendations(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="GetRecommendations: sync vs grpc.aio vs trivial handlers")
    ap.add_argument("--recommendations", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--profiles", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=3_000, help="timed calls at 1 in flight per server and phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--load-seconds", type=float, default=2.0, help="seconds per load round")
    ap.add_argument("--anon-rate", type=float, default=0.1, help="share of anonymous requests")
    ap.add_argument("--max-workers", type=_workers_list, default=[8],
                    help="thread pool size of the sync servers, or several (2,4,8): a pulse and a trivial "
                         "server for each, all in the same run")
    ap.add_argument("--aio", action=argparse.BooleanOptionalAction, default=True, help="also the grpc.aio servers")
    ap.add_argument("--catch-up-ms", type=int, default=20)
    ap.add_argument("--items-refresh-ms", type=int, default=2000)
    ap.add_argument("--profile-writes-per-ms", type=float, default=2.0)
    ap.add_argument("--item-writes-per-ms", type=float, default=1.0)
    ap.add_argument("--with-writes", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--client", choices=("python", "go"), default="python",
                    help="the client process: Python (grpcio; the sync stub at 1 in flight, grpc.aio tasks under "
                         "load) or ghz, a Go load generator (`make bench-tools`), which spends far less CPU per call")
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    children: list[Child] = []
    phases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pulse-bench-recs-") as tmp:
        store_dir = str(Path(tmp) / "store")
        try:
            writer = Child(ctx, "writer", _recs_writer_main, store_dir, args.items, args.profiles, args.seed,
                           args.profile_writes_per_ms, args.item_writes_per_ms)
            children.append(writer)
            built = writer.recv("ready", 900)
            progress(f"wrote {args.items} items and {args.profiles} profiles in {built['write_s']:.1f} s", end="\n")
            servers = {}
            kinds = rec_kinds(args.max_workers, args.aio)
            for kind, workers in kinds.items():
                servers[kind] = Child(ctx, kind, _recs_server_main, kind, store_dir, str(Path(tmp) / f"sec-{kind}"),
                                      workers, args.catch_up_ms, args.items_refresh_ms)
                children.append(servers[kind])
            ports = {kind: child.recv("port", 120) for kind, child in servers.items()}
            if args.client == "go":
                go = GoClient(Path(tmp), f"{SERVICE}/{RECS_SERVICE_METHOD}",
                              [{"user_id": r.user_id, "k": r.k}
                               for r in _recs_requests(args.seed, 20_000, args.profiles, args.anon_rate)])

                def latency(port: int, first: int, count: int) -> list[int]:
                    return go.latency(port, first, count)

                def under_load(port: int) -> dict:
                    return go.load(port, args.in_flight, args.load_seconds)
            else:
                client = Child(ctx, "client", _recs_client_main, args.seed, args.profiles, args.anon_rate)
                children.append(client)
                client.recv("ready", 120)

                def latency(port: int, first: int, count: int) -> list[int]:
                    client.conn.send(("latency", port, first, count))
                    return client.recv("times", 300)

                def under_load(port: int) -> dict:
                    client.conn.send(("load", port, args.in_flight, args.load_seconds))
                    return client.recv("load", 300)

            def measure(kinds: tuple[str, ...], label: str) -> dict:
                for kind in kinds:  # warm-up (first item index build, channels)
                    latency(ports[kind], 0, 300)
                res = {k: {"lat": [], "load": [], "rps": [], "cut": 0} for k in kinds}
                before = {k: servers[k].ask("stats", "stats") for k in kinds}
                per = args.calls // args.rounds
                for r in range(args.rounds):
                    order = kinds if r % 2 == 0 else tuple(reversed(kinds))
                    for kind in order:
                        progress(f"{label}: round {r + 1}/{args.rounds} {kind}: 1 in flight")
                        res[kind]["lat"] += latency(ports[kind], 1000 + r * per, per)
                    for kind in order:
                        progress(f"{label}: round {r + 1}/{args.rounds} {kind}: {args.in_flight} in flight")
                        out = under_load(ports[kind])
                        res[kind]["load"] += out["times"]
                        res[kind]["cut"] += out.get("cut", 0)
                        res[kind]["rps"].append(len(out["times"]) / out["seconds"])
                after = {k: servers[k].ask("stats", "stats") for k in kinds}
                summary = {}
                for kind in kinds:
                    lat, load = summary_ms(res[kind]["lat"]), summary_ms(res[kind]["load"])
                    n = len(res[kind]["lat"]) + len(res[kind]["load"]) + 300
                    d = {k: after[kind][k] - before[kind][k] for k in after[kind]}
                    summary[kind] = {
                        "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"], "max_ms": lat["max_ms"],
                        "load_p50_ms": load["p50_ms"], "load_p99_ms": load["p99_ms"], "load_max_ms": load["max_ms"],
                        "rps": sum(res[kind]["rps"]) / len(res[kind]["rps"]),
                        "server_cpu_us_per_call": d["cpu_s"] / max(1, n - 300) * 1e6,
                        "handler_mean_us": d["handler_s"] / d["handler_n"] * 1e6 if d["handler_n"] else None,
                        "catch_up_mean_ms": d["catch_up_s"] / d["catch_up_n"] * 1e3 if d["catch_up_n"] else None,
                        "catch_ups": int(d["catch_up_n"]),
                        "cut_at_end": res[kind]["cut"],
                    }
                return summary

            phases["no_writes"] = measure(tuple(kinds), "no writes")
            if args.with_writes:
                writer.ask("go", "going")
                w = {}
                pulses = [kind for kind in kinds if kind.startswith("pulse")]
                for pulse in pulses:  # one pulse server catching up at a time
                    for other in pulses:
                        if other != pulse:
                            servers[other].ask("pause", "paused")
                    servers[pulse].ask("resume", "resumed")
                    w.update(measure((pulse.replace("pulse", "baseline", 1), pulse), f"writes, {pulse}"))
                phases["with_writes"] = w
                writes = writer.ask("stop", "stopped", 60)
            else:
                writes = writer.ask("stop", "stopped", 60)
            if args.client == "python":
                client.ask(("stop",), "stopped")
            for kind in kinds:
                servers[kind].ask("stop", "stopped")
        finally:
            for child in children:
                child.close()
    result = {"client": args.client, "items": args.items, "profiles": args.profiles, "k": 20,
              "in_flight": args.in_flight,
              "anon_rate": args.anon_rate, "calls": args.calls,
              "max_workers": args.max_workers[0] if len(args.max_workers) == 1 else args.max_workers,
              "record_bytes_mean": built["record_bytes_mean"], "phases": phases,
              "writer_profiles_per_s": writes["profiles"] / writes["seconds"] if writes["seconds"] else 0.0,
              "writer_items_per_s": writes["items"] / writes["seconds"] if writes["seconds"] else 0.0}
    for phase in phases.values():
        best_sync = max((s["rps"] for k, s in phase.items() if k.startswith("baseline-sync")), default=None)
        for kind, p in phase.items():
            b = phase.get(kind.replace("pulse", "baseline", 1)) if kind.startswith("pulse") else None
            if b:
                p["throughput_vs_baseline"] = p["rps"] / b["rps"]
                p["p99_ratio"] = p["p99_ms"] / b["p99_ms"]
                p["load_p99_ratio"] = p["load_p99_ms"] / b["load_p99_ms"]
                if "-sync" in kind and best_sync:
                    p["throughput_vs_best_sync_baseline"] = p["rps"] / best_sync
    progress("done", end="\n")
    print_recommendations_report(result)
    return result


def print_recommendations_report(r: dict) -> None:
    workers = r["max_workers"]
    pools = (f"{workers} threads" if isinstance(workers, int)
             else f"{', '.join(map(str, workers))} threads (-N: the pool size)")
    print(f"gRPC GetRecommendations: {r['items']:,} items, {r['profiles']:,} profiles (record mean "
          f"{r['record_bytes_mean']:.0f} B), k = {r['k']}, {r['anon_rate']:.0%} anonymous; "
          f"{'ghz (Go)' if r.get('client') == 'go' else 'Python'} client in its own process; "
          f"sync servers with {pools}")
    for name, phase in r["phases"].items():
        extra = (f" (writer ~{r['writer_profiles_per_s']:,.0f} profiles/s + {r['writer_items_per_s']:,.0f} items/s; "
                 "one pulse server catching up at a time)" if name == "with_writes" else "")
        print(f"-- {name.replace('_', ' ')}{extra}")
        n = r["in_flight"]
        print(f"  {'server':<17}{'p50 1':>8}{'p99 1':>8}{'max 1':>8}{'p50 ' + str(n):>8}"
              f"{'p99 ' + str(n):>8}{'req/s':>8}{'tput %':>8}{'best %':>8}{'cpu µs':>8}{'hdl µs':>8}{'c-up ms':>8}")
        for kind, s in phase.items():
            tput = f"{s['throughput_vs_baseline']:.0%}" if "throughput_vs_baseline" in s else "-"
            best = f"{s['throughput_vs_best_sync_baseline']:.0%}" if "throughput_vs_best_sync_baseline" in s else "-"
            hdl = f"{s['handler_mean_us']:.0f}" if s["handler_mean_us"] else "-"
            cu = f"{s['catch_up_mean_ms']:.2f}" if s["catch_up_mean_ms"] else "-"
            print(f"  {kind:<17}{s['p50_ms']:>8.3f}{s['p99_ms']:>8.3f}{s['max_ms']:>8.2f}{s['load_p50_ms']:>8.2f}"
                  f"{s['load_p99_ms']:>8.2f}{s['rps']:>8,.0f}{tput:>8}{best:>8}{s['server_cpu_us_per_call']:>8.0f}"
                  f"{hdl:>8}{cu:>8}")
    print("  (latencies in ms; tput % = pulse req/s over the trivial server of the same kind and pool size; best % = "
          "over the fastest trivial sync server of the run; cpu µs = server process CPU per call; hdl = handler "
          "time from the server's metrics)")


if __name__ == "__main__":
    main_recommendations()
