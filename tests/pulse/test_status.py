"""pulse.status: the on-call summary from real /metrics endpoints - HTTP servers with
known values, a real `pulse demo`, and endpoints that are down or the wrong ones."""

from __future__ import annotations

import doctest
import re
import signal

import grpc
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

import pulse.status
from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from pulse.config import load_config
from pulse.status import add_arguments, cmd_status, histogram_quantile, main, render_status
from tests.ops.processes import free_port, start_demo, wait_for


class Endpoint:
    """A /metrics HTTP server over a private registry (stopped by the fixture)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints():
    started: list[Endpoint] = []

    def make(registry: CollectorRegistry) -> Endpoint:
        ep = Endpoint(registry)
        started.append(ep)
        return ep

    yield make
    for ep in started:
        ep.stop()


def processor_registry() -> tuple[CollectorRegistry, Counter]:
    reg = CollectorRegistry()
    Info("pulse_build", "", registry=reg).info({"version": "9.9.9", "python": "3.11.0", "bytewax": "0.21.1"})
    events_in = Counter("pulse_events_in_total", "", ["topic"], registry=reg)
    events_in.labels("pulse.events").inc(10_000)
    out = Counter("pulse_events_out_total", "", ["outcome"], registry=reg)
    out.labels("applied").inc(9_000)
    out.labels("duplicate").inc(500)
    out.labels("invalid").inc(500)
    invalid = Counter("pulse_events_invalid_total", "", ["reason"], registry=reg)
    invalid.labels("not_json").inc(300)
    invalid.labels("missing_field").inc(200)
    invalid.labels("too_large")  # zero: not listed
    Counter("pulse_dlq_published_total", "", registry=reg).inc(500)
    lag = Gauge("pulse_consumer_lag", "", ["topic", "partition"], registry=reg)
    lag.labels("pulse.events", "0").set(120)
    lag.labels("pulse.events", "1").set(30)
    latency = Histogram("pulse_processing_latency_seconds", "", ["clock"], registry=reg,
                        buckets=(0.01, 0.1, 1, 10))
    for _ in range(99):
        latency.labels("ingest").observe(0.05)
    latency.labels("ingest").observe(5)
    Gauge("pulse_profiles_in_memory", "", registry=reg).set(1234)
    Gauge("pulse_profiles_in_store", "", registry=reg).set(56789)
    Gauge("pulse_store_size_bytes", "", registry=reg).set(3 * 1024 * 1024)
    Gauge("pulse_volume_events_per_minute", "", registry=reg).set(6000)
    Gauge("pulse_volume_level_per_minute", "", registry=reg).set(5000)
    Gauge("pulse_volume_ratio", "", registry=reg).set(1.2)
    issues = Counter("pulse_field_issues_total", "", ["field", "issue"], registry=reg)
    issues.labels("event_id", "missing").inc(200)
    issues.labels("context.geo", "missing").inc(40)
    members = Gauge("pulse_segment_members", "", ["segment"], registry=reg)
    members.labels("cart_abandoner").set(420)
    members.labels("vip").set(17)
    Counter("pulse_segment_transitions_total", "", ["segment", "transition"], registry=reg).labels(
        "vip", "entered").inc(30)
    Counter("pulse_triggers_published_total", "", registry=reg).inc(3000)
    Gauge("pulse_outbox_depth", "", registry=reg).set(2)
    Gauge("pulse_watermark_lag_seconds", "", registry=reg).set(0.25)
    return reg, events_in


def serving_registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Info("pulse_build", "", registry=reg).info({"version": "9.9.9", "python": "3.11.0", "bytewax": "0.21.1"})
    Gauge("pulse_serving_store_ready", "", registry=reg).set(1)
    Histogram("pulse_store_catch_up_seconds", "", registry=reg, buckets=(0.001, 0.01)).observe(0.0005)
    requests = Counter("pulse_rpc_requests_total", "", ["method", "code"], registry=reg)
    latency = Histogram("pulse_rpc_latency_seconds", "", ["method", "code"], registry=reg,
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01))
    for _ in range(90):
        requests.labels("GetProfile", "OK").inc()
        latency.labels("GetProfile", "OK").observe(0.0008)
    for _ in range(10):
        requests.labels("GetProfile", "NOT_FOUND").inc()
        latency.labels("GetProfile", "NOT_FOUND").observe(0.004)
    return reg


def test_summary_of_both_processes_with_rates_from_two_samples(endpoints):
    reg, events_in = processor_registry()
    processor, serving = endpoints(reg), endpoints(serving_registry())

    def sleep(seconds: float) -> None:  # traffic between the two scrapes
        import time
        events_in.labels("pulse.events").inc(1000)
        time.sleep(seconds)

    text = render_status(processor.url, serving.url, sample_seconds=0.5, sleep=sleep)
    assert len(text.splitlines()) <= 30, "one screen"
    assert "UNREACHABLE" not in text
    assert text.count("pulse 9.9.9 · python 3.11.0 · bytewax 0.21.1") == 2
    assert "in 11,000 · applied 9,000 · duplicate 500 · invalid 500 (4.5 % invalid)" in text
    rate = float(re.search(r"throughput\s+in ([\d,.]+)/s", text).group(1).replace(",", ""))
    assert 200 < rate <= 2000, text  # 1,000 more records over >= 0.5 s
    assert "consumer lag 150 records over 2 partitions" in text
    # 99 of 100 ingest observations at 50 ms (bucket 10-100 ms), one at 5 s: since start,
    # because nothing was observed between the samples.
    assert re.search(r"ingest p50 5\d\.\d ms p99 \d+\.\d ms", text), text
    assert "(since start)" in text
    assert "by reason: not_json 300, missing_field 200" in text and "too_large" not in text
    assert "1,234 in memory · ~56,789 in store · store 3.0 MiB on disk" in text
    assert "6,000/min last minute · recent level 5,000/min (ratio 1.20)" in text
    assert "field issues event_id missing 200, context.geo missing 40" in text
    assert "segments     2 · largest: cart_abandoner 420, vip 17 · transitions 0.0/s" in text
    assert "triggers     3,000 published · outbox 2 waiting · segment clock 250" in text
    assert "store        ready · catch-up p99" in text
    row = next(line for line in text.splitlines() if "GetProfile" in line)
    assert re.search(r"GetProfile\s+100\s+0\.0/s\s+\S+ (µs|ms)\s+\S+ ms\s+NOT_FOUND 10", row), row


def test_an_unreachable_endpoint_is_reported_and_the_other_still_shown(endpoints):
    serving = endpoints(serving_registry())
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    text = render_status(dead, serving.url, sample_seconds=0.1)
    assert f"Processor  {dead}  UNREACHABLE" in text and "is `pulse run`" in text
    assert "GetProfile" in text
    text = render_status(serving.url, dead, sample_seconds=0)
    assert "exports no Pulse processor metrics" in text
    assert f"Serving    {dead}  UNREACHABLE" in text


def test_not_a_metrics_page(endpoints):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>login</html>\n{{{"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        text = render_status(url, url, sample_seconds=0)
        assert "UNREACHABLE: not a Prometheus metrics page" in text
    finally:
        server.shutdown()
        server.server_close()


def test_exit_code_and_default_urls_from_the_configuration(endpoints, capsys, tmp_path):
    processor = endpoints(processor_registry()[0])
    serving = endpoints(serving_registry())
    assert main(["--processor", processor.url, "--serving", serving.url, "--sample", "0"]) == 0
    assert "Processor  " + processor.url in capsys.readouterr().out
    # Defaults come from processor/serving metrics_host and metrics_port; 0.0.0.0 means loopback.
    config = tmp_path / "pulse.toml"
    config.write_text(f"[processor]\nmetrics_host = \"0.0.0.0\"\nmetrics_port = {processor.server.server_address[1]}\n"
                      f"[serving]\nmetrics_port = {free_port()}\n")
    assert main(["--config", str(config), "--sample", "0"]) == 1
    out = capsys.readouterr().out
    assert f"Processor  http://127.0.0.1:{processor.server.server_address[1]}/metrics\n" in out
    assert "Serving" in out and "UNREACHABLE" in out
    # The CLI hook: add_arguments + cmd_status(cfg, args).
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--serving", serving.url, "--sample", "0"])
    assert cmd_status(load_config(config, {}), args) == 0


def test_against_a_real_pulse_demo(tmp_path, capsys):
    demo, grpc_address, metrics_url = start_demo(tmp_path / "state", PULSE_GENERATOR_EVENTS_PER_SECOND="1000",
                                                 PULSE_GENERATOR_USERS="100")
    try:
        stub = pulse_pb2_grpc.PulseStub(grpc.insecure_channel(grpc_address))

        def served() -> bool:
            try:
                stub.GetProfile(pulse_pb2.GetProfileRequest(user_id="u000000"), timeout=2)
                return True
            except grpc.RpcError as err:
                assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), err
                return False

        wait_for(served, 30, "u000000's profile")
        # `pulse demo` exports processor and server metrics on one endpoint.
        assert main(["--processor", metrics_url, "--serving", metrics_url, "--sample", "1"]) == 0
        text = capsys.readouterr().out
    finally:
        assert demo.stop(signal.SIGINT) == 0, demo.output(2000)
    assert "UNREACHABLE" not in text and "exports no Pulse" not in text, text
    assert re.search(r"build\s+pulse \S+ · python 3\.11\.\d+ · bytewax 0\.21\.1", text), text
    rate = float(re.search(r"throughput\s+in ([\d,.]+)/s", text).group(1).replace(",", ""))
    assert rate > 100, text
    assert re.search(r"latency\s+ingest p50 \d", text), text
    assert re.search(r"GetProfile\s+[1-9]", text), text
    assert "store        ready" in text
    assert re.search(r"segments\s+20 · largest: ", text), text  # the demo's example segments


def test_histogram_quantile_matches_prometheus_interpolation():
    assert doctest.testmod(pulse.status).failed == 0
    buckets = [(0.001, 50.0), (0.01, 90.0), (0.1, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.001)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.055)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.0005)
