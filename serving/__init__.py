"""gRPC serving: the Pulse and Admin servicers, their server factory, errors, auth, metrics."""

from serving.admin import ADMIN_SERVICE_NAME, AdminServicer
from serving.auth import API_KEY_METADATA, AdminInterceptor, check_api_key
from serving.control import ControlPublisher, erase_record
from serving.errors import (
    ControlUnavailable,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ServingError,
    StatusInterceptor,
    StoreUnavailable,
    Unauthenticated,
    UnknownProfile,
)
from serving.lookup import MAX_USER_ID_CHARS, check_user_id, typed_alias
from serving.metrics import MetricsEndpoint, start_metrics_endpoint
from serving.profiles import profile_to_proto, write_profile
from serving.server import SERVICE_NAME, SERVICE_NAMES, PulseServer, PulseServicer, create_server, serve

__all__ = [
    "ADMIN_SERVICE_NAME",
    "API_KEY_METADATA",
    "MAX_USER_ID_CHARS",
    "SERVICE_NAME",
    "SERVICE_NAMES",
    "AdminInterceptor",
    "AdminServicer",
    "ControlPublisher",
    "ControlUnavailable",
    "FailedPrecondition",
    "InvalidArgument",
    "MetricsEndpoint",
    "PermissionDenied",
    "PulseServer",
    "PulseServicer",
    "ServingError",
    "StatusInterceptor",
    "StoreUnavailable",
    "Unauthenticated",
    "UnknownProfile",
    "check_api_key",
    "check_user_id",
    "create_server",
    "erase_record",
    "profile_to_proto",
    "serve",
    "start_metrics_endpoint",
    "typed_alias",
    "write_profile",
]
