"""ghz, a gRPC load generator written in Go, as a benchmark's client process.

A Python client spends about as much CPU per call as a trivial Python server does, on the
same two cores, and its own time is inside every latency it records: with it, a handler
returning a constant answered at 1 call in flight with a p99 of 1.5-1.8 ms. ghz costs a
fraction of that, so what it measures is closer to what an application's client sees.

Install it with ``make bench-tools`` (``go install`` from the Go module proxy into
``build/bin``). ``GoClient`` sends the same requests the Python client sends (JSON, in
order, round-robin) and returns each OK call's latency in nanoseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.93.0"
GHZ = ROOT / "build" / "bin" / "ghz"


class GoClientError(RuntimeError):
    pass


def protoset(out: Path) -> Path:
    """The repository's .proto compiled to a descriptor set ghz reads (ghz's own parser
    predates proto3 ``optional`` fields)."""
    proto_dir = ROOT / "proto"
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}", "--include_imports",
           f"--descriptor_set_out={out}", str(proto_dir / "pulse" / "v1" / "pulse.proto")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise GoClientError(f"protoc failed: {done.stderr.strip()}")
    return out


class GoClient:
    """Runs ``ghz`` once per measurement against ``127.0.0.1:PORT``, one connection."""

    def __init__(self, workdir: Path, method: str, requests: list[dict], ghz: Path = GHZ) -> None:
        if not ghz.exists():
            raise GoClientError(f"{ghz} is missing: run `make bench-tools` (needs Go; installs "
                                f"{GHZ_MODULE}@{GHZ_VERSION})")
        self.ghz, self.workdir, self.method, self.requests = ghz, workdir, method, requests
        self.protoset = protoset(workdir / "pulse.protoset")
        self._runs = 0

    def _run(self, port: int, data: list[dict], concurrency: int, *, count: int | None = None,
             seconds: float | None = None) -> tuple[list[int], float, int]:
        self._runs += 1
        data_file = self.workdir / f"ghz-data-{self._runs}.json"
        out_file = self.workdir / f"ghz-out-{self._runs}.json"
        data_file.write_bytes(json.dumps(data).encode())
        cmd = [str(self.ghz), "--insecure", "--protoset", str(self.protoset), "--call", self.method,
               "-D", str(data_file), "-c", str(concurrency), "--connections", "1", "--timeout", "10s",
               "-O", "json", "-o", str(out_file)]
        cmd += ["-n", str(count)] if count is not None else ["-z", f"{seconds}s"]
        done = subprocess.run([*cmd, f"127.0.0.1:{port}"], capture_output=True, text=True)
        if done.returncode != 0 or not out_file.exists():
            raise GoClientError(f"ghz exited with {done.returncode}: {done.stderr.strip()[-500:]}")
        report = json.loads(out_file.read_bytes())
        data_file.unlink()
        out_file.unlink()
        details = report.get("details") or []
        ok = [d["latency"] for d in details if d.get("status") == "OK"]
        failed = len(details) - len(ok)
        return ok, report["total"] / 1e9, failed

    def latency(self, port: int, first: int, count: int) -> list[int]:
        """``count`` calls one at a time, from request ``first`` on; every one must succeed."""
        n = len(self.requests)
        data = [self.requests[(first + i) % n] for i in range(count)]
        times, _, failed = self._run(port, data, 1, count=count)
        if failed:
            raise GoClientError(f"{failed} of {count} calls failed at 1 in flight")
        return times

    def load(self, port: int, in_flight: int, seconds: float) -> dict:
        """``in_flight`` concurrent calls for ``seconds``. The calls still running when ghz
        stops are cancelled (at most ``in_flight``): reported as ``cut``, not timed."""
        times, elapsed, failed = self._run(port, self.requests, in_flight, seconds=seconds)
        if failed > in_flight:
            raise GoClientError(f"{failed} calls failed at {in_flight} in flight (more than the ones cut at the end)")
        return {"times": times, "seconds": elapsed, "cut": failed}
