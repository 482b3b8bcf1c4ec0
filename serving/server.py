"""The Pulse gRPC server: thin servicers over a profile reader, plus health and reflection.

Services: ``pulse.v1.Pulse`` (GetProfile, GetRecommendations, GetSegments, ListSegmentMembers) and ``pulse.v1.Admin``
(EraseUser, ExportUser). API keys with roles, deadlines and the audit log are in
``serving.auth``; TLS/mTLS credentials in ``serving.tls``. Requests larger than
``max_request_bytes`` are refused by gRPC itself (RESOURCE_EXHAUSTED).

``create_server(address, reader, kind=)`` builds a server that is not started yet (tests
bind port 0): ``"sync"``, grpc's thread-pool server, or ``"aio"`` (``serving.aio_server``,
the default of ``pulse serve``), with the same services and interceptors; ``serve(config)``
is the process entry point behind ``pulse serve``.

While the server runs, a background thread calls ``reader.catch_up()`` every
``catch_up_interval_ms`` so reads follow the writer, and rebuilds the item index used by
GetRecommendations every ``items_refresh_ms`` when the store changed (``serving.catalog``);
the health service reports SERVING only once the reader has opened the store.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from operators.profile import DEFAULT_POLICY, Policy
from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from pulse.config import PulseConfig
from serving.admin import ADMIN_SERVICE_NAME, AdminServicer
from serving.aio_server import AioPulseServer
from serving.auth import AuthInterceptor, load_api_keys
from serving.control import ControlPublisher
from serving.catalog import LiveItemIndex
from serving.errors import StatusInterceptor, UnknownProfile
from serving.lookup import check_optional_user_id, check_user_id, find_profile, read_store
from serving.metrics import STORE_CATCH_UP, STORE_READY, start_metrics_endpoint
from serving.profiles import write_profile
from serving.decisions import (ExposureSink, KafkaExposureSink, LiveConfig, decide, exposure, now_ms,
                               recommendation_assignment)
from serving.results import experiment_results
from serving.segments import list_members, write_segments
from serving.tls import bind_port, server_credentials
from serving.recommend import DEFAULT_MAX_PER_CATEGORY, recommend
from serving.recommendations import params_from_request, write_recommendations
from state.store import ProfileReader, RocksReader, StoreOptions

log = logging.getLogger(__name__)

SERVICE_NAME = pulse_pb2.DESCRIPTOR.services_by_name["Pulse"].full_name  # "pulse.v1.Pulse"
SERVICE_NAMES = (SERVICE_NAME, ADMIN_SERVICE_NAME)
DEFAULT_GRACE_SECONDS = 5.0
DEFAULT_MAX_K = 100
DEFAULT_ITEMS_REFRESH_MS = 2000
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
SERVER_KINDS = ("aio", "sync")


class PulseServicer(pulse_pb2_grpc.PulseServicer):
    """Validates, reads, converts. Errors are raised as ``ServingError``s (see ``errors``).

    ``items`` is the live item index for GetRecommendations (``create_server`` shares
    it with the catch-up loop); by default one is built from ``reader`` on first use.
    """

    def __init__(self, reader: ProfileReader, policy: Policy = DEFAULT_POLICY, *,
                 items: LiveItemIndex | None = None, max_k: int = DEFAULT_MAX_K,
                 max_per_category: int = DEFAULT_MAX_PER_CATEGORY, config: LiveConfig | None = None,
                 exposures: ExposureSink | None = None) -> None:
        self._reader = reader
        self._policy = policy
        self._items = items if items is not None else LiveItemIndex(reader)
        self._max_k = max_k
        self._max_per_category = max_per_category
        self._config = config if config is not None else LiveConfig()
        self._exposures = exposures if exposures is not None else ExposureSink()

    def GetProfile(self, request: pulse_pb2.GetProfileRequest, context: grpc.ServicerContext):
        user_id = request.user_id
        check_user_id(user_id)
        response = read_store(lambda: self._read(user_id))
        if response is None:
            raise UnknownProfile(user_id)
        return response

    def _read(self, user_id: str) -> pulse_pb2.GetProfileResponse | None:
        found = find_profile(self._reader, user_id)
        if found is None:
            return None
        profile_id, profile = found
        response = pulse_pb2.GetProfileResponse()
        write_profile(response.profile, profile, aliases=self._reader.members_of(profile_id) or (profile_id,),
                      policy=self._policy)
        return response

    def GetSegments(self, request: pulse_pb2.GetSegmentsRequest, context: grpc.ServicerContext):
        user_id = request.user_id
        check_user_id(user_id)
        found = read_store(lambda: find_profile(self._reader, user_id))
        if found is None:
            raise UnknownProfile(user_id)
        profile_id, profile = found
        return write_segments(pulse_pb2.GetSegmentsResponse(), profile_id, profile.segments)

    def ListSegmentMembers(self, request: pulse_pb2.ListSegmentMembersRequest, context: grpc.ServicerContext):
        return read_store(lambda: list_members(self._reader, request))

    def GetRecommendations(self, request: pulse_pb2.GetRecommendationsRequest, context: grpc.ServicerContext):
        user_id = request.user_id
        check_optional_user_id(user_id)
        params = params_from_request(request, max_k=self._max_k, max_per_category=self._max_per_category)
        index = self._items.current()
        found = read_store(lambda: find_profile(self._reader, user_id)) if user_id else None
        now = now_ms()
        profile = None if found is None else found[1]
        assigned = recommendation_assignment(self._config.experiments, user_id, found, now)
        preferred = None
        if assigned is not None:
            if assigned[1].control or assigned[1].strategy == "popular":
                profile = None  # the holdout: exactly the non-personal answer
            else:
                preferred = assigned[1].strategy
        result = recommend(index, profile, params, now, self._policy, preferred)
        response = write_recommendations(pulse_pb2.GetRecommendationsResponse(), result)
        if assigned is not None:
            exp, variant, unit = assigned
            response.experiment.experiment_id = exp.id
            response.experiment.variant_id = variant.id
            response.experiment.control = variant.control
            self._exposures.publish(exposure(exp, variant, unit, None if found is None else found[0],
                                             "recommendations", response.strategy, "", now))
        return response

    def GetExperimentResults(self, request: pulse_pb2.GetExperimentResultsRequest, context: grpc.ServicerContext):
        return experiment_results(self._reader, self._config, request.experiment_id)

    def Decide(self, request: pulse_pb2.DecideRequest, context: grpc.ServicerContext):
        user_id = request.user_id
        check_optional_user_id(user_id)
        found = read_store(lambda: find_profile(self._reader, user_id)) if user_id else None
        return decide(request, found, self._config, self._exposures, self._policy, now_ms())


class _CatchUp:
    """Calls ``reader.catch_up()`` on a timer and keeps health and readiness in step."""

    def __init__(self, reader: Any, health_servicer: health.HealthServicer, interval_s: float,
                 items: LiveItemIndex | None = None) -> None:
        self._reader = reader
        self._health = health_servicer
        self._interval = interval_s
        self._items = items
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready: bool | None = None
        self._last_error: str | None = None

    def _reader_ready(self) -> bool:
        return bool(getattr(self._reader, "ready", True))  # MemoryStore has no `ready`: always ready

    def publish(self) -> bool:
        """Set health and the readiness gauge from the reader's state (only on change)."""
        ready = self._reader_ready()
        if ready != self._ready:
            self._ready = ready
            status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", *SERVICE_NAMES):
                self._health.set(name, status)
            STORE_READY.set(1 if ready else 0)
            if ready:
                log.info("profile store %s is open; serving", getattr(self._reader, "path", "(in memory)"))
        return ready

    def run_once(self) -> None:
        start = time.perf_counter()
        changed = False
        try:
            changed = bool(self._reader.catch_up())
        except Exception as exc:  # keep serving what we have; say so once per distinct error
            text = f"{type(exc).__name__}: {exc}"
            if text != self._last_error:
                self._last_error = text
                log.warning("catching up with the profile store failed (will retry): %s", text)
        else:
            STORE_CATCH_UP.observe(time.perf_counter() - start)
            if self._last_error is not None:
                log.info("catching up with the profile store works again")
                self._last_error = None
        if self._items is not None:
            # Before publishing: health turns SERVING with the first item index in place.
            self._items.refresh(changed, self._reader_ready())
        self.publish()

    def _run(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self._interval):
                return

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pulse-catch-up", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


class PulseServer(grpc.Server):
    """A ``grpc.Server`` that also runs the store catch-up loop between start and stop."""

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer, catch_up: _CatchUp) -> None:
        self._server = server
        self._health = health_servicer
        self._catch_up = catch_up

    def add_generic_rpc_handlers(self, generic_rpc_handlers):
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name, method_handlers):
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        self._server.start()
        self._catch_up.start()

    def stop(self, grace: float | None) -> threading.Event:
        """Report NOT_SERVING, stop catching up, then stop gRPC (in-flight calls get ``grace`` s)."""
        self._catch_up.stop()
        self._health.enter_graceful_shutdown()
        return self._server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._server.wait_for_termination(timeout)


def create_server(
    address: str,
    reader: ProfileReader,
    *,
    max_workers: int = 2,
    catch_up_interval_ms: int = 20,
    control: ControlPublisher | None = None,
    default_consent: bool = True,
    admin_api_key: str = "",
    max_k: int = DEFAULT_MAX_K,
    max_per_category: int = DEFAULT_MAX_PER_CATEGORY,
    items_refresh_ms: int = DEFAULT_ITEMS_REFRESH_MS,
    api_keys_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
    tls_client_ca_file: str = "",
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    content_file: str = "",
    experiments_file: str = "",
    segments_file: str = "",
    exposures: ExposureSink | None = None,
    kind: str = "sync",
) -> tuple[PulseServer | AioPulseServer, int]:
    """Build (not start) a server for ``reader`` bound to ``address`` only; returns it and its port.

    ``address`` is ``host:port``; port 0 picks a free port. Health reports NOT_SERVING
    until the reader has opened the store. ``default_consent`` is the consent regime
    for purposes a user never decided on (True: opt-out). Admin RPCs need
    ``admin_api_key`` (empty: disabled); EraseUser needs ``control`` (None: no Kafka,
    FAILED_PRECONDITION). The caller owns ``control`` and closes it after the server.
    GetRecommendations accepts ``k`` up to ``max_k``, returns at most
    ``max_per_category`` items of a category, and ranks an item index rebuilt every
    ``items_refresh_ms`` when the store changed.

    Keys: ``api_keys_file`` (``KEY ROLE`` lines) plus ``admin_api_key``; with none, Pulse
    RPCs are open and Admin RPCs disabled, with any, every Pulse and Admin RPC needs one
    (``serving.auth``). ``tls_cert_file`` + ``tls_key_file`` serve TLS, plus
    ``tls_client_ca_file`` mTLS (``serving.tls``). Bad key or TLS files raise
    ``ConfigError`` naming the setting and the file. Requests above ``max_request_bytes``
    are refused with RESOURCE_EXHAUSTED.

    Decide chooses from the catalog in ``content_file`` (none: FAILED_PRECONDITION);
    experiments come from ``experiments_file``; both are checked against the segment ids
    of ``segments_file`` when given, and a bad file raises its ``ContentError`` /
    ``ExperimentError`` / ``SegmentError`` here. Exposures go to ``exposures`` (the
    caller closes it).

    ``kind``: ``"sync"`` (a thread pool of ``max_workers``) or ``"aio"`` (``grpc.aio``, every
    Pulse RPC in one event-loop thread: ``serving.aio_server``); both have the same
    services, keys, TLS, limits and health, and the same ``start``/``stop``.
    """
    if kind not in SERVER_KINDS:
        raise ValueError(f"unknown server kind {kind!r}; kinds: {', '.join(SERVER_KINDS)}")
    for name, value in (("max_workers", max_workers), ("catch_up_interval_ms", catch_up_interval_ms),
                        ("max_k", max_k), ("max_per_category", max_per_category),
                        ("items_refresh_ms", items_refresh_ms), ("max_request_bytes", max_request_bytes)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    keys = load_api_keys(api_keys_file, admin_api_key)
    config = LiveConfig(content_file, experiments_file, segments_file)
    credentials = server_credentials(tls_cert_file, tls_key_file, tls_client_ca_file)
    streaming = [f"{service.name}.{m.name}" for service in pulse_pb2.DESCRIPTOR.services_by_name.values()
                 for m in service.methods if m.client_streaming or m.server_streaming]
    if streaming:  # StatusInterceptor and AuthInterceptor wrap unary RPCs only
        raise NotImplementedError(f"streaming RPCs {streaming} need wrappers in serving.errors and serving.auth")

    # Order matters: StatusInterceptor wraps what AuthInterceptor returns, so auth
    # failures become status codes and metrics like any other error.
    interceptors = [StatusInterceptor(), AuthInterceptor(keys)]
    # Fail loudly if the port is taken instead of silently sharing it (Linux default).
    options = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", max_request_bytes)]
    items = LiveItemIndex(reader, items_refresh_ms)
    servicer = PulseServicer(reader, Policy(default_consent=default_consent), items=items, max_k=max_k,
                             max_per_category=max_per_category, config=config, exposures=exposures)
    admin = AdminServicer(reader, control, config)
    if kind == "aio":
        aio_server = AioPulseServer(interceptors, options, servicer, admin, SERVICE_NAMES)
        port = aio_server.bind(address, credentials)
        catch_up = _CatchUp(reader, aio_server.health, catch_up_interval_ms / 1000, items)
        catch_up.publish()
        aio_server.attach(catch_up)
        return aio_server, port
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pulse-grpc"),
                         interceptors=interceptors, options=options)
    pulse_pb2_grpc.add_PulseServicer_to_server(servicer, server)
    pulse_pb2_grpc.add_AdminServicer_to_server(admin, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = bind_port(server, address, credentials)
    catch_up = _CatchUp(reader, health_servicer, catch_up_interval_ms / 1000, items)
    catch_up.publish()
    return PulseServer(server, health_servicer, catch_up), port


def _transport(sc) -> str:
    if sc.tls_client_ca_file:
        return "mTLS"
    return "TLS" if sc.tls_cert_file else "plaintext"


def _bound_address(address: str, port: int) -> str:
    return f"{address.rsplit(':', 1)[0]}:{port}"


def serve(
    config: PulseConfig,
    secondary_dir: str | os.PathLike | None = None,
    *,
    grace: float = DEFAULT_GRACE_SECONDS,
    stop: threading.Event | None = None,
    from_changelog: bool = False,
) -> None:
    """Serve ``config.store_dir`` until SIGINT/SIGTERM (or ``stop`` is set), then stop gracefully.

    The reader's secondary directory defaults to ``<state.dir>/readers/<pid>`` and is
    removed on exit; a directory passed in is kept.
    """
    own_secondary = secondary_dir is None
    secondary = Path(config.state.dir) / "readers" / str(os.getpid()) if own_secondary else Path(secondary_dir)
    stop = stop if stop is not None else threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        _serve_until(config, secondary, own_secondary, grace, stop, from_changelog)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve_until(config: PulseConfig, secondary: Path, own_secondary: bool, grace: float,
                 stop: threading.Event, from_changelog: bool = False) -> None:
    sc = config.serving
    k = config.kafka
    # The producer connects on the first erase only; without an admin key nothing can erase.
    keys = load_api_keys(sc.api_keys_file, sc.admin_api_key)  # fail before opening anything
    control = ControlPublisher(k.bootstrap_servers, k.control_topic, k.producer) if keys.has_admin else None
    exposures = (KafkaExposureSink(k.bootstrap_servers, k.exposures_topic, k.producer) if config.experiments.path
                 else None)
    if from_changelog:
        from serving.replica import ChangelogReplica

        replica_dir = sc.replica_dir or str(Path(config.state.dir) / "replica")
        reader = ChangelogReplica(replica_dir, k.bootstrap_servers, k.changelog_topic, dict(k.consumer),
                                  store_options=StoreOptions(write_buffer_mb=config.state.write_buffer_mb))
        log.info("serving a replica of the changelog %r in %s", k.changelog_topic, replica_dir)
    else:
        reader = RocksReader(config.store_dir, secondary)
    try:
        metrics = start_metrics_endpoint(sc.metrics_host, sc.metrics_port)
        try:
            server, port = create_server(sc.grpc_address, reader, kind=sc.server, max_workers=sc.max_workers,
                                         catch_up_interval_ms=sc.catch_up_interval_ms, control=control,
                                         default_consent=config.privacy.default_consent == "opt-out",
                                         admin_api_key=sc.admin_api_key, max_k=sc.max_k,
                                         max_per_category=sc.max_per_category,
                                         items_refresh_ms=sc.items_refresh_ms, api_keys_file=sc.api_keys_file,
                                         tls_cert_file=sc.tls_cert_file, tls_key_file=sc.tls_key_file,
                                         tls_client_ca_file=sc.tls_client_ca_file,
                                         max_request_bytes=sc.max_request_bytes, content_file=config.content.path,
                                         experiments_file=config.experiments.path,
                                         segments_file=config.segments.path, exposures=exposures)
            server.start()
            address = _bound_address(sc.grpc_address, port)
            if not reader.ready:
                log.info("waiting for the processor to create the profile store at %s", config.store_dir)
            log.info("serving %s on %s (%s server, store %s, %s); metrics on %s; %s; admin RPCs %s", SERVICE_NAME,
                     address, sc.server, config.store_dir, _transport(sc), metrics.url,
                     "API keys required" if keys else "no API keys: Pulse RPCs are open",
                     "enabled" if keys.has_admin else "disabled")
            print(f"pulse serving {SERVICE_NAME} on {address}; metrics on {metrics.url}", flush=True)
            try:
                while not stop.wait(1.0):
                    pass
            finally:
                server.stop(grace).wait()
                log.info("gRPC server stopped")
        finally:
            metrics.stop()
    finally:
        if control is not None:
            control.close()
        if exposures is not None:
            exposures.close()
        reader.close()
        if own_secondary:
            shutil.rmtree(secondary, ignore_errors=True)
