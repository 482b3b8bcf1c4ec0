"""`pulse demo` (the README's first command) as a real process: it prints where to look,
serves profiles built from the synthetic clickstream, exposes metrics, dead-letters the
malformed records, and stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from pulse.cli import main

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Demo:
    def __init__(self, tmp_path: Path) -> None:
        env = {**os.environ, "PULSE_STATE_DIR": str(tmp_path / "state"),
               "PULSE_SERVING_GRPC_ADDRESS": "127.0.0.1:0", "PULSE_PROCESSOR_METRICS_PORT": "0",
               "PULSE_GENERATOR_EVENTS_PER_SECOND": "3000", "PULSE_GENERATOR_USERS": "200",
               "PULSE_GENERATOR_INVALID_RATE": "0.02"}
        self.state = tmp_path / "state"
        self.proc = subprocess.Popen([sys.executable, "-m", "pulse.cli", "demo"], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_demo_serves_profiles_and_stops_cleanly(tmp_path, stop_signal, capsys):
    demo = Demo(tmp_path)
    try:
        grpc_addr = wait_for(lambda: (m := re.search(r"gRPC:\s+(\S+)", demo.output())) and m.group(1),
                             30, "the demo banner")
        metrics_url = re.search(r"metrics:\s+(\S+)", demo.output()).group(1)
        stub = pulse_pb2_grpc.PulseStub(grpc.insecure_channel(grpc_addr))

        def profile():
            try:
                return stub.GetProfile(pulse_pb2.GetProfileRequest(user_id="u000000"), timeout=2).profile
            except grpc.RpcError as err:
                assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE), err
                return None

        first = wait_for(profile, 30, "u000000's profile")
        assert first.profile_id == "user:u000000" and sum(first.event_counts.values()) >= 1
        # The profile keeps growing while the clickstream runs.
        wait_for(lambda: (p := profile()) and p.version > first.version, 30, "a newer version")

        body = urllib.request.urlopen(metrics_url, timeout=2).read().decode()
        assert 'pulse_events_out_total{outcome="applied"}' in body
        assert "pulse_rpc_latency_seconds_bucket" in body
        dead = demo.state / "dead-letters.jsonl"
        wait_for(lambda: dead.exists() and dead.read_text().count("\n") >= 1, 30, "a dead letter")
        assert '"reason":' in dead.read_text().splitlines()[0]

        # The README's sample request works against the demo.
        assert main(["get-profile", "u000000", "--address", grpc_addr]) == 0
        assert '"profileId": "user:u000000"' in capsys.readouterr().out
    finally:
        demo.proc.send_signal(stop_signal)
        try:
            code = demo.proc.wait(30)
        except subprocess.TimeoutExpired:
            demo.proc.kill()
            raise AssertionError(f"demo did not stop on {stop_signal!r}:\n{demo.output()[-2000:]}") from None
    assert code == 0, demo.output()[-2000:]
    assert "stopping on signal" in demo.output()
