"""Real Pulse and Prometheus processes for the ops tests: started on loopback with port 0
(or a free port), their addresses read from what they print, stopped by their own PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except AssertionError as exc:  # a predicate may explain why it is not there yet
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(interval)
    detail = f" (last: {last_error})" if last_error else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process whose combined output is collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self, tail: int | None = None) -> str:
        text = "".join(self.lines)
        return text[-tail:] if tail else text

    def search(self, pattern: str) -> str | None:
        m = re.search(pattern, self.output())
        return m.group(1) if m else None

    def wait_for_output(self, pattern: str, timeout: float, what: str) -> str:
        def found():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what}: {self.argv[1:]} exited with {self.proc.returncode}:\n"
                                   f"{self.output(3000)}")
            return self.search(pattern)
        return wait_for(found, timeout, f"{what}; output so far:\n{self.output(2000)}", interval=0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal this process (by its PID), wait, and kill it if it does not stop."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


def pulse_env(state_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_") or k.startswith("PULSE_TEST_")}
    env.update({"PULSE_STATE_DIR": str(state_dir), "PULSE_SERVING_GRPC_ADDRESS": "127.0.0.1:0"})
    env.update(settings)
    return env


def start_demo(state_dir: Path, **settings: str) -> tuple[Process, str, str]:
    """`pulse demo` on loopback; returns (process, gRPC address, processor metrics URL)."""
    env = pulse_env(state_dir, PULSE_PROCESSOR_METRICS_HOST="127.0.0.1", PULSE_PROCESSOR_METRICS_PORT="0",
                    **settings)
    proc = Process([sys.executable, "-m", "pulse.cli", "demo"], env)
    try:
        grpc_address = proc.wait_for_output(r"gRPC:\s+(\S+)", 60, "the demo banner")
        metrics_url = proc.wait_for_output(r"metrics:\s+(\S+)", 5, "the demo's metrics URL")
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    return proc, grpc_address, metrics_url


def start_serve(state_dir: Path, **settings: str) -> tuple[Process, str, str]:
    """`pulse serve` on loopback; returns (process, gRPC address, serving metrics URL)."""
    env = pulse_env(state_dir, PULSE_SERVING_METRICS_HOST="127.0.0.1", PULSE_SERVING_METRICS_PORT="0", **settings)
    proc = Process([sys.executable, "-m", "pulse.cli", "serve"], env)
    try:
        line = proc.wait_for_output(r"(pulse serving \S+ on \S+; metrics on \S+)", 60, "the server's start line")
    except BaseException:
        proc.stop(signal.SIGKILL)
        raise
    m = re.match(r"pulse serving \S+ on (\S+); metrics on (\S+)", line)
    return proc, m.group(1), m.group(2)
