"""StatusInterceptor: the one place where handler outcomes become status codes and metrics."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from prometheus_client import REGISTRY

from serving import InvalidArgument, ServingError, StatusInterceptor, StoreUnavailable, UnknownProfile


class Forbidden(ServingError):
    code = grpc.StatusCode.PERMISSION_DENIED


def _raise(exc):
    def behavior(request, context):
        raise exc
    return behavior


def _abort(request, context):
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")


BEHAVIORS = {
    "Ok": lambda request, context: b"pong:" + request,
    "Invalid": _raise(InvalidArgument("field 'x' is bad")),
    "Unknown": _raise(UnknownProfile("u9")),
    "Unavailable": _raise(StoreUnavailable("store at /x not ready")),
    "Forbidden": _raise(Forbidden("not yours")),
    "Boom": _raise(KeyError("secret-key")),
    "Abort": _abort,
}


@pytest.fixture(scope="module")
def channel():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[StatusInterceptor()])
    handlers = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in BEHAVIORS.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("pulse.test.Fake", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(None).wait()


def call(channel, method):
    return channel.unary_unary(f"/pulse.test.Fake/{method}")(b"ping", timeout=5)


def count(method, code):
    return REGISTRY.get_sample_value("pulse_rpc_requests_total", {"method": method, "code": code}) or 0.0


def test_ok_passes_through_and_is_counted(channel):
    before = count("Ok", "OK")
    assert call(channel, "Ok") == b"pong:ping"
    assert count("Ok", "OK") == before + 1
    assert REGISTRY.get_sample_value("pulse_rpc_latency_seconds_sum", {"method": "Ok", "code": "OK"}) > 0


@pytest.mark.parametrize("method, code, details", [
    ("Invalid", grpc.StatusCode.INVALID_ARGUMENT, "field 'x' is bad"),
    ("Unknown", grpc.StatusCode.NOT_FOUND, "no profile for user_id 'u9'"),
    ("Unavailable", grpc.StatusCode.UNAVAILABLE, "store at /x not ready"),
    ("Forbidden", grpc.StatusCode.PERMISSION_DENIED, "not yours"),
    ("Boom", grpc.StatusCode.INTERNAL, "internal error"),
    ("Abort", grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"),  # a handler's own abort is kept
])
def test_errors_map_to_their_codes(channel, method, code, details):
    before = count(method, code.name)
    with pytest.raises(grpc.RpcError) as info:
        call(channel, method)
    assert (info.value.code(), info.value.details()) == (code, details)
    assert count(method, code.name) == before + 1
