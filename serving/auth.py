"""The admin gate: every ``pulse.v1.Admin`` RPC passes the API-key check and is logged here.

``AdminInterceptor`` sits after ``StatusInterceptor`` in the server's interceptor list,
so its ``ServingError``s become status codes (and per-method metrics) like any other:

* no key configured (``serving.admin_api_key`` empty) -> PERMISSION_DENIED, admin disabled;
* no ``x-api-key`` metadata -> UNAUTHENTICATED;
* a different key -> PERMISSION_DENIED (compared in constant time).

Each admin call leaves one log line on ``serving.admin``: method, request id, peer and
outcome. Keys and user ids are never logged. A request with an empty ``request_id``
field gets a generated one here, so the log line and the handler agree on it.

>>> check_api_key(b"k3y", [("x-api-key", "k3y")])
>>> check_api_key(b"k3y", [])
Traceback (most recent call last):
serving.errors.Unauthenticated: admin RPCs need an x-api-key
>>> check_api_key(b"", [("x-api-key", "k3y")])
Traceback (most recent call last):
serving.errors.PermissionDenied: admin RPCs are disabled: set serving.admin_api_key
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from serving.errors import PermissionDenied, ServingError, Unauthenticated
from serving.lookup import MAX_REQUEST_ID_CHARS

log = logging.getLogger("serving.admin")

ADMIN_METHOD_PREFIX = "/pulse.v1.Admin/"
API_KEY_METADATA = "x-api-key"
_REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")


def new_request_id() -> str:
    return str(uuid.uuid4())


def check_api_key(configured: bytes, metadata: Iterable[tuple[str, Any]] | None) -> None:
    """Raise the ``ServingError`` for a call with ``metadata`` unless it carries ``configured``."""
    if not configured:
        raise PermissionDenied("admin RPCs are disabled: set serving.admin_api_key")
    given = None
    for key, value in metadata or ():
        if key == API_KEY_METADATA:
            given = value
            break
    if not given:
        raise Unauthenticated(f"admin RPCs need an {API_KEY_METADATA}")
    if isinstance(given, str):
        given = given.encode("utf-8")
    if not hmac.compare_digest(given, configured):
        raise PermissionDenied(f"the {API_KEY_METADATA} is not valid for admin RPCs")


def _loggable(request_id: str) -> str:
    """The request id as it may appear in a log line (no forged lines, bounded length)."""
    if not request_id:
        return "-"
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        return "<invalid>"
    return request_id


class AdminInterceptor(grpc.ServerInterceptor):
    """Checks the API key of every unary Admin RPC and logs its outcome.

    Admin RPCs that are not unary-unary are refused (UNIMPLEMENTED) rather than let
    through unchecked.
    """

    def __init__(self, api_key: str, prefix: str = ADMIN_METHOD_PREFIX) -> None:
        self._key = api_key.encode("utf-8")
        self._prefix = prefix
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if not method.startswith(self._prefix):
            return continuation(handler_call_details)
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return None  # fail closed: an unwrapped admin method must not run
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._wrap(method.rsplit("/", 1)[-1], handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]):
        key = self._key

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            has_id = "request_id" in request.DESCRIPTOR.fields_by_name
            outcome = "INTERNAL"
            try:
                check_api_key(key, context.invocation_metadata())
                if has_id and not request.request_id:
                    request.request_id = new_request_id()
                response = behavior(request, context)
                outcome = "OK"
                return response
            except ServingError as exc:
                outcome = exc.code.name
                raise
            finally:
                level = logging.WARNING if outcome in _REFUSED else logging.INFO
                log.log(level, "admin %s request_id=%s peer=%s outcome=%s", method,
                        _loggable(request.request_id) if has_id else "-", context.peer(), outcome)

        return handle
