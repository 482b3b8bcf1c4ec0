"""pulse.v1.Admin without Kafka: the API-key gate, ExportUser, EraseUser's edges, audit log."""

from __future__ import annotations

import json
import logging
import uuid

import grpc
import pytest
from prometheus_client import REGISTRY

from proto.pulse.v1 import pulse_pb2
from serving import ControlUnavailable
from state.export import export_user
from state.store import MemoryStore
from tests.serving.conftest import ADMIN_KEY, make_profile, put_profile

ADMIN_METHODS = [m.name for m in pulse_pb2.DESCRIPTOR.services_by_name["Admin"].methods]
DISABLED = "admin RPCs are disabled: set serving.admin_api_key or serving.api_keys_file"
EMPTY_REQUESTS = {"EraseUser": pulse_pb2.EraseUserRequest(user_id="u1"),
                  "ExportUser": pulse_pb2.ExportUserRequest(user_id="u1"),
                  "ReloadConfiguration": pulse_pb2.ReloadConfigurationRequest()}


class FakePublisher:
    """Stands in for ControlPublisher where Kafka is not the point of the test."""

    def __init__(self, fail: str | None = None) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail = fail

    def erase(self, alias: str, request_id: str) -> None:
        if self.fail:
            raise ControlUnavailable(self.fail)
        self.sent.append((alias, request_id))


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def call_admin(srv, method: str, metadata=()):
    """Any Admin method through a generic stub, so new methods are covered automatically."""
    request = EMPTY_REQUESTS[method]
    rpc = srv.channel.unary_unary(f"/pulse.v1.Admin/{method}", request_serializer=request.SerializeToString,
                                  response_deserializer=lambda b: b)
    return rpc(request, metadata=metadata, timeout=5)


def count(method: str, code: str) -> float:
    return REGISTRY.get_sample_value("pulse_rpc_requests_total", {"method": method, "code": code}) or 0.0


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    put_profile(s, make_profile("user:u1", consent={"marketing": [False, 1_796_205_000_000]}), "anon:a1")
    return s


# --- the API-key gate ------------------------------------------------------------------

def test_every_admin_method_is_in_the_test_table():
    assert sorted(ADMIN_METHODS) == sorted(EMPTY_REQUESTS)


@pytest.mark.parametrize("method", ADMIN_METHODS)
@pytest.mark.parametrize("configured, metadata, code, details", [
    ("", (), grpc.StatusCode.PERMISSION_DENIED, DISABLED),
    ("", (("x-api-key", ADMIN_KEY),), grpc.StatusCode.PERMISSION_DENIED, DISABLED),
    (ADMIN_KEY, (), grpc.StatusCode.UNAUTHENTICATED, "admin RPCs need an x-api-key"),
    (ADMIN_KEY, (("x-api-key", ""),), grpc.StatusCode.UNAUTHENTICATED, "admin RPCs need an x-api-key"),
    (ADMIN_KEY, (("x-api-key", ADMIN_KEY + "x"),), grpc.StatusCode.UNAUTHENTICATED,
     "the x-api-key is not a known key"),
    (ADMIN_KEY, (("x-api-key", ADMIN_KEY[:-1]),), grpc.StatusCode.UNAUTHENTICATED,
     "the x-api-key is not a known key"),
    (ADMIN_KEY, (("authorization", ADMIN_KEY),), grpc.StatusCode.UNAUTHENTICATED, "admin RPCs need an x-api-key"),
])
def test_admin_auth_matrix(start_server, store, method, configured, metadata, code, details):
    srv = start_server(store, admin_api_key=configured, control=FakePublisher())
    before = count(method, code.name)
    err = rpc_error(lambda: call_admin(srv, method, metadata))
    assert (err.code(), err.details()) == (code, details)
    assert count(method, code.name) == before + 1  # refusals are counted like any outcome
    assert ADMIN_KEY not in (err.debug_error_string() or "")


@pytest.mark.parametrize("method", ADMIN_METHODS)
def test_the_right_key_passes(start_server, store, method):
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=FakePublisher())
    before = count(method, "OK")
    call_admin(srv, method, (("x-api-key", ADMIN_KEY),))  # an empty answer is a valid one
    assert count(method, "OK") == before + 1


def test_once_a_key_is_configured_pulse_rpcs_need_one_too(start_server, store):
    srv = start_server(store, admin_api_key=ADMIN_KEY)
    assert rpc_error(lambda: srv.get("u1")).code() == grpc.StatusCode.UNAUTHENTICATED
    reply = srv.stub.GetProfile(pulse_pb2.GetProfileRequest(user_id="u1"), metadata=(("x-api-key", ADMIN_KEY),))
    assert reply.profile.profile_id == "user:u1"


def test_admin_calls_are_logged_without_keys_or_user_ids(start_server, store, caplog):
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=FakePublisher())
    with caplog.at_level(logging.INFO, logger="serving.admin"):
        srv.erase("u1", request_id="ticket-7")
        rpc_error(lambda: srv.erase("u1", request_id="ticket-8", key="guess"))
        rpc_error(lambda: srv.export("nobody"))
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.admin"]
    assert len(lines) == 3, lines
    assert "admin EraseUser request_id=ticket-7 " in lines[0] and lines[0].endswith("outcome=OK")
    assert "admin EraseUser request_id=ticket-8 " in lines[1] and lines[1].endswith("outcome=UNAUTHENTICATED")
    assert "admin ExportUser request_id=- " in lines[2] and lines[2].endswith("outcome=NOT_FOUND")
    assert [r.levelname for r in caplog.records if r.name == "serving.admin"] == ["INFO", "WARNING", "INFO"]
    text = caplog.text
    assert ADMIN_KEY not in text and "guess" not in text
    assert "u1" not in text and "nobody" not in text


def test_a_forged_request_id_cannot_forge_log_lines(start_server, store, caplog):
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=FakePublisher())
    with caplog.at_level(logging.INFO, logger="serving.admin"):
        err = rpc_error(lambda: srv.erase("u1", request_id="x\nadmin EraseUser outcome=OK"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id=<invalid>" in caplog.text and "\n" not in caplog.records[-1].getMessage()


# --- ExportUser -------------------------------------------------------------------------

@pytest.mark.parametrize("user_id", ["u1", "user:u1", "anon:a1"])
def test_export_returns_the_stored_document(start_server, store, user_id):
    srv = start_server(store, admin_api_key=ADMIN_KEY)
    reply = srv.export(user_id)
    assert reply.profile_id == "user:u1"
    document = json.loads(reply.document_json)
    assert document == json.loads(json.dumps(export_user(store, user_id)))
    assert document["aliases"] == ["anon:a1", "user:u1"]
    assert document["profile"]["id"] == "user:u1"
    assert document["profile"]["consent"] == {"marketing": [False, 1_796_205_000_000]}
    assert set(document["notes"]) >= {"email"}


def test_export_of_an_unknown_user_is_not_found(start_server, store):
    srv = start_server(store, admin_api_key=ADMIN_KEY)
    err = rpc_error(lambda: srv.export("nobody"))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "no profile for user_id 'nobody'")


def test_export_validates_the_user_id(start_server, store):
    srv = start_server(store, admin_api_key=ADMIN_KEY)
    err = rpc_error(lambda: srv.export(" "))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "user_id is required")


def test_export_before_the_store_exists_is_unavailable(store_dir, make_reader, start_server):
    srv = start_server(make_reader(store_dir), admin_api_key=ADMIN_KEY)
    assert rpc_error(lambda: srv.export("u1")).code() == grpc.StatusCode.UNAVAILABLE


# --- EraseUser (the Kafka side is in test_control.py) ----------------------------------

def test_erase_without_kafka_is_a_failed_precondition(start_server, store):
    srv = start_server(store, admin_api_key=ADMIN_KEY)  # as in `pulse demo`: no publisher
    err = rpc_error(lambda: srv.erase("u1"))
    assert (err.code(), err.details()) == (grpc.StatusCode.FAILED_PRECONDITION,
                                           "erase needs Kafka: run `pulse run` + `pulse serve`")


def test_erase_publishes_the_typed_alias_and_echoes_the_request_id(start_server, store):
    control = FakePublisher()
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=control)
    reply = srv.erase("u1", request_id="ticket-1")
    assert (reply.request_id, reply.profile_id, reply.accepted) == ("ticket-1", "user:u1", True)
    reply = srv.erase("anon:a1", request_id="ticket-2")
    assert (reply.request_id, reply.profile_id) == ("ticket-2", "user:u1")
    assert control.sent == [("user:u1", "ticket-1"), ("anon:a1", "ticket-2")]


def test_erase_generates_a_request_id_when_empty(start_server, store):
    control = FakePublisher()
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=control)
    reply = srv.erase("u1")
    assert str(uuid.UUID(reply.request_id)) == reply.request_id
    assert control.sent == [("user:u1", reply.request_id)]
    assert srv.erase("u1").request_id != reply.request_id


def test_erase_of_an_unknown_user_is_still_published(start_server, store):
    control = FakePublisher()
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=control)
    reply = srv.erase("later", request_id="r")
    assert (reply.profile_id, reply.accepted) == ("", True)
    assert control.sent == [("user:later", "r")]


def test_erase_before_the_store_exists_is_published(store_dir, make_reader, start_server):
    control = FakePublisher()
    srv = start_server(make_reader(store_dir), admin_api_key=ADMIN_KEY, control=control)
    assert srv.erase("u1", request_id="r").profile_id == ""
    assert control.sent == [("user:u1", "r")]


@pytest.mark.parametrize("request_id, details", [
    ("r" * 129, "request_id is 129 characters long; the limit is 128"),
    ("   ", "request_id must be printable characters, not empty or only whitespace"),
    ("a\tb", "request_id must be printable characters, not empty or only whitespace"),
])
def test_erase_validates_the_request_id(start_server, store, request_id, details):
    control = FakePublisher()
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=control)
    err = rpc_error(lambda: srv.erase("u1", request_id=request_id))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, details)
    assert control.sent == []


def test_a_publisher_failure_is_unavailable(start_server, store):
    srv = start_server(store, admin_api_key=ADMIN_KEY, control=FakePublisher(fail="no ack from Kafka"))
    err = rpc_error(lambda: srv.erase("u1", request_id="r"))
    assert (err.code(), err.details()) == (grpc.StatusCode.UNAVAILABLE, "no ack from Kafka")
