"""The ``pulse`` command line.

    pulse demo                  the flow on the built-in clickstream + the gRPC server, one process
    pulse run                   the flow: Kafka events topic -> profiles in RocksDB (+ DLQ)
    pulse serve                 the gRPC server over the flow's RocksDB (a secondary reader)
    pulse produce-sample        write the synthetic clickstream to the Kafka events topic
    pulse get-profile USER      call GetProfile on a running server and print the answer
    pulse erase USER            ask the flow to erase a user's profile and aliases (via Kafka)
    pulse export USER           print everything stored about a user as JSON
    pulse config                print the effective configuration

Every command takes ``--config FILE`` (TOML); ``PULSE_*`` environment variables override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

from pulse.config import ConfigError, PulseConfig, load_config, with_cluster

log = logging.getLogger("pulse")


def _setup_logging(level: str, fmt: str) -> None:
    from pulse.logs import setup_logging

    setup_logging(level, fmt)
    if level != "DEBUG":
        # Bytewax reports a stop by signal with a Rust backtrace when RUST_BACKTRACE is
        # set; a signal is a normal way to stop, so keep the log readable.
        os.environ["RUST_BACKTRACE"] = "0"


def _start_metrics(host: str, port: int) -> int:
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host)
    return server.server_address[1]


def cmd_run(cfg: PulseConfig, args: argparse.Namespace) -> int:
    from flows.runtime import (changelog_publisher, ensure_topics, flow_settings, kafka_flow, open_writer_store,
                               processor_state, run_flow, trigger_publisher)
    from flows.store_stats import start_store_stats

    cfg = with_cluster(cfg, args.addresses, args.process_id)
    settings = flow_settings(cfg)  # fail before touching Kafka or the store if a setting is missing
    ensure_topics(cfg)
    if cfg.processor.process_id != 0:
        return _run_reader(cfg, args, settings)
    store = open_writer_store(cfg)
    state = processor_state(store, settings)
    publisher = trigger_publisher(cfg, store, state)
    changelog = changelog_publisher(cfg, store, state)
    port = _start_metrics(cfg.processor.metrics_host, cfg.processor.metrics_port)
    stats = start_store_stats(cfg.store_dir, 10.0, estimate_count=store.estimate_count, health=store.health)
    log.info("processing %s from %s into %s; metrics on http://%s:%d/metrics", cfg.kafka.events_topic,
             cfg.kafka.bootstrap_servers, cfg.store_dir, cfg.processor.metrics_host, port)
    try:
        run_flow(kafka_flow(cfg, store, tail=not args.exit_at_end, state=state), cfg)
    finally:
        publisher.stop()
        if changelog is not None:
            changelog.stop()
        stats.stop()
        store.close()
        log.info("stopped: %s", _summary())
    return 0


def _run_reader(cfg: PulseConfig, args: argparse.Namespace, settings: dict) -> int:
    """A process other than 0 of a cluster: it reads its share of the partitions and
    hands the records to process 0 (``flows.cluster``); it opens no store."""
    from flows.cluster import Elsewhere
    from flows.runtime import kafka_flow, run_flow

    p = cfg.processor
    port = _start_metrics(p.metrics_host, p.metrics_port + p.process_id if p.metrics_port else 0)
    log.info("process %d of %s: reading %s for process 0; metrics on http://%s:%d/metrics", p.process_id,
             p.addresses, cfg.kafka.events_topic, p.metrics_host, port)
    state = Elsewhere(p.process_id, settings["experiments"])
    run_flow(kafka_flow(cfg, None, tail=not args.exit_at_end, state=state), cfg)
    from flows import metrics as m

    moved = sum(s.value for s in m.RECORDS_MOVED.collect()[0].samples if s.name.endswith("_total"))
    log.info("stopped: %.0f records handed to process 0", moved)
    return 0


def cmd_replay(cfg: PulseConfig, args: argparse.Namespace) -> int:
    """Rebuild state from history at full speed: JSONL event files, or the events topic
    from the start to its end (``--topic``)."""
    from flows.outbox import JsonlOutboxPublisher
    from flows.runtime import (ensure_topics, flow_settings, kafka_flow, open_writer_store, processor_state,
                               replay_flow, run_bounded, run_flow, single_process, trigger_publisher)

    if bool(args.files) == bool(args.topic):
        print("pulse: replay needs JSONL files or --topic (not both)", file=sys.stderr)
        return 2
    for path in args.files:
        if not Path(path).is_file():
            print(f"pulse: no such file: {path}", file=sys.stderr)
            return 2
    cfg = single_process(cfg)
    settings = flow_settings(cfg)
    if args.topic or not args.triggers_file:
        ensure_topics(cfg)
    store = open_writer_store(cfg)
    started = time.monotonic()
    try:
        state = processor_state(store, settings)
        if args.triggers_file:
            publisher = JsonlOutboxPublisher(store, Path(args.triggers_file))
            state.listeners.append(publisher.wake)
            publisher.start()
        else:
            publisher = trigger_publisher(cfg, store, state)
        try:
            if args.topic:
                finished = run_flow(kafka_flow(cfg, store, tail=False, state=state), cfg)
            else:
                finished = run_bounded(replay_flow(cfg, store, args.files, state=state,
                                                   batch_size=args.batch_size), cfg)
        finally:
            publisher.stop()
    finally:
        store.close()
    took = time.monotonic() - started
    print(f"replay {'finished' if finished else 'stopped'} in {took:.1f} s: {_summary()}", file=sys.stderr)
    return 0 if finished else 130


def _read_store(cfg: PulseConfig, name: str, read):
    """``read(reader)`` over a secondary reader of the store opened for this one read."""
    import shutil

    from state.store import RocksReader

    secondary = Path(cfg.state.dir) / "readers" / f"{name}-{os.getpid()}"
    reader = RocksReader(cfg.store_dir, secondary)
    try:
        return read(reader)
    finally:
        reader.close()
        shutil.rmtree(secondary, ignore_errors=True)


def _summary() -> str:
    from flows import metrics as m

    counts = {name: child._value.get() for name, child in (*m.OUTCOME.items(), ("invalid", m.INVALID))}
    return " ".join(f"{name}={n:.0f}" for name, n in counts.items())


def cmd_serve(cfg: PulseConfig, args: argparse.Namespace) -> int:
    from serving.server import serve

    serve(cfg, from_changelog=args.from_changelog)
    return 0


def cmd_demo(cfg: PulseConfig, args: argparse.Namespace) -> int:
    from flows.runtime import (demo_flow, demo_trigger_publisher, example_or, flow_settings, open_writer_store,
                               processor_state, run_flow)
    from serving.decisions import JsonlExposureSink
    from flows.store_stats import start_store_stats
    from serving.server import create_server
    from state.store import RocksReader

    settings = flow_settings(cfg, demo=True)
    store = open_writer_store(cfg)
    state = processor_state(store, settings)
    publisher = demo_trigger_publisher(cfg, store, state)
    exposures = JsonlExposureSink(Path(cfg.state.dir) / "exposures.jsonl")
    reader = RocksReader(cfg.store_dir, Path(cfg.state.dir) / "readers" / f"demo-{os.getpid()}")
    server, grpc_port = create_server(cfg.serving.grpc_address, reader, kind=cfg.serving.server,
                                      max_workers=cfg.serving.max_workers,
                                      catch_up_interval_ms=cfg.serving.catch_up_interval_ms,
                                      default_consent=cfg.privacy.default_consent == "opt-out",
                                      max_k=cfg.serving.max_k, max_per_category=cfg.serving.max_per_category,
                                      items_refresh_ms=cfg.serving.items_refresh_ms,
                                      api_keys_file=cfg.serving.api_keys_file, tls_cert_file=cfg.serving.tls_cert_file,
                                      tls_key_file=cfg.serving.tls_key_file,
                                      tls_client_ca_file=cfg.serving.tls_client_ca_file,
                                      max_request_bytes=cfg.serving.max_request_bytes,
                                      content_file=example_or(cfg.content.path, "content.yaml", True),
                                      experiments_file=example_or(cfg.experiments.path, "experiments.yaml", True),
                                      segments_file=example_or(cfg.segments.path, "segments.yaml", True),
                                      exposures=exposures)
    server.start()
    metrics_port = _start_metrics(cfg.processor.metrics_host, cfg.processor.metrics_port)
    stats = start_store_stats(cfg.store_dir, 10.0, estimate_count=store.estimate_count, health=store.health)
    host = cfg.serving.grpc_address.rsplit(":", 1)[0]
    address = f"{host}:{grpc_port}"
    print(
        f"Pulse demo: {cfg.generator.events_per_second:g} synthetic events/s from {cfg.generator.users} users\n"
        f"  state (RocksDB):  {cfg.store_dir}\n"
        f"  dead letters:     {Path(cfg.state.dir) / 'dead-letters.jsonl'}\n"
        f"  segment triggers: {Path(cfg.state.dir) / 'triggers.jsonl'}   ({len(settings['segments'].segments)} segments)\n"
        f"  exposures:        {Path(cfg.state.dir) / 'exposures.jsonl'}   (experiments on Decide and recommendations)\n"
        f"  gRPC:             {address}   (service pulse.v1.Pulse, health, reflection)\n"
        f"  metrics:          http://{cfg.processor.metrics_host}:{metrics_port}/metrics\n"
        f"  try:              pulse get-profile u000000 --address {address}\n"
        f"                    grpcurl -plaintext -d '{{\"user_id\":\"u000000\"}}' {address} pulse.v1.Pulse/GetProfile\n"
        f"                    grpcurl -plaintext -d '{{\"user_id\":\"u000000\",\"slots\":[\"hero\",\"offer\"]}}' "
        f"{address} pulse.v1.Pulse/Decide\n"
        f"Ctrl-C stops.",
        flush=True,
    )
    try:
        run_flow(demo_flow(cfg, store, limit=args.limit, state=state), cfg)
    finally:
        publisher.stop()
        server.stop(grace=1).wait()
        stats.stop()
        reader.close()
        store.close()
    return 0


def cmd_produce_sample(cfg: PulseConfig, args: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    from flows.runtime import ensure_topics
    from operators.synthetic import ClickstreamGenerator

    ensure_topics(cfg)
    g = cfg.generator
    gen = ClickstreamGenerator(seed=g.seed, users=g.users, invalid_rate=g.invalid_rate)
    producer = Producer({"bootstrap.servers": cfg.kafka.bootstrap_servers, "enable.idempotence": "true",
                         "linger.ms": "20", **dict(cfg.kafka.producer)})
    rate = args.rate if args.rate is not None else g.events_per_second
    start = time.monotonic()
    sent = 0
    last_report = start
    while args.count is None or sent < args.count:
        due = int((time.monotonic() - start) * rate) if rate > 0 else sent + 1000
        while sent < due and (args.count is None or sent < args.count):
            key, value = gen.next_record(int(time.time() * 1000))
            try:
                producer.produce(cfg.kafka.events_topic, value=value, key=key)
            except BufferError:
                producer.poll(0.1)
                continue
            sent += 1
        producer.poll(0)
        now = time.monotonic()
        if now - last_report >= 5:
            print(f"produced {sent} events ({sent / (now - start):.0f}/s)", file=sys.stderr, flush=True)
            last_report = now
        if sent >= due:
            time.sleep(0.005)
    left = producer.flush(30)
    if left:
        print(f"error: {left} events not acknowledged by {cfg.kafka.bootstrap_servers}", file=sys.stderr)
        return 1
    print(f"produced {sent} events to {cfg.kafka.events_topic} on {cfg.kafka.bootstrap_servers}")
    return 0


def cmd_get_profile(cfg: PulseConfig, args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc

    address = args.address or cfg.serving.grpc_address
    with grpc.insecure_channel(address) as channel:
        stub = pulse_pb2_grpc.PulseStub(channel)
        try:
            metadata = [("x-api-key", args.api_key)] if args.api_key else None
            reply = stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=args.user_id), timeout=args.timeout,
                                    metadata=metadata)
        except grpc.RpcError as err:
            print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
            return 2
    print(json.dumps(MessageToDict(reply), indent=2))
    return 0


def cmd_erase(cfg: PulseConfig, args: argparse.Namespace) -> int:
    import shutil

    from flows.runtime import ensure_topics
    from serving.auth import new_request_id
    from serving.control import ControlPublisher
    from serving.errors import ControlUnavailable, InvalidArgument
    from serving.lookup import check_request_id, check_user_id, typed_alias
    from state.export import resolve
    from state.store import RocksReader, StoreNotReady

    try:
        check_user_id(args.user, "USER")
        if args.request_id is not None:
            check_request_id(args.request_id, "--request-id")
    except InvalidArgument as exc:
        print(f"pulse: {exc.message}", file=sys.stderr)
        return 2
    if args.wait is not None and args.wait < 0:
        print(f"pulse: --wait must be >= 0 seconds, got {args.wait:g}", file=sys.stderr)
        return 2
    k = cfg.kafka
    alias = typed_alias(args.user)
    request_id = args.request_id or new_request_id()
    ensure_topics(cfg)
    publisher = ControlPublisher(k.bootstrap_servers, k.control_topic, k.producer)
    try:
        publisher.erase(alias, request_id)
    except ControlUnavailable as exc:
        print(f"pulse: {exc.message}", file=sys.stderr)
        return 1
    finally:
        publisher.close()
    print(f"erase request {request_id} for {alias} published to {k.control_topic}", flush=True)
    if args.wait is None:
        return 0
    secondary = Path(cfg.state.dir) / "readers" / f"erase-{os.getpid()}"
    reader = RocksReader(cfg.store_dir, secondary)
    deadline = time.monotonic() + args.wait
    try:
        while True:
            reader.catch_up()
            try:
                if resolve(reader, args.user) is None:
                    print(f"erased: {alias} is no longer in {cfg.store_dir}")
                    return 0
            except StoreNotReady:
                pass  # no store yet: `pulse run` has not started here
            if time.monotonic() >= deadline:
                print(f"pulse: {alias} is still in {cfg.store_dir} after {args.wait:g}s (is `pulse run` running?); "
                      f"request {request_id} stays on {k.control_topic} and runs when the flow reads it",
                      file=sys.stderr)
                return 1
            time.sleep(0.1)
    finally:
        reader.close()
        shutil.rmtree(secondary, ignore_errors=True)


def cmd_export(cfg: PulseConfig, args: argparse.Namespace) -> int:
    from serving.errors import InvalidArgument
    from serving.lookup import check_user_id
    from state.export import export_user

    try:
        check_user_id(args.user, "USER")
    except InvalidArgument as exc:
        print(f"pulse: {exc.message}", file=sys.stderr)
        return 2
    document = _read_store(cfg, "export", lambda reader: export_user(reader, args.user))
    if document is None:
        print(f"pulse: nothing stored for {args.user!r} in {cfg.store_dir}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0


def cmd_segments_check(cfg: PulseConfig, args: argparse.Namespace) -> int:
    from operators.segments import load_segments

    segset = load_segments(args.file)  # a SegmentError is reported by main()
    for seg in segset.segments:
        deps = f"  (uses {', '.join(seg.depends_on)})" if seg.depends_on else ""
        print(f"{seg.id:<32} v{seg.version}{deps}")
    print(f"{args.file}: {len(segset.segments)} segments OK")
    return 0


def cmd_segments_explain(cfg: PulseConfig, args: argparse.Namespace) -> int:
    """Why a stored profile is (not) in a segment: each term of the condition, its value."""
    from flows.runtime import segment_set
    from serving.lookup import find_profile
    from state.store import StoreNotReady

    segset = segment_set(cfg, demo=args.demo)
    if args.segment not in segset.by_id:
        print(f"pulse: no segment {args.segment!r} in {cfg.segments.path or 'the example segments'}", file=sys.stderr)
        return 2
    try:
        found = _read_store(cfg, "explain", lambda reader: find_profile(reader, args.user))
    except StoreNotReady as exc:
        print(f"pulse: {exc}", file=sys.stderr)
        return 2
    profile = None if found is None else found[1]
    if profile is None:
        print(f"pulse: nothing stored for {args.user!r} in {cfg.store_dir}", file=sys.stderr)
        return 2
    at = args.at if args.at is not None else max(profile.clock_ms, profile.last_seen_ms)
    seg = segset.by_id[args.segment]
    print(f"segment {seg.id} (v{seg.version}): {seg.description}")
    print(f"  condition: {seg.condition}")
    print(f"  profile {profile.profile_id} at event time {at} (segment clock {profile.clock_ms})")
    for term, value in segset.explain(seg.id, profile, at):
        print(f"  {term:<60} = {value!r}")
    held = profile.segments.get(seg.id)
    print(f"  stored membership: {'member since ' + str(held[0]) if held else 'not a member'}")
    return 0


def cmd_experiments_report(cfg: PulseConfig, args: argparse.Namespace) -> int:
    """Per-variant results with the statistics, and a PNG of the uplift over time."""
    from flows.runtime import experiment_set
    from operators.experiment_report import analyze, render
    from pulse.plot import LineChart
    from state.experiment_totals import daily_totals
    from state.store import StoreNotReady

    exp = experiment_set(cfg, demo=args.demo).by_id.get(args.experiment)
    if exp is None:
        print(f"pulse: no experiment {args.experiment!r} in {cfg.experiments.path or 'the example experiments'}",
              file=sys.stderr)
        return 2
    try:
        daily = _read_store(cfg, "report", lambda reader: daily_totals(reader, exp.id))
    except StoreNotReady as exc:
        print(f"pulse: {exc}", file=sys.stderr)
        return 2
    report = analyze(exp, daily, alpha=args.alpha)
    print(render(report))
    primary = [c for c in report.comparisons if c.metric == exp.metric and c.history]
    if args.png and primary:
        chart = LineChart(900, 420, f"{exp.id}: {exp.metric} difference vs control, 95% confidence sequence",
                          "DAY OF EXPERIMENT")
        colors = [(0, 70, 200), (200, 80, 0), (0, 150, 60)]
        first = min(day for c in primary for day, *_ in c.history)
        for i, comp in enumerate(primary):
            xs = [day - first + 1 for day, *_ in comp.history]
            lows = [max(low, -1e9) for _d, _diff, low, _high in comp.history]
            highs = [min(high, 1e9) for _d, _diff, _low, high in comp.history]
            shade = tuple(min(255, c + 150) for c in colors[i % 3])
            chart.band(xs, lows, highs, shade)
            chart.line(xs, [diff for _d, diff, _l, _h in comp.history], colors[i % 3])
        Path(args.png).write_bytes(chart.png())
        print(f"plot: {args.png}")
    return 0


def cmd_models_status(cfg: PulseConfig, args: argparse.Namespace) -> int:
    """The models' progressive-validation figures, as the processor last saved them."""
    from flows.learning import MODELS_STATUS_META
    from pulse.status import render_models
    from state.store import StoreNotReady

    try:
        raw = _read_store(cfg, "models", lambda reader: reader.get_meta(MODELS_STATUS_META))
    except StoreNotReady as exc:
        print(f"pulse: {exc}", file=sys.stderr)
        return 2
    if raw is None:
        print("pulse: no model status in the store yet: the processor saves it every "
              f"models.save_interval_s ({cfg.models.save_interval_s:g} s) once models have learnt "
              "(is models.enabled true and are events flowing?)", file=sys.stderr)
        return 1
    doc = json.loads(raw)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render_models(doc))
    return 0


def cmd_config(cfg: PulseConfig, args: argparse.Namespace) -> int:
    print(json.dumps(dataclasses.asdict(cfg), indent=2, default=dict))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulse", description="Pulse: real-time personalization engine")
    parser.add_argument("--config", help="TOML configuration file (default: $PULSE_CONFIG, else built-in defaults)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the flow on the built-in synthetic clickstream plus the gRPC server")
    p.add_argument("--limit", type=int, default=None, help="stop after this many events (default: run forever)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("run", help="run the flow: Kafka events -> per-profile state in RocksDB")
    p.add_argument("--exit-at-end", action="store_true", help="stop at the end of the topic instead of tailing it")
    p.add_argument("-i", "--process-id", type=int, default=None,
                   help="this process's index in --addresses (default: processor.process_id)")
    p.add_argument("-a", "--addresses", default=None, metavar="HOST:PORT,...",
                   help="every process of the cluster, the same list in each (default: processor.addresses); "
                        "process 0 holds the store")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("replay", help="rebuild state at full speed from JSONL event files or the events topic")
    p.add_argument("files", nargs="*", metavar="FILE", help="JSONL files of events, one event per line, in order")
    p.add_argument("--topic", action="store_true", help="replay kafka.events_topic from the start to its end instead")
    p.add_argument("--triggers-file", default=None, metavar="PATH",
                   help="append the segment triggers to this JSONL file instead of publishing them to Kafka")
    p.add_argument("--batch-size", type=int, default=None, help="records per batch (default: kafka.batch_size)")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("serve", help="serve gRPC from the flow's RocksDB")
    p.add_argument("--from-changelog", action="store_true",
                   help="serve a replica built from kafka.changelog_topic in serving.replica_dir instead "
                        "(for servers on other machines than pulse run)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("produce-sample", help="write the synthetic clickstream to the Kafka events topic")
    p.add_argument("--count", type=int, default=None, help="number of events (default: until interrupted)")
    p.add_argument("--rate", type=float, default=None, help="events per second (0: as fast as possible)")
    p.set_defaults(func=cmd_produce_sample)
    p = sub.add_parser("get-profile", help="print a profile from a running server")
    p.add_argument("user_id")
    p.add_argument("--address", default=None, help="host:port (default: serving.grpc_address)")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--api-key", default="", help="x-api-key, for a server with API keys configured")
    p.set_defaults(func=cmd_get_profile)
    p = sub.add_parser("erase", help="ask the flow to erase a user's profile and all its aliases (GDPR/CCPA)")
    p.add_argument("user", metavar="USER", help="a user id, or a typed alias (anon:..., device:..., email:<hash>)")
    p.add_argument("--request-id", default=None, help="id recorded with the erasure (default: a new UUID)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="wait up to this long for the flow to execute it (exit 1 if it has not)")
    p.set_defaults(func=cmd_erase)
    p = sub.add_parser("export", help="print everything stored about a user as JSON (GDPR/CCPA access)")
    p.add_argument("user", metavar="USER", help="a user id, or a typed alias (anon:..., device:..., email:<hash>)")
    p.set_defaults(func=cmd_export)
    from pulse import status

    p = sub.add_parser("status", help="one-screen summary of a running Pulse (for whoever is on call)")
    status.add_arguments(p)
    p.set_defaults(func=status.cmd_status)
    p = sub.add_parser("segments", help="segment definitions: check a file, explain a membership")
    seg_sub = p.add_subparsers(dest="segments_command", required=True)
    q = seg_sub.add_parser("check", help="validate a segments YAML file without running anything")
    q.add_argument("file")
    q.set_defaults(func=cmd_segments_check)
    q = seg_sub.add_parser("explain", help="show the feature values behind a stored profile's membership")
    q.add_argument("segment", metavar="ID")
    q.add_argument("user", metavar="USER", help="a user id, or a typed alias (anon:..., device:..., email:<hash>)")
    q.add_argument("--at", type=int, default=None, help="event time (ms) to evaluate at (default: the profile's clock)")
    q.add_argument("--demo", action="store_true", help="use the example segments when segments.path is empty")
    q.set_defaults(func=cmd_segments_explain)
    p = sub.add_parser("experiments", help="experiment results")
    exp_sub = p.add_subparsers(dest="experiments_command", required=True)
    q = exp_sub.add_parser("report", help="per-variant results, significance, sample ratio, and a PNG over time")
    q.add_argument("experiment", metavar="ID")
    q.add_argument("--png", default=None, help="write the uplift and its confidence sequence over time here")
    q.add_argument("--alpha", type=float, default=0.05)
    q.add_argument("--demo", action="store_true", help="use the example experiments when experiments.path is empty")
    q.set_defaults(func=cmd_experiments_report)
    p = sub.add_parser("models", help="online models (propensity, churn)")
    mod_sub = p.add_subparsers(dest="models_command", required=True)
    q = mod_sub.add_parser("status", help="rolling ROC AUC, log loss, examples and drifts per model")
    q.add_argument("--json", action="store_true", help="print the stored status as JSON")
    q.set_defaults(func=cmd_models_status)
    p = sub.add_parser("config", help="print the effective configuration")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"pulse: configuration error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg.log.level, cfg.log.format)
    try:
        return args.func(cfg, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line reason for known startup failures
        from flows.cluster import ClusterError
        from flows.runtime import ConfigurationMissing, TopicError
        from state.store import StoreError

        from operators.content import ContentError
        from operators.experiments import ExperimentError
        from operators.items import CatalogError
        from operators.segments import SegmentError

        if isinstance(exc, (SegmentError, ContentError, ExperimentError, CatalogError)):
            what = {SegmentError: "segment definition", ContentError: "content catalog",
                    ExperimentError: "experiment definition", CatalogError: "item catalog"}[type(exc)]
            print(f"pulse: bad {what}: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, FileNotFoundError) and exc.filename:
            print(f"pulse: {exc.strerror}: {exc.filename}", file=sys.stderr)
            return 1
        if isinstance(exc, (TopicError, StoreError, ConfigurationMissing, ConfigError, ClusterError)):
            print(f"pulse: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
