"""``pulse serve`` on ``grpc.aio``: the same servicers, keys, TLS, health and reflection
as the thread-pool server, with every Pulse RPC run in one event-loop thread.

Why: the handlers are CPU work (a RocksDB get, numpy ranking) with no I/O to wait for.
On the thread-pool server two handler threads fight for the GIL at every numpy call
that releases it, and each call costs more CPU the more threads run (in process, 546 us
per recommendation with one thread, 742 with two); here a call runs start to end
without a switch. ``bench/bench_serving.py --recommendations`` compares both (figures
in the README: 632 against 461 requests/s at 32 in flight); ``create_server(kind="aio")``
builds this one, and ``pulse serve`` does by default (setting ``serving.server``).

How: ``StatusInterceptor`` and ``AuthInterceptor`` are the thread-pool server's, adapted
(``_Adapted``); the outermost interceptor (``_Inline``) turns the resulting sync handler
into a coroutine that calls it in the loop with a sync view of the call's context
(``_InlineContext``: ``abort`` raises, and the coroutine then aborts the call). Admin
RPCs run in a worker thread instead, as EraseUser waits for Kafka. The loop runs in its
own thread (``pulse-grpc-aio``), so ``AioPulseServer`` has the sync ``start``/``stop``
of ``PulseServer`` and the store catch-up stays the same background thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto.pulse.v1 import pulse_pb2_grpc
from serving.auth import ADMIN_METHOD_PREFIX
from serving.tls import bind_port

_LOOP_TIMEOUT_S = 30.0


class _Abort(Exception):
    """``_InlineContext.abort``: unwinds the sync handler; the coroutine then aborts the call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _InlineContext:
    """What the sync handlers use of ``grpc.ServicerContext``, over an aio context."""

    __slots__ = ("_context", "_code")

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self._code: grpc.StatusCode | None = None

    def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code = code
        raise _Abort(code, details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def invocation_metadata(self):
        return self._context.invocation_metadata()

    def peer(self) -> str:
        return self._context.peer()

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()


def _inline(behavior: Callable[[Any, Any], Any], in_thread: bool) -> Callable[[Any, Any], Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        view = _InlineContext(context)
        try:
            if in_thread:
                return await asyncio.to_thread(behavior, request, view)
            return behavior(request, view)
        except _Abort as exc:
            await context.abort(exc.code, exc.details)

    return handle


class _Inline(grpc.aio.ServerInterceptor):
    """Outermost: sync unary handlers become coroutines run in the loop (Admin: in a thread)."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or inspect.iscoroutinefunction(handler.unary_unary):
            return handler  # health and reflection are aio servicers already
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _inline(handler.unary_unary, in_thread=method.startswith(ADMIN_METHOD_PREFIX)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            cached = self._wrapped[method] = (handler, wrapped)
        return cached[1]


class _Adapted(grpc.aio.ServerInterceptor):
    """A thread-pool server interceptor (``intercept_service`` with a sync continuation)
    in an aio server."""

    def __init__(self, inner: grpc.ServerInterceptor) -> None:
        self._inner = inner

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        return self._inner.intercept_service(lambda _details: handler, handler_call_details)


class _LoopHealth:
    """The aio health servicer's coroutines, callable from other threads (the catch-up)."""

    def __init__(self, servicer: health_aio.HealthServicer, loop: asyncio.AbstractEventLoop) -> None:
        self.servicer = servicer
        self._loop = loop

    def set(self, service: str, status) -> None:
        asyncio.run_coroutine_threadsafe(self.servicer.set(service, status), self._loop).result(_LOOP_TIMEOUT_S)

    def enter_graceful_shutdown(self) -> None:
        asyncio.run_coroutine_threadsafe(self.servicer.enter_graceful_shutdown(), self._loop).result(_LOOP_TIMEOUT_S)


class AioPulseServer:
    """A ``grpc.aio`` server in its own event-loop thread, with ``PulseServer``'s sync
    interface. ``bind`` adds the port; ``attach`` gives it the catch-up loop to run
    between ``start`` and ``stop``."""

    def __init__(self, interceptors: list[grpc.ServerInterceptor], options: list[tuple[str, Any]],
                 pulse: pulse_pb2_grpc.PulseServicer, admin: pulse_pb2_grpc.AdminServicer,
                 service_names: tuple[str, ...]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pulse-grpc-aio", daemon=True)
        self._thread.start()
        self._catch_up = None
        self._stopping = False
        self._terminated = threading.Event()

        async def build() -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
            server = grpc.aio.server(interceptors=[_Inline(), *(_Adapted(i) for i in interceptors)], options=options)
            pulse_pb2_grpc.add_PulseServicer_to_server(pulse, server)
            pulse_pb2_grpc.add_AdminServicer_to_server(admin, server)
            servicer = health_aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
            reflection.enable_server_reflection((*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
            return server, servicer

        try:
            self._server, servicer = self._run(build())
        except BaseException:
            self._close_loop()
            raise
        self.health = _LoopHealth(servicer, self._loop)

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_LOOP_TIMEOUT_S)

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def bind(self, address: str, credentials: grpc.ServerCredentials | None) -> int:
        """Listen on ``address`` (TLS with ``credentials``); the port. On failure the loop
        stops and ``OSError`` names the address (``serving.tls.bind_port``)."""
        async def add() -> int:
            return bind_port(self._server, address, credentials)
        try:
            return self._run(add())
        except BaseException:
            self._close_loop()
            raise

    def attach(self, catch_up) -> None:
        self._catch_up = catch_up

    def start(self) -> None:
        self._run(self._server.start())
        if self._catch_up is not None:
            self._catch_up.start()

    def stop(self, grace: float | None) -> threading.Event:
        """Report NOT_SERVING, stop catching up, then stop gRPC (in-flight calls get
        ``grace`` s); the event is set once the server and its loop have stopped."""
        if self._stopping:
            return self._terminated
        self._stopping = True
        if self._catch_up is not None:
            self._catch_up.stop()
        self.health.enter_graceful_shutdown()
        future = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)

        def finished(_future) -> None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            threading.Thread(target=self._finish, name="pulse-grpc-aio-stop", daemon=True).start()

        future.add_done_callback(finished)
        return self._terminated

    def _finish(self) -> None:
        self._thread.join()
        self._loop.close()
        self._terminated.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._terminated.wait(timeout)
