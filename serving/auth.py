"""The gate of every Pulse RPC: API keys with roles, deadlines, and the admin audit log.

Keys come from ``serving.api_keys_file`` (one ``KEY ROLE`` per line, role ``read`` or
``admin``) plus ``serving.admin_api_key`` (one admin key). ``AuthInterceptor`` sits after
``StatusInterceptor`` in the server's interceptor list, so its ``ServingError``s become
status codes (and per-method metrics) like any other:

* no key configured at all -> ``pulse.v1.Pulse`` RPCs are open, Admin RPCs are disabled
  (PERMISSION_DENIED);
* some key configured -> every ``pulse.v1.*`` RPC needs ``x-api-key`` metadata:
  missing -> UNAUTHENTICATED; a key that is not configured -> UNAUTHENTICATED; a valid
  key whose role is too weak (``read`` on an Admin RPC) -> PERMISSION_DENIED;
* a call whose deadline has already passed -> DEADLINE_EXCEEDED, before any work.

Health and reflection are never gated (probes). Keys are compared in constant time
against every configured key and are never logged. Each Admin call leaves one log line
on ``serving.admin``: method, request id, peer and outcome (no keys, no user ids). A
request with an empty ``request_id`` field gets a generated one here, so the log line
and the handler agree on it.

>>> keys = ApiKeys.of({"r3ad": "read", "adm1n": "admin"})
>>> check_api_key(keys, [("x-api-key", "r3ad")], "read")
'read'
>>> check_api_key(keys, [("x-api-key", "r3ad")], "admin")
Traceback (most recent call last):
serving.errors.PermissionDenied: admin RPCs need a key with role admin; this key has role read
>>> check_api_key(keys, [], "read")
Traceback (most recent call last):
serving.errors.Unauthenticated: this RPC needs an x-api-key
>>> check_api_key(ApiKeys(), [], "read") is None
True
>>> check_api_key(ApiKeys(), [("x-api-key", "k3y")], "admin")
Traceback (most recent call last):
serving.errors.PermissionDenied: admin RPCs are disabled: set serving.admin_api_key or serving.api_keys_file
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from pulse.config import ConfigError
from serving.errors import DeadlineExceeded, PermissionDenied, ServingError, Unauthenticated
from serving.lookup import MAX_REQUEST_ID_CHARS

log = logging.getLogger("serving.admin")

ADMIN_METHOD_PREFIX = "/pulse.v1.Admin/"
GATED_METHOD_PREFIX = "/pulse."  # every other pulse.* method needs role read (fail closed)
API_KEY_METADATA = "x-api-key"
ROLES = ("read", "admin")
_RANK = {"read": 0, "admin": 1}
_REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED", "DEADLINE_EXCEEDED")


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys and their roles; empty means "no key configured"."""

    entries: tuple[tuple[bytes, str], ...] = ()

    @classmethod
    def of(cls, roles: Mapping[str, str]) -> ApiKeys:
        for key, role in roles.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
            if not key:
                raise ValueError("an API key must not be empty")
        return cls(tuple((key.encode("utf-8"), role) for key, role in roles.items()))

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def has_admin(self) -> bool:
        return any(role == "admin" for _, role in self.entries)

    def role_of(self, given: bytes) -> str | None:
        """The strongest role of ``given``; compares against every key (constant time each)."""
        found = None
        for key, role in self.entries:
            if hmac.compare_digest(given, key) and (found is None or _RANK[role] > _RANK[found]):
                found = role
        return found


def load_api_keys(path: str = "", admin_api_key: str = "") -> ApiKeys:
    """The keys of ``path`` (``KEY ROLE`` per line, ``#`` comments) plus ``admin_api_key``.

    A bad line raises ``ConfigError`` with ``file:line: what is wrong`` (never the key).
    """
    roles: dict[str, str] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"serving.api_keys_file: cannot read {path!r}: {reason}") from None
        for n, line in enumerate(text.splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            where = f"{path}:{n}"
            if len(fields) != 2:
                raise ConfigError(f"{where}: expected `KEY ROLE`, got {len(fields)} field(s)")
            key, role = fields
            if role not in ROLES:
                raise ConfigError(f"{where}: unknown role {role!r}; roles: {', '.join(ROLES)}")
            if not key.isascii() or not key.isprintable():
                raise ConfigError(f"{where}: the key must be printable ASCII (gRPC metadata)")
            if key in roles:
                raise ConfigError(f"{where}: this key is already listed on an earlier line")
            roles[key] = role
    if admin_api_key:
        roles[admin_api_key] = "admin"
    return ApiKeys.of(roles)


def new_request_id() -> str:
    return str(uuid.uuid4())


def _given_key(metadata: Iterable[tuple[str, Any]] | None) -> bytes | None:
    for key, value in metadata or ():
        if key == API_KEY_METADATA:
            return value.encode("utf-8") if isinstance(value, str) else value
    return None


def check_api_key(keys: ApiKeys, metadata: Iterable[tuple[str, Any]] | None, role: str) -> str | None:
    """The caller's role, or the ``ServingError`` for a call needing ``role`` with ``metadata``.

    Returns None for an open read RPC (no key configured at all).
    """
    if not keys:
        if role == "read":
            return None
        raise PermissionDenied("admin RPCs are disabled: set serving.admin_api_key or serving.api_keys_file")
    given = _given_key(metadata)
    if not given:
        raise Unauthenticated(f"{'admin RPCs need' if role == 'admin' else 'this RPC needs'} an {API_KEY_METADATA}")
    found = keys.role_of(given)
    if found is None:
        raise Unauthenticated(f"the {API_KEY_METADATA} is not a known key")
    if _RANK[found] < _RANK[role]:
        raise PermissionDenied(f"{role} RPCs need a key with role {role}; this key has role {found}")
    return found


def check_deadline(context: grpc.ServicerContext) -> None:
    """DEADLINE_EXCEEDED if the client's deadline has already passed (no work for nobody)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("the deadline passed before the call started")


def _loggable(request_id: str) -> str:
    """The request id as it may appear in a log line (no forged lines, bounded length)."""
    if not request_id:
        return "-"
    if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
        return "<invalid>"
    return request_id


def required_role(method: str) -> str | None:
    """``admin`` for Admin RPCs, ``read`` for every other ``pulse.*`` RPC, None (open) otherwise."""
    if method.startswith(ADMIN_METHOD_PREFIX):
        return "admin"
    if method.startswith(GATED_METHOD_PREFIX):
        return "read"
    return None


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks deadline and API key of every unary ``pulse.*`` RPC; logs Admin outcomes.

    Gated RPCs that are not unary-unary are refused (UNIMPLEMENTED) rather than let
    through unchecked.
    """

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        role = required_role(method)
        if role is None:
            return continuation(handler_call_details)
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return None  # fail closed: an unwrapped gated method must not run
        wrap = self._wrap_admin if role == "admin" else self._wrap_read
        wrapped = grpc.unary_unary_rpc_method_handler(
            wrap(method.rsplit("/", 1)[-1], handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap_read(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]):
        keys = self._keys

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            check_deadline(context)
            check_api_key(keys, context.invocation_metadata(), "read")
            return behavior(request, context)

        return handle

    def _wrap_admin(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]):
        keys = self._keys

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            has_id = "request_id" in request.DESCRIPTOR.fields_by_name
            outcome = "INTERNAL"
            try:
                check_deadline(context)
                check_api_key(keys, context.invocation_metadata(), "admin")
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
