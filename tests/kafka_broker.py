"""A real Apache Kafka 4.x broker (KRaft, single node, loopback only) for tests.

The broker jars are fetched once from Maven Central with ``mvn`` (see
``tests/kafka/pom.xml``) into a cache directory, then every :class:`KafkaBroker`
gets a fresh run directory with its own config, storage and logs, and runs as a
plain ``java`` child process. No Docker and no Kafka distribution are needed,
only Java 17+ and Maven.

Environment:

``PULSE_TEST_KAFKA_BOOTSTRAP``
    When set (``host:port[,host:port...]``), tests use that external cluster
    instead of starting a broker (see ``tests/conftest.py``).
``PULSE_KAFKA_CACHE``
    Directory holding the broker jars (default ``<repo>/.cache/kafka/libs``).

Command line (from the repo root)::

    python -m tests.kafka_broker fetch   # only fetch the jars (CI install step)
    python -m tests.kafka_broker run     # start a broker, print its bootstrap
                                         # address, run until Ctrl-C / SIGTERM
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable, Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

EXTERNAL_BOOTSTRAP_ENV = "PULSE_TEST_KAFKA_BOOTSTRAP"
CACHE_ENV = "PULSE_KAFKA_CACHE"

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.properties"
DEFAULT_LIBS = REPO_ROOT / ".cache" / "kafka" / "libs"
MARKER = ".complete"  # written into the libs dir after a complete fetch

POLL_INTERVAL = 0.1  # seconds between readiness checks


class KafkaBrokerError(RuntimeError):
    """The test broker could not be fetched, formatted, started or used."""


def external_bootstrap() -> str | None:
    """Return the external cluster from ``PULSE_TEST_KAFKA_BOOTSTRAP``, if set."""
    return os.environ.get(EXTERNAL_BOOTSTRAP_ENV, "").strip() or None


def libs_dir() -> Path:
    """Return the jar cache directory (``PULSE_KAFKA_CACHE`` or the default)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_LIBS).expanduser().resolve()


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _jars_complete(libs: Path) -> bool:
    marker = libs / MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest()


def fetch_jars(libs: Path | None = None) -> Path:
    """Fetch the broker jars into ``libs`` (default :func:`libs_dir`); return it.

    Does nothing when a previous fetch of the same pom completed (marker file
    holding the pom's sha256). Maven copies into a sibling ``.partial``
    directory that is renamed into place only after success, so an interrupted
    fetch is redone. A file lock serialises concurrent fetches.
    """
    libs = Path(libs) if libs is not None else libs_dir()
    if _jars_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError(
            f"Maven ('mvn') is not on PATH; it is needed to fetch the Kafka jars "
            f"listed in {POM} into {libs}"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / f".{libs.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(libs):  # another process fetched while we waited
            return libs
        staging = libs.with_name(libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        # Run from a scratch dir so Maven leaves nothing in the repo.
        with tempfile.TemporaryDirectory(prefix="pulse-kafka-mvn-") as scratch:
            cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                   f"-DoutputDirectory={staging}"]
            result = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True)
        if result.returncode != 0 or not list(staging.glob("kafka_2.13-*.jar")):
            output = (result.stdout + result.stderr).strip()[-4000:]
            raise KafkaBrokerError(
                f"fetching Kafka jars failed (exit {result.returncode}): "
                f"{' '.join(cmd)}\n{output}"
            )
        (staging / MARKER).write_text(_pom_digest() + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct currently free TCP ports on 127.0.0.1."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, base64url, no padding."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):  # would be parsed as a CLI option
            return cid


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"    <cannot read {path}: {exc}>"
    return "\n".join("    " + line for line in text) or "    <empty>"


def _error_lines(path: Path, limit: int = 10) -> str:
    """The first ``limit`` ERROR/FATAL lines of a broker log, indented."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    <none>"
    errors = [line for line in lines if "] ERROR " in line or "] FATAL " in line][:limit]
    return "\n".join("    " + line for line in errors) or "    <none>"


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies (Linux), so a killed
    test run leaves no orphan JVM. Note: tied to the thread that forked."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class KafkaBroker:
    """A single-node KRaft Kafka broker on 127.0.0.1, run as a child JVM.

    Use as a context manager, or call :meth:`start` / :meth:`stop`::

        with KafkaBroker() as broker:
            producer = Producer({"bootstrap.servers": broker.bootstrap})

    ``stop(keep_data=True)`` followed by ``start()`` (or :meth:`restart`)
    restarts the same broker: same ports, same data, same cluster id.
    ``extra_config`` entries are added to / override ``server.properties``.
    """

    def __init__(
        self,
        *,
        libs: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        heap: str = "512m",
        extra_config: Mapping[str, object] | None = None,
    ) -> None:
        self.libs = Path(libs) if libs is not None else libs_dir()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self.run_dir: Path | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._out = None

    # -- public API -------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` for ``bootstrap.servers``."""
        if self.port is None:
            raise KafkaBrokerError("KafkaBroker has not been started: no bootstrap address yet")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the broker JVM while it runs, else ``None``."""
        return self._proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_file(self) -> Path | None:
        """The broker's log4j log (``<run_dir>/logs/server.log``)."""
        return self.run_dir / "logs" / "server.log" if self.run_dir else None

    def start(self) -> KafkaBroker:
        """Start the broker and block until it answers a metadata request.

        First call: fetch jars if needed, create a run dir, pick ports, write
        ``server.properties`` and format storage. After ``stop(keep_data=True)``
        the existing run dir, ports and data are reused.
        """
        if self.running:
            raise KafkaBrokerError(f"broker already running (pid {self._proc.pid}, {self.bootstrap})")
        fetch_jars(self.libs)
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="pulse-kafka-"))
            self.port, self.controller_port = _free_ports(2)
            self._write_config()
            self._format_storage()
        self._launch()
        self._wait_ready(time.monotonic() + self.start_timeout)
        return self

    def stop(self, keep_data: bool = False) -> None:
        """Stop the JVM this object started (SIGTERM, then SIGKILL after
        ``stop_timeout``). Unless ``keep_data``, delete the run dir and forget
        the ports. Safe to call repeatedly."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self._kill_at_exit)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # only this PID, never a group
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None
        if not keep_data and self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = self.port = self.controller_port = None

    def restart(self) -> KafkaBroker:
        """Stop the broker keeping its data and ports, then start it again."""
        self.stop(keep_data=True)
        return self.start()

    def __enter__(self) -> KafkaBroker:
        try:
            return self.start()
        except BaseException:
            self.stop(keep_data=True)  # stop the JVM, keep the run dir's logs
            raise

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.running else "stopped"
        where = f"127.0.0.1:{self.port}" if self.port else "no port"
        return f"<KafkaBroker {where} {state} run_dir={self.run_dir}>"

    # -- internals --------------------------------------------------------

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = shutil.which("java") or os.path.join(os.environ.get("JAVA_HOME", ""), "bin", "java")
        return [
            java, f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.run_dir / 'logs'}",
            "-cp", f"{self.libs}/*", main_class, *args,
        ]

    def _write_config(self) -> None:
        config: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.run_dir / "data",
            "num.partitions": 1,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            **self.extra_config,
        }
        lines = [f"{key}={value}" for key, value in config.items()]
        (self.run_dir / "server.properties").write_text("\n".join(lines) + "\n")

    def _format_storage(self) -> None:
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                         "-c", str(self.run_dir / "server.properties"))
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise KafkaBrokerError(
                f"formatting Kafka storage in {self.run_dir} failed "
                f"(exit {result.returncode}):\n{(result.stdout + result.stderr).strip()[-4000:]}"
            )

    def _launch(self) -> None:
        self._out = open(self.run_dir / "broker.out", "ab")
        self._proc = subprocess.Popen(
            self._java("kafka.Kafka", str(self.run_dir / "server.properties")),
            cwd=self.run_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: terminal Ctrl-C does not hit it
            preexec_fn=_die_with_parent,
        )
        atexit.register(self._kill_at_exit)

    def _kill_at_exit(self) -> None:
        if self.running:
            self._proc.kill()
            self._proc.wait(10)

    def _wait_ready(self, deadline: float) -> None:
        admin = None
        while True:
            if self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode} during startup")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"not ready within {self.start_timeout:g} s")
            if _port_open(self.port):
                admin = admin or AdminClient({"bootstrap.servers": self.bootstrap})
                try:
                    admin.list_topics(timeout=min(2.0, remaining))
                    return
                except KafkaException:
                    pass
            time.sleep(POLL_INTERVAL)

    def _fail(self, what: str) -> None:
        run_dir, log = self.run_dir, self.log_file
        message = (
            f"Kafka broker at {self.bootstrap} (run dir {run_dir}) {what}.\n"
            f"  errors in {log}:\n{_error_lines(log)}\n"
            f"  tail of {log}:\n{_tail(log)}\n"
            f"  tail of {run_dir / 'broker.out'}:\n{_tail(run_dir / 'broker.out')}"
        )
        self.stop(keep_data=True)  # keep the logs for inspection
        raise KafkaBrokerError(message)


def unique_topic(prefix: str = "t") -> str:
    """Return a fresh topic name ``<prefix>-<uuid hex>``.

    >>> unique_topic("clicks")
    'clicks-...'
    """
    return f"{prefix}-{uuid.uuid4().hex}"


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
) -> str:
    """Create topic ``name`` and wait until all its partitions have a leader.

    Uses the cluster's default replication factor. Returns ``name``.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=partitions,
                     config={k: str(v) for k, v in (config or {}).items()})
    futures = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[name].result(timeout=timeout)
    except Exception as exc:
        raise KafkaBrokerError(f"creating topic {name!r} on {bootstrap} failed: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:  # metadata can lag the controller for a moment
        meta = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if (meta is not None and meta.error is None and len(meta.partitions) == partitions
                and all(p.leader >= 0 and p.error is None for p in meta.partitions.values())):
            return name
        if time.monotonic() > deadline:
            raise KafkaBrokerError(f"topic {name!r} on {bootstrap} has no leaders after {timeout} s: {meta}")
        time.sleep(POLL_INTERVAL)


def produce_one(producer, topic: str, key: bytes | None, value: bytes) -> None:
    """``producer.produce``, serving deliveries while its local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)


def produce_all(producer, topic: str, records, *, timeout: float = 60.0, on_each=None) -> int:
    """Produce every (key, value) to ``topic``, waiting for room when the local queue is
    full, then flush; raises if the broker did not acknowledge everything."""
    n = 0
    for key, value in records:
        produce_one(producer, topic, key, value)
        n += 1
        if on_each is not None:
            on_each(n)
    left = producer.flush(timeout)
    if left:
        raise RuntimeError(f"{left} records to {topic!r} not acknowledged in {timeout:g} s")
    return n


def delete_topics(bootstrap: str, names: Iterable[str], *, timeout: float = 10.0) -> None:
    """Delete topics, best effort: errors are ignored."""
    names = list(names)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        with contextlib.suppress(Exception):
            future.result(timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tests.kafka_broker {fetch,run}``."""
    parser = argparse.ArgumentParser(prog="python -m tests.kafka_broker", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch the broker jars into the cache and exit")
    run = sub.add_parser("run", help="start a broker and run until Ctrl-C / SIGTERM")
    run.add_argument("--start-timeout", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        started = time.monotonic()
        libs = fetch_jars()
        print(f"Kafka jars ready in {libs} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind through stop()
    broker = KafkaBroker(start_timeout=args.start_timeout)
    try:
        started = time.monotonic()
        broker.start()
        print(broker.bootstrap, flush=True)
        print(f"Kafka broker pid {broker.pid} ready in {time.monotonic() - started:.1f} s, "
              f"run dir {broker.run_dir}; Ctrl-C or SIGTERM to stop", file=sys.stderr, flush=True)
        code = broker._proc.wait()
        print(f"Kafka broker exited with code {code}; tail of {broker.log_file}:\n"
              f"{_tail(broker.log_file)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
