"""Securing the server: API keys with roles, keys-file errors, TLS and mTLS, request size
and deadline limits. Real servers on 127.0.0.1 port 0; certificates are made by the
``openssl`` command line in a tmp dir (skipped where it is missing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import grpc
import grpc._server
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from pulse.config import ConfigError, load_config
from serving import ApiKeys, AuthInterceptor, DeadlineExceeded, create_server, load_api_keys
from serving.aio_server import _InlineContext
from state.store import MemoryStore
from tests.serving.conftest import make_profile, put_profile

READ_KEY = "read-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
LEGACY_ADMIN_KEY = "legacy-admin-key-0123"


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    put_profile(s, make_profile("user:u1"), "anon:a1")
    return s


@pytest.fixture
def keys_file(tmp_path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(f"# who may call\n{READ_KEY} read\n\n{ADMIN_KEY}   admin  # ops\n", encoding="utf-8")
    return path


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def calls(srv, key: str | None):
    """One read and one admin call with ``key`` (None: no metadata)."""
    metadata = () if key is None else (("x-api-key", key),)
    return {
        "read": lambda: srv.stub.GetProfile(pulse_pb2.GetProfileRequest(user_id="u1"), metadata=metadata, timeout=5),
        "recommend": lambda: srv.stub.GetRecommendations(pulse_pb2.GetRecommendationsRequest(user_id="u1", k=3),
                                                         metadata=metadata, timeout=5),
        "admin": lambda: srv.admin.ExportUser(pulse_pb2.ExportUserRequest(user_id="u1"), metadata=metadata, timeout=5),
    }


OK, UNAUTH, DENIED = grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED


# --- the role matrix -----------------------------------------------------------------------

def test_no_keys_configured_reads_are_open_and_admin_disabled(start_server, store):
    srv = start_server(store)
    rpcs = calls(srv, None)
    assert code_of(rpcs["read"]) == OK
    assert code_of(rpcs["recommend"]) == OK
    assert code_of(rpcs["admin"]) == DENIED
    assert code_of(calls(srv, "anything")["admin"]) == DENIED


@pytest.mark.parametrize("key, read, admin", [
    (None, UNAUTH, UNAUTH),
    ("", UNAUTH, UNAUTH),
    ("not-a-key", UNAUTH, UNAUTH),
    (READ_KEY[:-1], UNAUTH, UNAUTH),
    (READ_KEY, OK, DENIED),
    (ADMIN_KEY, OK, OK),
    (LEGACY_ADMIN_KEY, OK, OK),  # serving.admin_api_key still works, as one admin key
])
def test_role_matrix(start_server, store, keys_file, key, read, admin):
    srv = start_server(store, api_keys_file=str(keys_file), admin_api_key=LEGACY_ADMIN_KEY)
    rpcs = calls(srv, key)
    assert (code_of(rpcs["read"]), code_of(rpcs["recommend"]), code_of(rpcs["admin"])) == (read, read, admin)


def test_refusal_messages_say_what_is_missing(start_server, store, keys_file):
    srv = start_server(store, api_keys_file=str(keys_file))
    with pytest.raises(grpc.RpcError) as info:
        calls(srv, READ_KEY)["admin"]()
    assert info.value.details() == "admin RPCs need a key with role admin; this key has role read"
    assert READ_KEY not in (info.value.debug_error_string() or "")
    with pytest.raises(grpc.RpcError) as info:
        calls(srv, None)["read"]()
    assert info.value.details() == "this RPC needs an x-api-key"


def test_health_and_reflection_stay_open(start_server, store, keys_file):
    srv = start_server(store, api_keys_file=str(keys_file))
    health = health_pb2_grpc.HealthStub(srv.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    stub = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"pulse.v1.Pulse", "pulse.v1.Admin"} <= names


def test_keys_are_not_logged(start_server, store, keys_file, caplog):
    srv = start_server(store, api_keys_file=str(keys_file))
    with caplog.at_level("DEBUG"):
        for key in (READ_KEY, ADMIN_KEY, "guessed-key"):
            for call in calls(srv, key).values():
                code_of(call)
    assert not any(k in caplog.text for k in (READ_KEY, ADMIN_KEY, "guessed-key"))


# --- the keys file -------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, what", [
    ("k1 read\nk2\n", 2, "expected `KEY ROLE`, got 1 field(s)"),
    ("k1 read extra\n", 1, "expected `KEY ROLE`, got 3 field(s)"),
    ("# c\n\nk1 owner\n", 3, "unknown role 'owner'; roles: read, admin"),
    ("k1 read\nk1 admin\n", 2, "this key is already listed on an earlier line"),
    ("k\u00e9y read\n", 1, "the key must be printable ASCII (gRPC metadata)"),
])
def test_bad_keys_file_lines_fail_with_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "keys.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_api_keys(str(path))
    assert str(info.value) == f"{path}:{line}: {what}"
    assert "k1" not in str(info.value)  # the key itself is never echoed


def test_keys_file_errors_stop_create_server(tmp_path, store):
    missing = tmp_path / "absent.txt"
    with pytest.raises(ConfigError, match=rf"serving.api_keys_file: cannot read '{missing}'"):
        create_server("127.0.0.1:0", store, api_keys_file=str(missing))


def test_keys_file_roles_and_comments(keys_file):
    keys = load_api_keys(str(keys_file), "legacy")
    assert keys.role_of(READ_KEY.encode()) == "read"
    assert keys.role_of(ADMIN_KEY.encode()) == "admin"
    assert keys.role_of(b"legacy") == "admin"
    assert keys.role_of(b"# who") is None
    assert not load_api_keys() and not ApiKeys().has_admin


# --- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize("env, message", [
    ({"PULSE_SERVING_TLS_CERT_FILE": "c.pem"}, "serving.tls_key_file = '' must be given together"),
    ({"PULSE_SERVING_TLS_KEY_FILE": "k.pem"}, "serving.tls_key_file = 'k.pem' must be given together"),
    ({"PULSE_SERVING_TLS_CLIENT_CA_FILE": "ca.pem"}, "serving.tls_client_ca_file = 'ca.pem' needs"),
    ({"PULSE_SERVING_MAX_REQUEST_BYTES": "10"}, "serving.max_request_bytes = 10 must be in"),
])
def test_config_validation(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_config_reads_the_new_settings():
    cfg = load_config(env={"PULSE_SERVING_API_KEYS_FILE": "/k", "PULSE_SERVING_TLS_CERT_FILE": "/c",
                           "PULSE_SERVING_TLS_KEY_FILE": "/p", "PULSE_SERVING_TLS_CLIENT_CA_FILE": "/ca",
                           "PULSE_SERVING_MAX_REQUEST_BYTES": "2048"}).serving
    assert (cfg.api_keys_file, cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_client_ca_file,
            cfg.max_request_bytes) == ("/k", "/c", "/p", "/ca", 2048)
    assert load_config(env={}).serving.max_request_bytes == 64 * 1024


# --- limits --------------------------------------------------------------------------------

def test_an_oversized_request_is_refused_by_grpc(start_server, store):
    srv = start_server(store, max_request_bytes=4096)
    big = pulse_pb2.GetProfileRequest(user_id="u" * 5000)
    assert code_of(lambda: srv.stub.GetProfile(big, timeout=5)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    roomy = start_server(store, max_request_bytes=64 * 1024)  # same request, under the limit: validated
    assert code_of(lambda: roomy.stub.GetProfile(big, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT


def test_the_default_limit_is_64_kib(start_server, store):
    srv = start_server(store)
    big = pulse_pb2.GetProfileRequest(user_id="u" * (65 * 1024))
    assert code_of(lambda: srv.stub.GetProfile(big, timeout=5)) == grpc.StatusCode.RESOURCE_EXHAUSTED


class FakeContext:
    """Just what the interceptor reads from a ``grpc.ServicerContext``."""

    def __init__(self, remaining: float | None, metadata=()) -> None:
        self.remaining = remaining
        self.metadata = metadata

    def time_remaining(self):
        return self.remaining

    def invocation_metadata(self):
        return self.metadata

    def peer(self):
        return "ipv4:127.0.0.1:1"


def intercepted(method: str, keys: ApiKeys, ran: list):
    """The handler ``AuthInterceptor`` builds for ``method`` over a handler recording its calls."""
    inner = grpc.unary_unary_rpc_method_handler(lambda request, context: ran.append(request) or "done")
    handler = AuthInterceptor(keys).intercept_service(lambda details: inner, SimpleNamespace(method=method))
    return handler.unary_unary


# A real client cannot deterministically deliver a call whose deadline has already passed
# (gRPC core cancels it first or the handler races it), so the interceptor path is called
# directly with a fake context here.
@pytest.mark.parametrize("method", ["/pulse.v1.Pulse/GetProfile", "/pulse.v1.Admin/ExportUser"])
@pytest.mark.parametrize("remaining", [0.0, -1.5])
def test_an_expired_deadline_stops_before_any_work(method, remaining):
    ran: list = []
    handle = intercepted(method, ApiKeys.of({ADMIN_KEY: "admin"}), ran)
    request = pulse_pb2.ExportUserRequest(user_id="u1")
    with pytest.raises(DeadlineExceeded):
        handle(request, FakeContext(remaining, (("x-api-key", ADMIN_KEY),)))
    assert ran == []
    assert handle(request, FakeContext(1.0, (("x-api-key", ADMIN_KEY),))) == "done"
    assert handle(request, FakeContext(None, (("x-api-key", ADMIN_KEY),))) == "done"


def test_an_expired_deadline_maps_to_deadline_exceeded_through_the_server(start_server, store, monkeypatch,
                                                                         server_kind):
    """The whole path: the status interceptor turns the refusal into DEADLINE_EXCEEDED."""
    srv = start_server(store)
    context_class = grpc._server._Context if server_kind == "sync" else _InlineContext
    monkeypatch.setattr(context_class, "time_remaining", lambda self: 0.0)
    assert code_of(lambda: srv.get("u1")) == grpc.StatusCode.DEADLINE_EXCEEDED


# --- TLS and mTLS --------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> SimpleNamespace:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pulse-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}.ext").write_text(ext, encoding="ascii")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=pulse-test-{name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return SimpleNamespace(ca=str(d / "ca.pem"), server_cert=str(d / "server.pem"), server_key=str(d / "server.key"),
                           client_cert=str(d / "client.pem"), client_key=str(d / "client.key"))


@pytest.fixture
def make_server_only(store, server_kind):
    """``make(**kwargs)`` -> the port of a started server; no client (the test picks one)."""
    servers = []

    def make(**kwargs) -> int:
        server, port = create_server("127.0.0.1:0", store, catch_up_interval_ms=5, kind=server_kind, **kwargs)
        server.start()
        servers.append(server)
        return port

    yield make
    for server in servers:
        server.stop(grace=None).wait()


def read_code(channel: grpc.Channel, key: str | None = None) -> grpc.StatusCode:
    metadata = () if key is None else (("x-api-key", key),)
    stub = pulse_pb2_grpc.PulseStub(channel)
    try:
        return code_of(lambda: stub.GetProfile(pulse_pb2.GetProfileRequest(user_id="u1"), metadata=metadata, timeout=5))
    finally:
        channel.close()


def read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def test_tls_client_succeeds_and_plaintext_client_fails(make_server_only, certs):
    port = make_server_only(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key)
    creds = grpc.ssl_channel_credentials(root_certificates=read_bytes(certs.ca))
    assert read_code(grpc.secure_channel(f"127.0.0.1:{port}", creds)) == OK
    assert read_code(grpc.secure_channel(f"localhost:{port}", creds)) == OK
    assert read_code(grpc.insecure_channel(f"127.0.0.1:{port}")) == grpc.StatusCode.UNAVAILABLE


def test_tls_with_api_keys(make_server_only, certs, keys_file):
    port = make_server_only(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key,
                            api_keys_file=str(keys_file))
    creds = grpc.ssl_channel_credentials(root_certificates=read_bytes(certs.ca))
    assert read_code(grpc.secure_channel(f"127.0.0.1:{port}", creds)) == UNAUTH
    assert read_code(grpc.secure_channel(f"127.0.0.1:{port}", creds), READ_KEY) == OK


def test_mtls_requires_a_client_certificate(make_server_only, certs):
    port = make_server_only(tls_cert_file=certs.server_cert, tls_key_file=certs.server_key,
                            tls_client_ca_file=certs.ca)
    no_cert = grpc.ssl_channel_credentials(root_certificates=read_bytes(certs.ca))
    assert read_code(grpc.secure_channel(f"127.0.0.1:{port}", no_cert)) == grpc.StatusCode.UNAVAILABLE
    with_cert = grpc.ssl_channel_credentials(root_certificates=read_bytes(certs.ca),
                                             private_key=read_bytes(certs.client_key),
                                             certificate_chain=read_bytes(certs.client_cert))
    assert read_code(grpc.secure_channel(f"127.0.0.1:{port}", with_cert)) == OK


@pytest.mark.parametrize("setting", ["tls_cert_file", "tls_key_file", "tls_client_ca_file"])
def test_a_missing_tls_file_fails_at_start_naming_setting_and_path(store, certs, tmp_path, setting):
    files = {"tls_cert_file": certs.server_cert, "tls_key_file": certs.server_key, "tls_client_ca_file": certs.ca}
    missing = str(tmp_path / "nope.pem")
    files[setting] = missing
    with pytest.raises(ConfigError) as info:
        create_server("127.0.0.1:0", store, **files)
    assert str(info.value) == f"serving.{setting}: cannot read {missing!r}: No such file or directory"


def test_cert_and_key_go_together(store, certs):
    with pytest.raises(ConfigError, match="must be given together"):
        create_server("127.0.0.1:0", store, tls_cert_file=certs.server_cert)
    with pytest.raises(ConfigError, match="needs serving.tls_cert_file"):
        create_server("127.0.0.1:0", store, tls_client_ca_file=certs.ca)


def test_get_profile_command_sends_the_api_key(tmp_path, capsys):
    from operators.profile import Profile
    from pulse.cli import main
    from serving.server import create_server
    from state.store import MemoryStore, encode_members
    from state.codec import encode_profile

    keys = tmp_path / "keys"
    keys.write_text("reader-key read\n")
    store = MemoryStore()
    store.apply({"user:u1": encode_profile(Profile("user:u1"))}, {"user:u1": "user:u1"},
                {"user:u1": encode_members(["user:u1"])})
    server, port = create_server("127.0.0.1:0", store, api_keys_file=str(keys))
    server.start()
    try:
        assert main(["get-profile", "u1", "--address", f"127.0.0.1:{port}"]) == 2
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert main(["get-profile", "u1", "--address", f"127.0.0.1:{port}", "--api-key", "reader-key"]) == 0
        assert '"profileId": "user:u1"' in capsys.readouterr().out
    finally:
        server.stop(0).wait()
