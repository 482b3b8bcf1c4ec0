"""Serving metrics, declared once at import (labels: method and status code, never a user id).

The metrics live in prometheus-client's default registry, so any number of servers in
one process (tests, ``pulse demo``) share them instead of registering them again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Handler time is a few µs to a few ms; anything near 100 ms is an incident.
_RPC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_CATCH_UP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)

RPC_LATENCY = Histogram(
    "pulse_rpc_latency_seconds",
    "Time spent in the Pulse RPC handler (excludes gRPC transport and serialization), by outcome",
    ["method", "code"],
    buckets=_RPC_BUCKETS,
)
RPC_REQUESTS = Counter("pulse_rpc_requests_total", "Pulse RPCs handled, by method and status code",
                       ["method", "code"])
STORE_CATCH_UP = Histogram(
    "pulse_store_catch_up_seconds",
    "Duration of one catch-up of the serving reader with the writer's RocksDB",
    buckets=_CATCH_UP_BUCKETS,
)
STORE_READY = Gauge(
    "pulse_serving_store_ready",
    "1 when the serving reader has opened the state store, 0 while it waits for the writer to create it",
)

EXPOSURES = Counter("pulse_exposures_total", "Experiment exposures delivered (to Kafka, or the demo's file)")
EXPOSURES_DROPPED = Counter("pulse_exposures_dropped_total",
                            "Experiment exposures not delivered (the producer queue was full or Kafka refused them)")

_children_lock = threading.Lock()


def rpc_recorder(method: str) -> Callable[[grpc.StatusCode, float], None]:
    """A ``record(code, seconds)`` for one method that keeps its labelled children.

    ``labels(...)`` costs ~1.5 µs per call, so each (method, code) child is looked up once.
    """
    children: dict[grpc.StatusCode, tuple] = {}

    def record(code: grpc.StatusCode, seconds: float) -> None:
        pair = children.get(code)
        if pair is None:
            with _children_lock:
                pair = (RPC_LATENCY.labels(method, code.name), RPC_REQUESTS.labels(method, code.name))
                children[code] = pair
        pair[0].observe(seconds)
        pair[1].inc()

    return record


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP endpoint; ``port`` is the bound port."""

    host: str
    port: int
    _server: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_endpoint(host: str, port: int) -> MetricsEndpoint:
    """Serve the default registry at ``http://host:port/metrics``; ``port`` 0 picks a free one."""
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    return MetricsEndpoint(host=host, port=server.server_address[1], _server=server, _thread=thread)


# --- operations (issue 8) ---------------------------------------------------------------
# pulse_build_info is shared with flows.metrics (one process may export both): declared
# once in pulse.buildinfo, imported here so every server exports it.
from pulse.buildinfo import BUILD_INFO  # noqa: E402,F401
