"""``pulse.v1.Admin``: privacy requests (erase, export) and configuration reload. Thin:
validate, delegate, answer.

Authentication, request ids and the audit log line are in ``serving.auth`` (applied to
every Admin RPC by its interceptor), status codes in ``serving.errors``. Erasure is
executed by the processor: this servicer only publishes the request (``serving.control``).
"""

from __future__ import annotations

import json

import grpc

from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from serving.auth import new_request_id
from serving.control import ControlPublisher
from serving.errors import FailedPrecondition, UnknownProfile
from serving.lookup import check_request_id, check_user_id, read_store, typed_alias
from state.export import export_user, resolve
from state.store import ProfileReader, StoreNotReady

ADMIN_SERVICE_NAME = pulse_pb2.DESCRIPTOR.services_by_name["Admin"].full_name  # "pulse.v1.Admin"
NO_KAFKA_MESSAGE = "erase needs Kafka: run `pulse run` + `pulse serve`"


class AdminServicer(pulse_pb2_grpc.AdminServicer):
    """Erase and export over a profile reader; ``control`` is None when there is no Kafka."""

    def __init__(self, reader: ProfileReader, control: ControlPublisher | None, config=None) -> None:
        self._reader = reader
        self._control = control
        self._config = config  # serving.decisions.LiveConfig

    def ReloadConfiguration(self, request: pulse_pb2.ReloadConfigurationRequest, context: grpc.ServicerContext):
        if self._config is None:
            raise FailedPrecondition("this server has no reloadable configuration")
        modules, experiments = self._config.reload()
        return pulse_pb2.ReloadConfigurationResponse(modules=modules, experiments=experiments)

    def EraseUser(self, request: pulse_pb2.EraseUserRequest, context: grpc.ServicerContext):
        user = request.user_id
        check_user_id(user)
        request_id = request.request_id or new_request_id()  # AdminInterceptor fills it normally
        check_request_id(request_id)
        if self._control is None:
            raise FailedPrecondition(NO_KAFKA_MESSAGE)
        try:
            # Only informative: the processor resolves the alias again when it erases.
            profile_id = resolve(self._reader, user)
        except StoreNotReady:
            profile_id = None
        self._control.erase(typed_alias(user), request_id)
        return pulse_pb2.EraseUserResponse(request_id=request_id, profile_id=profile_id or "", accepted=True)

    def ExportUser(self, request: pulse_pb2.ExportUserRequest, context: grpc.ServicerContext):
        user = request.user_id
        check_user_id(user)
        document = read_store(lambda: export_user(self._reader, user))
        if document is None:
            raise UnknownProfile(user)
        return pulse_pb2.ExportUserResponse(profile_id=document["profile_id"], document_json=json.dumps(document))
