"""gRPC serving: the Pulse and Admin servicers, their server factory, errors, auth, metrics,
and request-time recommendations."""

from serving.admin import ADMIN_SERVICE_NAME, AdminServicer
from serving.auth import API_KEY_METADATA, ROLES, ApiKeys, AuthInterceptor, check_api_key, load_api_keys
from serving.catalog import LiveItemIndex
from serving.control import ControlPublisher, erase_record
from serving.errors import (
    ControlUnavailable,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ServingError,
    StatusInterceptor,
    StoreUnavailable,
    Unauthenticated,
    UnknownProfile,
)
from serving.lookup import MAX_USER_ID_CHARS, check_optional_user_id, check_user_id, find_profile, typed_alias
from serving.metrics import MetricsEndpoint, start_metrics_endpoint
from serving.profiles import profile_to_proto, write_profile
from serving.item_index import EMPTY_INDEX, ItemIndex, build_index
from serving.recommend import (
    PersonalStrategy,
    PopularStrategy,
    Recommendations,
    Recommended,
    RecommendParams,
    Strategy,
    choose_strategy,
    recommend,
)
from serving.recommendations import MAX_EXCLUDED_ITEMS, params_from_request, write_recommendations
from serving.server import SERVICE_NAME, SERVICE_NAMES, PulseServer, PulseServicer, create_server, serve
from serving.tls import server_credentials

__all__ = [
    "ADMIN_SERVICE_NAME",
    "API_KEY_METADATA",
    "EMPTY_INDEX",
    "MAX_EXCLUDED_ITEMS",
    "MAX_USER_ID_CHARS",
    "SERVICE_NAME",
    "SERVICE_NAMES",
    "ROLES",
    "AdminServicer",
    "ApiKeys",
    "AuthInterceptor",
    "ControlPublisher",
    "ControlUnavailable",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "ItemIndex",
    "LiveItemIndex",
    "MetricsEndpoint",
    "PermissionDenied",
    "PersonalStrategy",
    "PopularStrategy",
    "PulseServer",
    "PulseServicer",
    "RecommendParams",
    "Recommendations",
    "Recommended",
    "ServingError",
    "StatusInterceptor",
    "StoreUnavailable",
    "Strategy",
    "Unauthenticated",
    "UnknownProfile",
    "build_index",
    "check_api_key",
    "check_optional_user_id",
    "check_user_id",
    "choose_strategy",
    "create_server",
    "erase_record",
    "find_profile",
    "load_api_keys",
    "params_from_request",
    "profile_to_proto",
    "recommend",
    "serve",
    "server_credentials",
    "start_metrics_endpoint",
    "typed_alias",
    "write_profile",
    "write_recommendations",
]
