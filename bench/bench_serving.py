"""Latency of gRPC ``GetProfile`` served from RocksDB, beside a trivial gRPC server.

Both servers run in the same run, on the same machine, with the same thread pool size
and the same request/response message types; the baseline answers a constant small
response without touching any store. This machine is shared and noisy, so the figure
that matters is the ratio; baseline and pulse calls are interleaved in rounds (the
order alternates) so that noise hits both equally.

    python -m bench.bench_serving [--users 50000] [--events 300000] [--calls 5000]

Process layout (like production, where the flow and the server are separate
processes): a *writer* process builds the profiles from the synthetic clickstream
(parse_event + Profile.apply), writes them to a RocksStore and keeps the primary open,
updating ``--writes-per-ms`` profiles per millisecond while the calls run (unless
``--no-with-writes``); a *pulse* process serves a RocksReader (secondary, catching up
every ``--catch-up-ms``) through ``serving.server.create_server``; a *baseline*
process runs the trivial server; this process is the client (one synchronous stub per
server on an insecure loopback channel; each call timed with ``perf_counter_ns``).

Calls for unknown users (``--unknown-rate``, NOT_FOUND on pulse) are kept out of the
percentiles and reported separately.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import math
import multiprocessing as mp
import random
import sys
import tempfile
import threading
import time
import traceback
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc

METHOD = "/pulse.v1.Pulse/GetProfile"
SERVICE = "pulse.v1.Pulse"
SOURCE = "bench.events/0"  # the (topic/partition) recorded in the profiles' positions
EVENT_SPACING_MS = 10  # event-time gap between generated events while building


def progress(text: str, end: str = "\r") -> None:
    print(f"  {text:<60}", end=end, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- child processes


def _report_errors(target):
    """Run ``target(conn, ...)``; a failure is sent back as ("error", traceback)."""

    def run(conn, *args):
        try:
            target(conn, *args)
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            try:
                conn.send(("error", traceback.format_exc()))
            except Exception:
                pass
            raise

    return run


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _writer_main(conn, store_dir: str, users: int, events: int, batch: int, seed: int,
                 writes_per_ms: float) -> None:
    """Build profiles, write them, keep the primary open and update profiles until told to stop."""
    from operators.events import InvalidEvent, parse_event
    from operators.profile import Profile
    from operators.synthetic import ClickstreamGenerator
    from state.codec import encode_profile
    from state.store import RocksStore, encode_members

    t0 = time.perf_counter()
    gen = ClickstreamGenerator(seed=seed, users=users, invalid_rate=0.002)
    profiles: dict[str, Profile] = {}
    base_ms = int(time.time() * 1000) - events * EVENT_SPACING_MS
    invalid = 0

    def apply_next(now: int, offset: int) -> Profile | None:
        """The next generated record applied to its profile (None if it is invalid)."""
        _key, raw = gen.next_record(now)
        ev = parse_event(raw, now_ms=now)
        if isinstance(ev, InvalidEvent):
            return None
        p = profiles.get(ev.profile_key)
        if p is None:
            p = profiles[ev.profile_key] = Profile(ev.profile_key)
        p.apply(ev, SOURCE, offset)
        return p

    for i in range(events):
        now = base_ms + i * EVENT_SPACING_MS
        if apply_next(now, i) is None:
            invalid += 1
        if i % 50_000 == 0:
            progress(f"writer: applying events {i}/{events}")
    build_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    path = Path(store_dir)
    store = RocksStore(path)
    record_bytes = 0
    chunk: list[tuple[str, bytes]] = []

    def flush(chunk):
        # Each profile with its identity records (its own alias), as the flow writes them.
        store.apply({pid: raw for pid, raw in chunk}, {pid: pid for pid, _ in chunk},
                    {pid: encode_members([pid]) for pid, _ in chunk})

    for n, p in enumerate(profiles.values(), 1):
        raw = encode_profile(p)
        record_bytes += len(raw)
        chunk.append((p.profile_id, raw))
        if len(chunk) >= batch:
            flush(chunk)
            chunk = []
        if n % 20_000 == 0:
            progress(f"writer: writing profiles {n}/{len(profiles)}")
    flush(chunk)
    # Reopen: RocksDB replays the WAL into an SST on open, so the reader sees the bulk of
    # the data in SST files (as a long-running store would) rather than in a WAL/memtable.
    store.close()
    store = RocksStore(path)
    write_s = time.perf_counter() - t1
    store_bytes = _dir_bytes(path)
    sst_files = sum(1 for f in path.glob("*.sst"))

    conn.send(("ready", {
        "ids": list(profiles),
        "invalid_events": invalid,
        "build_s": build_s,
        "write_s": write_s,
        "store_bytes": store_bytes,
        "sst_files": sst_files,
        "record_bytes_mean": record_bytes / max(1, len(profiles)),
    }))

    # Background updates: a few profiles per ms, one WriteBatch per tick, until "stop".
    done = 0
    offset = events
    start = time.perf_counter()
    try:
        while not conn.poll(0.001):
            if writes_per_ms <= 0:
                continue
            due = int((time.perf_counter() - start) * 1000 * writes_per_ms) - done
            if due <= 0:
                continue
            changed: dict[str, Profile] = {}
            now = int(time.time() * 1000)
            for _ in range(min(due, 200)):
                offset += 1
                done += 1
                p = apply_next(now, offset)
                if p is not None:
                    changed[p.profile_id] = p
            store.apply({pid: encode_profile(p) for pid, p in changed.items()}, {pid: pid for pid in changed},
                        {pid: encode_members([pid]) for pid in changed})
        elapsed = time.perf_counter() - start
        conn.recv()
        conn.send(("stopped", {"writes": done, "seconds": elapsed}))
    finally:
        store.close()


def _stats_pulse() -> dict:
    from prometheus_client import REGISTRY

    def v(name: str, labels: dict | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    ok = {"method": "GetProfile", "code": "OK"}
    nf = {"method": "GetProfile", "code": "NOT_FOUND"}
    return {
        "handler_s": v("pulse_rpc_latency_seconds_sum", ok) + v("pulse_rpc_latency_seconds_sum", nf),
        "handler_n": v("pulse_rpc_latency_seconds_count", ok) + v("pulse_rpc_latency_seconds_count", nf),
        "catch_up_s": v("pulse_store_catch_up_seconds_sum"),
        "catch_up_n": v("pulse_store_catch_up_seconds_count"),
    }


def _serve_commands(conn, server, stats) -> None:
    """Answer "stats" and stop on "stop"."""
    while True:
        cmd = conn.recv()
        if cmd == "stats":
            conn.send(("stats", stats()))
        elif cmd == "stop":
            server.stop(0).wait()
            conn.send(("stopped", None))
            return


def _pulse_main(conn, store_dir: str, secondary_dir: str, max_workers: int, catch_up_ms: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    from serving.server import create_server
    from state.store import RocksReader

    reader = RocksReader(store_dir, secondary_dir)
    try:
        server, port = create_server("127.0.0.1:0", reader, max_workers=max_workers,
                                     catch_up_interval_ms=catch_up_ms)
        server.start()
        conn.send(("port", port))
        _serve_commands(conn, server, _stats_pulse)
    finally:
        reader.close()


def baseline_response() -> pulse_pb2.GetProfileResponse:
    """The constant answer of the baseline server: a small profile, built once."""
    response = pulse_pb2.GetProfileResponse()
    response.profile.profile_id = "u000001"
    response.profile.event_counts["page_view"] = 3
    return response


def _baseline_main(conn, max_workers: int) -> None:
    response = baseline_response()

    def get_profile(request, context):
        return response

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "GetProfile": grpc.unary_unary_rpc_method_handler(
            get_profile,
            request_deserializer=pulse_pb2.GetProfileRequest.FromString,
            response_serializer=pulse_pb2.GetProfileResponse.SerializeToString,
        ),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="baseline-grpc"),
                         options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    conn.send(("port", port))
    _serve_commands(conn, server, lambda: {})


# --------------------------------------------------------------------------- parent side


class Child:
    """A spawned child process and our end of its pipe."""

    def __init__(self, ctx, name: str, target, *args) -> None:
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_child_entry,
                                args=(target.__module__, target.__name__, child_conn, *args), name=name, daemon=True)
        self.proc.start()
        child_conn.close()

    def recv(self, expect: str, timeout: float = 300.0) -> Any:
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.2):
            if not self.proc.is_alive():
                raise RuntimeError(f"{self.name} process exited with code {self.proc.exitcode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} process did not answer {expect!r} in {timeout:.0f} s")
        kind, value = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"{self.name} process failed:\n{value}")
        if kind != expect:
            raise RuntimeError(f"{self.name} process sent {kind!r}, expected {expect!r}")
        return value

    def ask(self, cmd: str, expect: str, timeout: float = 30.0) -> Any:
        self.conn.send(cmd)
        return self.recv(expect, timeout)

    def close(self) -> None:
        self.proc.join(timeout=10)
        if self.proc.is_alive():  # only ever our own child, by its handle
            self.proc.terminate()
            self.proc.join(timeout=5)
        self.conn.close()


def _child_entry(module: str, name: str, conn, *args) -> None:
    """A child's body: ``module.name(conn, *args)`` (spawned: imported by name)."""
    _report_errors(getattr(importlib.import_module(module), name))(conn, *args)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def summary_ms(ns: list[int]) -> dict[str, float]:
    s = sorted(ns)
    return {
        "n": len(s),
        "p50_ms": percentile(s, 0.50) / 1e6,
        "p90_ms": percentile(s, 0.90) / 1e6,
        "p99_ms": percentile(s, 0.99) / 1e6,
        "max_ms": (s[-1] / 1e6) if s else float("nan"),
    }


def timed_calls(stub, requests: list) -> tuple[list[int], list[grpc.StatusCode], int]:
    """Call ``GetProfile`` once per request, in turn; (ns per call, status per call, response bytes)."""
    call = stub.GetProfile
    ok = grpc.StatusCode.OK
    times: list[int] = []
    codes: list[grpc.StatusCode] = []
    size = 0
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no client-side collector pauses inside the timed loop (servers are other processes)
    try:
        for req in requests:
            t0 = clock()
            try:
                resp = call(req, timeout=10)
                dt = clock() - t0
                code = ok
                size += resp.ByteSize()
            except grpc.RpcError as exc:
                dt = clock() - t0
                code = exc.code()
                if code is not grpc.StatusCode.NOT_FOUND:
                    raise
            times.append(dt)
            codes.append(code)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, codes, size


def throughput(stub, requests: list, threads: int, seconds: float) -> float:
    """Requests/s that ``threads`` client threads, each with one call in flight, complete."""
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    errors: list[BaseException] = []
    call = stub.GetProfile

    def work(k: int) -> None:
        mine = requests[k::threads]
        n = 0
        barrier.wait()
        try:
            while not stop.is_set():
                try:
                    call(mine[n % len(mine)], timeout=10)
                except grpc.RpcError as exc:
                    if exc.code() is not grpc.StatusCode.NOT_FOUND:
                        raise
                n += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        counts[k] = n

    pool = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=50_000, help="synthetic users (default 50000)")
    ap.add_argument("--events", type=int, default=300_000, help="events applied to build the profiles")
    ap.add_argument("--calls", type=int, default=5_000, help="timed calls per server (default 5000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (calls are split between them)")
    ap.add_argument("--warmup", type=int, default=500, help="untimed calls per server first")
    ap.add_argument("--unknown-rate", type=float, default=0.05, help="share of calls for unknown users")
    ap.add_argument("--max-workers", type=int, default=8, help="gRPC thread pool size of both servers")
    ap.add_argument("--catch-up-ms", type=int, default=20, help="pulse reader catch-up interval")
    ap.add_argument("--with-writes", action=argparse.BooleanOptionalAction, default=True,
                    help="keep the writer updating profiles during the calls (default on)")
    ap.add_argument("--writes-per-ms", type=float, default=2.0, help="profile updates per ms by the writer")
    ap.add_argument("--batch", type=int, default=1_000, help="profiles per WriteBatch while building")
    ap.add_argument("--tput-threads", type=int, default=4, help="client threads for throughput (0: skip)")
    ap.add_argument("--tput-seconds", type=float, default=1.0, help="seconds per throughput round")
    ap.add_argument("--tput-rounds", type=int, default=3, help="interleaved throughput rounds")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    if args.calls < args.rounds or args.rounds < 1:
        ap.error("--calls must be at least --rounds, and --rounds at least 1")

    ctx = mp.get_context("spawn")  # never fork a process that has gRPC threads
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="pulse-bench-serving-") as tmp:
        store_dir = str(Path(tmp) / "store")
        try:
            progress(f"writer: building profiles from {args.events} events over {args.users} users")
            writer = Child(ctx, "writer", _writer_main, store_dir, args.users, args.events, args.batch,
                           args.seed, args.writes_per_ms if args.with_writes else 0.0)
            children.append(writer)
            built = writer.recv("ready")
            ids: list[str] = built.pop("ids")
            progress(f"built {len(ids)} profiles in {built['build_s']:.1f} s, "
                     f"wrote them in {built['write_s']:.1f} s", end="\n")

            pulse = Child(ctx, "pulse", _pulse_main, store_dir, str(Path(tmp) / "secondary"),
                          args.max_workers, args.catch_up_ms)
            children.append(pulse)
            baseline = Child(ctx, "baseline", _baseline_main, args.max_workers)
            children.append(baseline)
            ports = {"pulse": pulse.recv("port", 60), "baseline": baseline.recv("port", 60)}

            channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
            for ch in channels.values():
                grpc.channel_ready_future(ch).result(timeout=30)
            stubs = {name: pulse_pb2_grpc.PulseStub(ch) for name, ch in channels.items()}

            rng = random.Random(args.seed)

            def request_for(i: int) -> tuple[pulse_pb2.GetProfileRequest, bool]:
                if rng.random() < args.unknown_rate:
                    return pulse_pb2.GetProfileRequest(user_id=f"nobody-{i:07d}"), False
                return pulse_pb2.GetProfileRequest(user_id=rng.choice(ids)), True

            warm = [request_for(i)[0] for i in range(args.warmup)]
            plan = [request_for(i) for i in range(args.calls)]
            requests = [r for r, _ in plan]
            known = [k for _, k in plan]

            progress(f"warm-up: {args.warmup} calls each")
            for name in ("baseline", "pulse"):
                timed_calls(stubs[name], warm)
            before = pulse.ask("stats", "stats")

            times: dict[str, list[int]] = {"baseline": [], "pulse": []}
            codes: dict[str, list[grpc.StatusCode]] = {"baseline": [], "pulse": []}
            sizes: dict[str, int] = {"baseline": 0, "pulse": 0}
            bounds = [round(r * args.calls / args.rounds) for r in range(args.rounds + 1)]
            t_calls = time.perf_counter()
            for r in range(args.rounds):
                chunk = requests[bounds[r]:bounds[r + 1]]
                order = ("baseline", "pulse") if r % 2 == 0 else ("pulse", "baseline")
                for name in order:
                    progress(f"round {r + 1}/{args.rounds}: {name}, {len(chunk)} calls")
                    t, c, s = timed_calls(stubs[name], chunk)
                    times[name] += t
                    codes[name] += c
                    sizes[name] += s
            calls_s = time.perf_counter() - t_calls
            after = pulse.ask("stats", "stats")

            rps = {"baseline": [], "pulse": []}
            if args.tput_threads > 0:
                for r in range(args.tput_rounds):
                    order = ("baseline", "pulse") if r % 2 == 0 else ("pulse", "baseline")
                    for name in order:
                        progress(f"throughput round {r + 1}/{args.tput_rounds}: {name}, {args.tput_threads} threads")
                        rps[name].append(throughput(stubs[name], requests, args.tput_threads, args.tput_seconds))

            for ch in channels.values():
                ch.close()
            for child in (pulse, baseline):
                child.ask("stop", "stopped")
            writes = writer.ask("stop", "stopped", timeout=60)
        finally:
            for child in children:
                child.close()

    # Unexpected outcomes: pulse must answer every known user and NOT_FOUND every unknown one.
    for i, (is_known, code) in enumerate(zip(known, codes["pulse"])):
        expected = grpc.StatusCode.OK if is_known else grpc.StatusCode.NOT_FOUND
        if code is not expected:
            raise RuntimeError(f"call {i} ({requests[i].user_id!r}) got {code}, expected {expected}")

    def pick(name: str, want_known: bool) -> list[int]:
        return [t for t, k in zip(times[name], known) if k is want_known]

    base = summary_ms(pick("baseline", True))
    puls = summary_ms(pick("pulse", True))
    n_unknown = len(known) - sum(known)
    nf_pulse = summary_ms(pick("pulse", False))
    nf_base = summary_ms(pick("baseline", False))
    handler_n = after["handler_n"] - before["handler_n"]
    catch_n = after["catch_up_n"] - before["catch_up_n"]
    n_known = sum(known)
    result: dict[str, Any] = {
        "users": args.users,
        "events": args.events,
        "profiles": len(ids),
        "invalid_events": built["invalid_events"],
        "calls": args.calls,
        "rounds": args.rounds,
        "known_calls": n_known,
        "unknown_calls": n_unknown,
        "store_bytes": built["store_bytes"],
        "store_bytes_per_profile": built["store_bytes"] / len(ids),
        "record_bytes_mean": built["record_bytes_mean"],
        "baseline_response_bytes": baseline_response().ByteSize(),
        "pulse_response_bytes_mean": sizes["pulse"] / max(1, n_known),
        **{f"baseline_{k}": v for k, v in base.items() if k != "n"},
        **{f"pulse_{k}": v for k, v in puls.items() if k != "n"},
        "p50_ratio": puls["p50_ms"] / base["p50_ms"],
        "p99_ratio": puls["p99_ms"] / base["p99_ms"],
        "server_extra_us": (puls["p50_ms"] - base["p50_ms"]) * 1000,
        "pulse_not_found_p50_ms": nf_pulse["p50_ms"],
        "baseline_same_calls_p50_ms": nf_base["p50_ms"],
        "pulse_handler_mean_us": (after["handler_s"] - before["handler_s"]) / handler_n * 1e6 if handler_n else None,
        "catch_up_mean_ms": (after["catch_up_s"] - before["catch_up_s"]) / catch_n * 1e3 if catch_n else None,
        "catch_ups": int(catch_n),
        "calls_seconds": calls_s,
        "writer_updates_per_s": writes["writes"] / writes["seconds"] if writes["seconds"] else 0.0,
    }
    if args.tput_threads > 0:
        result["tput_threads"] = args.tput_threads
        result["baseline_rps"] = sum(rps["baseline"]) / len(rps["baseline"])
        result["pulse_rps"] = sum(rps["pulse"]) / len(rps["pulse"])
        result["throughput_ratio"] = result["baseline_rps"] / result["pulse_rps"]
    progress("done", end="\n")
    print_report(result, args)
    return result


def print_report(r: dict, args: argparse.Namespace) -> None:
    writes = (f"writer updating ~{r['writer_updates_per_s']:,.0f} profiles/s" if args.with_writes
              else "no writes during the calls")
    print(f"gRPC GetProfile latency, 1 call in flight ({r['profiles']:,} profiles from {r['events']:,} events; "
          f"{r['known_calls']:,} known-user calls per server in {r['rounds']} interleaved rounds; {writes})")
    print(f"  {'':<10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name in ("baseline", "pulse"):
        print(f"  {name:<10}" + "".join(f"{r[f'{name}_{k}_ms']:>9.3f}" for k in ("p50", "p90", "p99", "max")))
    print(f"  ratio p50 pulse / baseline                 {r['p50_ratio']:>9.2f}")
    print(f"  ratio p99 pulse / baseline                 {r['p99_ratio']:>9.2f}")
    print(f"  server-side extra per request (p50 diff)   {r['server_extra_us']:>9.0f} µs")
    if r["pulse_handler_mean_us"] is not None:
        print(f"  pulse handler time, mean (server metrics)  {r['pulse_handler_mean_us']:>9.0f} µs")
    print(f"  unknown users ({r['unknown_calls']} calls): pulse NOT_FOUND p50 {r['pulse_not_found_p50_ms']:.3f} ms, "
          f"baseline same calls p50 {r['baseline_same_calls_p50_ms']:.3f} ms")
    print(f"  response size: baseline {r['baseline_response_bytes']} B, pulse mean "
          f"{r['pulse_response_bytes_mean']:.0f} B")
    if "baseline_rps" in r:
        print(f"throughput, {r['tput_threads']} client threads (one channel, {args.tput_rounds} interleaved "
              f"rounds of {args.tput_seconds:g} s)")
        print(f"  baseline  {r['baseline_rps']:>10,.0f} requests/s")
        print(f"  pulse     {r['pulse_rps']:>10,.0f} requests/s")
        print(f"  ratio     baseline / pulse {r['throughput_ratio']:>8.2f}")
    catch = (f"; catch-up mean {r['catch_up_mean_ms']:.2f} ms x {r['catch_ups']}"
             if r["catch_up_mean_ms"] is not None else "")
    print(f"store: {r['store_bytes_per_profile']:,.0f} B/profile on disk ({r['store_bytes'] / 1e6:.1f} MB; "
          f"encoded record mean {r['record_bytes_mean']:.0f} B){catch}")


# =========================================================================== GetRecommendations
#
#     python -m bench.bench_serving --recommendations [--items 10000] [--profiles 100000] [--max-workers 2,4,8]
#
# The conditions: 10,000 items and 100,000 stored profiles written straight into
# a RocksStore, k = 20, the client in its own process (a spawned child: a sync stub for
# 1 call in flight, a grpc.aio channel with N tasks for N in flight). Servers, each in
# its own process and all up in the same run: pulse on the sync thread-pool server
# (serving.server.create_server), pulse on grpc.aio (serving.aio_server), and a trivial
# handler of each kind answering a constant 20-item GetRecommendationsResponse. Phase 1
# without writes (every server interleaved, round by round); phase 2 with the writer
# updating profiles and items, one pulse server at a time (the other's catch-up paused,
# so it does not steal a core) beside the trivial servers.


if __name__ == "__main__":
    if "--recommendations" in sys.argv[1:]:
        from bench.bench_recommendations import main_recommendations
        main_recommendations()
    else:
        main()
