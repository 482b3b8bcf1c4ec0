"""GetProfile over a real loopback gRPC server reading a real RocksDB (secondary instance)."""

from __future__ import annotations

import logging
import re
import socket
import threading
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from serving import MAX_USER_ID_CHARS, SERVICE_NAME, create_server, start_metrics_endpoint
from state.store import MemoryStore, RocksStore
from tests.serving.conftest import make_profile, put_profile, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(body: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format -> {(name, frozenset of label pairs): value} (order-insensitive)."""
    samples = {}
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m:
            samples[(m.group(1), frozenset(_LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return samples


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def health_status(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_get_profile_returns_the_written_state(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("user:u1"))
    srv = start_server(make_reader(store_dir))

    p = srv.get("u1").profile

    assert p.profile_id == "user:u1"
    assert list(p.aliases) == ["user:u1"]
    assert dict(p.event_counts) == {"page_view": 7, "add_to_cart": 2, "purchase": 1}
    assert p.first_seen.ToMilliseconds() == 1_796_205_600_250
    assert p.last_seen.ToMilliseconds() == 1_796_209_200_999
    assert p.total_spend == 219.5
    assert p.orders == 1
    assert [(c.item_id, c.quantity, c.unit_price, c.category, c.added_at.ToMilliseconds()) for c in p.cart] == [
        ("sku-1", 2, 120.0, "tents", 1_796_209_000_000),  # oldest addition first
        ("sku-2", 1, 15.0, "", 1_796_209_100_000),
    ]
    assert [(c.category, c.count) for c in p.top_categories] == [
        ("tents", 9), ("boots", 4), ("hats", 4), ("socks", 3), ("maps", 2),
    ]
    assert (p.last_device, p.last_channel) == ("mobile", "app")
    geo = p.last_location
    assert (geo.country, geo.city, geo.lat, geo.lon) == ("FR", "Lyon", 45.76, 4.84)
    assert geo.HasField("lat") and geo.HasField("lon")
    assert p.version == 10


def test_unknown_fields_stay_unset(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("user:u2", last_geo=None, last_device=None, last_channel=None, cart={},
                                     categories={}))
    p = start_server(make_reader(store_dir)).get("u2").profile
    assert not p.HasField("last_location")
    assert (p.last_device, p.last_channel, len(p.cart), len(p.top_categories)) == ("", "", 0, 0)


def test_a_write_after_start_becomes_visible(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("user:u1", version=1))
    srv = start_server(make_reader(store_dir))
    assert srv.get("u1").profile.version == 1

    put_profile(writer, make_profile("user:u1", version=2))
    put_profile(writer, make_profile("user:late"))

    def visible():
        try:
            return srv.get("u1").profile.version == 2 and srv.get("late").profile.profile_id == "user:late"
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return False

    wait_until(visible, what="writes made after the server started")


def test_unknown_user_is_not_found(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("user:u1"))
    srv = start_server(make_reader(store_dir))
    err = rpc_error(lambda: srv.get("nobody"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "no profile for user_id 'nobody'"


@pytest.mark.parametrize("user_id", ["", "   ", "\t\n"])
def test_empty_user_id_is_invalid(writer, store_dir, make_reader, start_server, user_id):
    srv = start_server(make_reader(store_dir))
    err = rpc_error(lambda: srv.get(user_id))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "user_id is required"


def test_too_long_user_id_is_invalid(writer, store_dir, make_reader, start_server):
    srv = start_server(make_reader(store_dir))
    err = rpc_error(lambda: srv.get("x" * (MAX_USER_ID_CHARS + 1)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"user_id is {MAX_USER_ID_CHARS + 1} characters long; the limit is {MAX_USER_ID_CHARS}"
    # exactly at the limit is a valid id (just not a known one)
    assert rpc_error(lambda: srv.get("x" * MAX_USER_ID_CHARS)).code() == grpc.StatusCode.NOT_FOUND


def test_unavailable_until_the_writer_creates_the_store(store_dir, make_reader, start_server):
    reader = make_reader(store_dir)  # nothing there yet
    srv = start_server(reader)

    err = rpc_error(lambda: srv.get("u1"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "not ready" in err.details()
    assert health_status(srv.channel) == NOT_SERVING
    assert health_status(srv.channel, SERVICE_NAME) == NOT_SERVING

    late_writer = RocksStore(store_dir)
    try:
        put_profile(late_writer, make_profile("user:u1"))
        wait_until(lambda: health_status(srv.channel) == SERVING, what="health SERVING")
        assert health_status(srv.channel, SERVICE_NAME) == SERVING

        def found():
            try:
                return srv.get("u1").profile.profile_id == "user:u1"
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False

        wait_until(found, what="u1 visible after the store appeared")
    finally:
        late_writer.close()


def test_health_serving_for_an_open_store(writer, store_dir, make_reader, start_server):
    srv = start_server(make_reader(store_dir))
    assert health_status(srv.channel) == SERVING
    assert health_status(srv.channel, SERVICE_NAME) == SERVING
    assert health_status(srv.channel, "pulse.v1.Admin") == SERVING
    err = rpc_error(lambda: health_status(srv.channel, "no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(start_server):
    srv = start_server(MemoryStore())
    stub = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"pulse.v1.Pulse", "pulse.v1.Admin", "grpc.health.v1.Health"} <= names


def test_unexpected_error_is_internal_without_details(start_server, caplog):
    class BrokenReader:
        ready = True

        def profile_of(self, alias):
            raise RuntimeError("secret detail")

        def catch_up(self):
            return None

    srv = start_server(BrokenReader())
    with caplog.at_level(logging.ERROR, logger="serving.errors"):
        err = rpc_error(lambda: srv.get("u1"))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == "internal error"
    assert "secret" not in err.details() and "Traceback" not in (err.debug_error_string() or "")
    assert "secret" not in (err.debug_error_string() or "")
    logged = [r for r in caplog.records if r.name == "serving.errors"]
    assert logged and logged[0].exc_info and "secret detail" in str(logged[0].exc_info[1])
    assert "GetProfile" in logged[0].getMessage()


def test_metrics_endpoint_exposes_rpc_latency(writer, store_dir, make_reader, start_server):
    put_profile(writer, make_profile("user:u1"))
    srv = start_server(make_reader(store_dir))
    srv.get("u1")
    rpc_error(lambda: srv.get("nobody"))
    endpoint = start_metrics_endpoint("127.0.0.1", 0)
    try:
        assert endpoint.port > 0
        with urllib.request.urlopen(endpoint.url, timeout=5) as resp:
            body = resp.read().decode()
    finally:
        endpoint.stop()

    samples = parse_metrics(body)
    for code in ("OK", "NOT_FOUND"):
        labels = {"method": "GetProfile", "code": code}
        assert samples.get(("pulse_rpc_latency_seconds_count", frozenset(labels.items())), 0) >= 1, code
        assert samples.get(("pulse_rpc_requests_total", frozenset(labels.items())), 0) >= 1, code
    ok_bucket = frozenset({"method": "GetProfile", "code": "OK", "le": "0.001"}.items())
    assert ("pulse_rpc_latency_seconds_bucket", ok_bucket) in samples
    assert samples[("pulse_store_catch_up_seconds_count", frozenset())] >= 1
    assert samples[("pulse_serving_store_ready", frozenset())] == 1.0
    label_values = {v for name, labels in samples if name.startswith("pulse_rpc") for _k, v in labels}
    assert "u1" not in label_values and "nobody" not in label_values


def test_metrics_endpoint_stop_releases_the_port():
    endpoint = start_metrics_endpoint("127.0.0.1", 0)
    port = endpoint.port
    endpoint.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise EADDRINUSE if still held


def test_several_servers_in_one_process(start_server):
    a = start_server(MemoryStore())
    b = start_server(MemoryStore())
    assert a.port != b.port
    for srv in (a, b):
        assert rpc_error(lambda srv=srv: srv.get("x")).code() == grpc.StatusCode.NOT_FOUND


def test_binds_only_the_given_address_and_refuses_a_taken_port(start_server, server_kind):
    srv = start_server(MemoryStore())
    for kind in ("sync", "aio"):
        with pytest.raises(OSError, match=rf"127\.0\.0\.1:{srv.port}"):
            create_server(f"127.0.0.1:{srv.port}", MemoryStore(), kind=kind)
    # not listening on other interfaces (e.g. this host's non-loopback addresses)
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.2", srv.port)) != 0


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_stop_ends_the_catch_up_thread_and_the_event_loop(kind):
    def server_threads():
        return [t for t in threading.enumerate() if t.name in ("pulse-catch-up", "pulse-grpc-aio")]

    before = len(server_threads())
    server, port = create_server("127.0.0.1:0", MemoryStore(), catch_up_interval_ms=1, kind=kind)
    server.start()
    assert len(server_threads()) == before + (2 if kind == "aio" else 1)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert health_status(channel) == SERVING
        assert server.stop(grace=1).wait(10)
    assert len(server_threads()) == before


def test_invalid_server_settings_fail_early():
    with pytest.raises(ValueError, match="unknown server kind 'threads'; kinds: aio, sync"):
        create_server("127.0.0.1:0", MemoryStore(), kind="threads")
    with pytest.raises(ValueError, match="max_workers"):
        create_server("127.0.0.1:0", MemoryStore(), max_workers=0)
    with pytest.raises(ValueError, match="catch_up_interval_ms"):
        create_server("127.0.0.1:0", MemoryStore(), catch_up_interval_ms=0)
