"""A ``grpc.aio`` server over the same ``PulseServicer``: for measuring against the sync
thread-pool server (``bench.bench_serving --recommendations``), not wired into ``pulse serve``.

The servicer's methods are sync and do no I/O besides RocksDB gets (microseconds), so
they run directly in the event loop. Errors map to status codes and metrics as in
``serving.errors.StatusInterceptor``. The store catch-up and item-index refresh run in
the same background thread as in ``serving.server`` (``_CatchUp``). No API keys, TLS,
health or reflection: the comparison is about the RPC path only.
"""

from __future__ import annotations

import logging
import time

import grpc

from operators.profile import Policy
from proto.pulse.v1 import pulse_pb2
from serving.catalog import LiveItemIndex
from serving.errors import INTERNAL_MESSAGE, ServingError
from serving.metrics import rpc_recorder
from serving.recommend import DEFAULT_MAX_PER_CATEGORY
from serving.server import DEFAULT_ITEMS_REFRESH_MS, DEFAULT_MAX_K, SERVICE_NAME, PulseServicer, _CatchUp

log = logging.getLogger(__name__)

_UNARY = ("GetProfile", "GetRecommendations", "GetSegments", "ListSegmentMembers", "Decide")


class _NoHealth:
    def set(self, name: str, status) -> None:
        return None


def _wrap(name: str, behavior):
    record = rpc_recorder(name)
    ok = grpc.StatusCode.OK

    async def handle(request, context: grpc.aio.ServicerContext):
        start = time.perf_counter()
        code = ok
        try:
            return behavior(request, context)
        except ServingError as exc:
            code = exc.code
            await context.abort(code, exc.message)
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed with an unexpected error", name)
            await context.abort(code, INTERNAL_MESSAGE)
        finally:
            record(code, time.perf_counter() - start)

    return handle


class AioPulseServer:
    """``start``/``stop`` are coroutines (run in the loop that serves)."""

    def __init__(self, server: grpc.aio.Server, catch_up: _CatchUp) -> None:
        self._server = server
        self._catch_up = catch_up

    async def start(self) -> None:
        await self._server.start()
        self._catch_up.start()

    async def stop(self, grace: float | None) -> None:
        self._catch_up.stop()
        await self._server.stop(grace)


def create_aio_server(address: str, reader, *, catch_up_interval_ms: int = 20, default_consent: bool = True,
                      max_k: int = DEFAULT_MAX_K, max_per_category: int = DEFAULT_MAX_PER_CATEGORY,
                      items_refresh_ms: int = DEFAULT_ITEMS_REFRESH_MS) -> tuple[AioPulseServer, int]:
    """Build (not start) an aio server for ``reader`` on ``address``; call inside a running loop."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    items = LiveItemIndex(reader, items_refresh_ms)
    servicer = PulseServicer(reader, Policy(default_consent=default_consent), items=items, max_k=max_k,
                             max_per_category=max_per_category)
    methods = pulse_pb2.DESCRIPTOR.services_by_name["Pulse"].methods_by_name
    handlers = {}
    for name in _UNARY:
        m = methods[name]
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            _wrap(name, getattr(servicer, name)),
            request_deserializer=getattr(pulse_pb2, m.input_type.name).FromString,
            response_serializer=getattr(pulse_pb2, m.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    port = server.add_insecure_port(address)
    catch_up = _CatchUp(reader, _NoHealth(), catch_up_interval_ms / 1000, items)
    return AioPulseServer(server, catch_up), port
