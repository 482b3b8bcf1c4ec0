"""Server credentials for TLS and mutual TLS, from PEM files named in the configuration.

* no certificate -> None: the server listens in plaintext (fine on loopback);
* ``tls_cert_file`` + ``tls_key_file`` -> TLS;
* plus ``tls_client_ca_file`` -> mTLS: clients must present a certificate signed by it.

A missing or unreadable file fails at start with the setting and the path:

>>> server_credentials("/nonexistent/cert.pem", "/nonexistent/key.pem")
Traceback (most recent call last):
pulse.config.ConfigError: serving.tls_cert_file: cannot read '/nonexistent/cert.pem': No such file or directory
>>> server_credentials() is None
True
"""

from __future__ import annotations

from pathlib import Path

import grpc

from pulse.config import ConfigError


def _read(setting: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"serving.{setting}: cannot read {path!r}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"serving.{setting}: {path!r} is not a PEM file")
    return data


def server_credentials(cert_file: str = "", key_file: str = "",
                       client_ca_file: str = "") -> grpc.ServerCredentials | None:
    """``grpc.ssl_server_credentials`` for the files given, or None for plaintext."""
    if bool(cert_file) != bool(key_file):
        raise ConfigError("serving.tls_cert_file and serving.tls_key_file must be given together")
    if client_ca_file and not cert_file:
        raise ConfigError("serving.tls_client_ca_file needs serving.tls_cert_file and serving.tls_key_file")
    if not cert_file:
        return None
    cert = _read("tls_cert_file", cert_file)
    key = _read("tls_key_file", key_file)
    client_ca = _read("tls_client_ca_file", client_ca_file) if client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def bind_port(server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Listen on ``address`` with ``server`` (sync or aio), over TLS when ``credentials``
    are given; the port. Raises ``OSError`` naming the address when it cannot bind."""
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot bind the gRPC server to {address!r}: {exc}") from exc
    if port == 0:  # older grpcio reports failure this way
        raise OSError(f"cannot bind the gRPC server to {address!r}")
    return port
