"""Serving errors and the one place where exceptions become gRPC status codes.

Handlers raise a ``ServingError`` subclass; each carries its status code and a message
for the client that says what is wrong and where. ``StatusInterceptor`` turns them into
statuses for every Pulse RPC, records the per-call metrics, and answers anything
unexpected with INTERNAL "internal error" (the traceback goes to the server log only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from serving.metrics import rpc_recorder

log = logging.getLogger(__name__)

# Methods of services in these packages are wrapped (health and reflection are not).
PULSE_METHOD_PREFIX = "/pulse."
INTERNAL_MESSAGE = "internal error"


class ServingError(Exception):
    """A request that cannot be answered; ``code`` is the gRPC status to return."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    """Something the request names does not exist (e.g. an experiment)."""

    code = grpc.StatusCode.NOT_FOUND


class UnknownProfile(ServingError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, user_id: str) -> None:
        super().__init__(f"no profile for user_id {user_id!r}")
        self.user_id = user_id


class StoreUnavailable(ServingError):
    code = grpc.StatusCode.UNAVAILABLE


class ControlUnavailable(ServingError):
    """Kafka did not take an erase request (unreachable, topic missing, no ack in time)."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ServingError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServingError):
    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(ServingError):
    """The client's deadline passed before the server started the call."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(ServingError):
    """The server's setup cannot do this (e.g. erase without Kafka)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def _short_name(full_method: str) -> str:
    """``/pulse.v1.Pulse/GetProfile`` -> ``GetProfile`` (the metrics label)."""
    return full_method.rsplit("/", 1)[-1]


def _wrap_unary(method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]):
    record = rpc_recorder(method)

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return behavior(request, context)
        except ServingError as exc:
            code = exc.code
            context.abort(code, exc.message)
        except Exception:
            already = context.code()
            if already is not None and already is not grpc.StatusCode.OK:
                # The handler chose a status itself (context.abort): keep it.
                code = already
                raise
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed with an unexpected error", method)
            context.abort(code, INTERNAL_MESSAGE)
        finally:
            record(code, time.perf_counter() - start)

    return handle


class StatusInterceptor(grpc.ServerInterceptor):
    """Maps errors to status codes and times every unary Pulse RPC.

    The wrapped handler is built once per method and reused, so the per-call cost is a
    dictionary lookup plus the timing.
    """

    def __init__(self, prefix: str = PULSE_METHOD_PREFIX) -> None:
        self._prefix = prefix
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not method.startswith(self._prefix):
            # Only unary Pulse RPCs exist so far (create_server checks); a streaming
            # RPC needs its own wrapper here.
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _wrap_unary(_short_name(method), handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped
