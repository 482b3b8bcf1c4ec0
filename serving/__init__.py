"""gRPC serving: the Pulse servicer, its server factory, errors, metrics."""

from serving.errors import InvalidArgument, ServingError, StatusInterceptor, StoreUnavailable, UnknownProfile
from serving.metrics import MetricsEndpoint, start_metrics_endpoint
from serving.profiles import profile_to_proto, write_profile
from serving.server import MAX_USER_ID_CHARS, SERVICE_NAME, PulseServer, PulseServicer, create_server, serve

__all__ = [
    "MAX_USER_ID_CHARS",
    "SERVICE_NAME",
    "InvalidArgument",
    "MetricsEndpoint",
    "PulseServer",
    "PulseServicer",
    "ServingError",
    "StatusInterceptor",
    "StoreUnavailable",
    "UnknownProfile",
    "create_server",
    "profile_to_proto",
    "serve",
    "start_metrics_endpoint",
    "write_profile",
]
