"""``serve(config)`` as a process: binds, answers, reports health, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from state.store import RocksStore
from tests.serving.conftest import make_profile, put_profile, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "from pulse.config import load_config; from serving import serve; serve(load_config())"


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.05)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    raise AssertionError(f"serve() printed no address within {timeout}s; stderr: {proc.stderr.read()!r}")


def test_serve_until_sigterm(tmp_path):
    state_dir = tmp_path / "state"
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# readers\nserve-read-key read\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(
        PULSE_STATE_DIR=str(state_dir),
        PULSE_SERVING_GRPC_ADDRESS="127.0.0.1:0",
        PULSE_SERVING_METRICS_PORT="0",
        PULSE_SERVING_CATCH_UP_INTERVAL_MS="5",
        PULSE_SERVING_ADMIN_API_KEY="serve-test-key",
        PULSE_SERVING_API_KEYS_FILE=str(keys_file),
        PULSE_PRIVACY_DEFAULT_CONSENT="opt-in",
        PULSE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",  # never contacted: nothing is erased here
        PYTHONPATH=str(REPO_ROOT),
    )
    writer = RocksStore(state_dir / "store")
    put_profile(writer, make_profile("user:u1"), "anon:a1")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = read_line(proc, timeout=20)
        m = re.search(r"on (127\.0\.0\.1:\d+); metrics on (http://\S+/metrics)", line)
        assert m, line
        address, metrics_url = m.groups()
        assert (state_dir / "readers" / str(proc.pid)).is_dir()

        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                       == health_pb2.HealthCheckResponse.SERVING, what="SERVING")
            reply = pulse_pb2_grpc.PulseStub(channel).GetProfile(pulse_pb2.GetProfileRequest(user_id="anon:a1"),
                                                                 metadata=(("x-api-key", "serve-read-key"),),
                                                                 timeout=5)  # the keys file is loaded
            assert (reply.profile.profile_id, reply.profile.version) == ("user:u1", 10)
            assert reply.profile.consent.default_regime == pulse_pb2.CONSENT_REGIME_OPT_IN  # from the config
            admin = pulse_pb2_grpc.AdminStub(channel)
            exported = admin.ExportUser(pulse_pb2.ExportUserRequest(user_id="u1"),
                                        metadata=(("x-api-key", "serve-test-key"),), timeout=5)
            assert exported.profile_id == "user:u1"
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            assert b"pulse_rpc_latency_seconds" in resp.read()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
        assert not (state_dir / "readers" / str(proc.pid)).exists()  # its own secondary dir is removed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        writer.close()
