"""What the Dockerfile and docker-compose.yml rely on, checked without a Docker engine:
the files they copy exist, the commands they run are valid `pulse` commands with valid
configuration, and the package they install contains every module."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from pulse.cli import build_parser
from pulse.config import load_config

REPO = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M) if not m.group(0).lstrip().startswith("#")]


def test_dockerfile_copies_existing_paths_and_runs_pulse_as_non_root():
    ins = dockerfile_instructions()
    froms = [arg for op, arg in ins if op == "FROM"]
    assert all(f.startswith("python:3.11-slim") for f in froms)
    for op, arg in ins:
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _dest = arg.split()
            for src in sources:
                assert (REPO / src).exists(), f"Dockerfile copies missing {src}"
    users = [arg for op, arg in ins if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry = [arg for op, arg in ins if op == "ENTRYPOINT"]
    assert entry == ['["pulse"]']
    cmd = [arg for op, arg in ins if op == "CMD"][-1]
    build_parser().parse_args(yaml.safe_load(cmd))
    # Every first-party package is copied into the image.
    copied = {arg.split()[0] for op, arg in ins if op == "COPY"}
    for pkg in ("pulse", "flows", "operators", "state", "serving", "proto"):
        assert pkg in copied


def test_compose_services_run_valid_commands_with_valid_configuration():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "processor", "server", "prometheus"} <= set(services)
    pulse_services = [s for s in services.values() if s.get("build") == "."]
    assert {tuple(s["command"][:1]) for s in pulse_services} >= {("run",), ("serve",), ("produce-sample",)}
    for svc in pulse_services:
        build_parser().parse_args(svc["command"])
        load_config(None, {k: str(v) for k, v in svc["environment"].items()})
    # The server reads the processor's RocksDB: both mount the same volume at the state dir.
    assert services["processor"]["volumes"] == services["server"]["volumes"]
    prom = (REPO / "deploy" / "prometheus.yml")
    targets = str(yaml.safe_load(prom.read_text()))
    assert "processor:9464" in targets and "server:9465" in targets


def test_wheel_contains_every_package_and_the_generated_proto(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("pulse/cli.py", "flows/profile_flow.py", "operators/events.py", "state/store.py",
                     "serving/server.py", "proto/pulse/v1/pulse_pb2.py", "proto/pulse/v1/pulse_pb2_grpc.py"):
        assert required in names, required
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "pulse = pulse.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_compose_processor_has_what_pulse_run_needs_and_the_image_ships_its_segments():
    from flows.runtime import flow_settings

    env = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["processor"]["environment"]
    # Compose's ${VAR:-default}: the default is what a fresh `docker compose up` uses.
    resolved = {k: str(v).split(":-", 1)[1].rstrip("}") if str(v).startswith("${") else str(v) for k, v in env.items()}
    cfg = load_config(None, resolved)
    settings = flow_settings(cfg.with_overrides("segments", path=""))  # no ConfigurationMissing
    assert settings["options"].pii_key
    text = (REPO / "Dockerfile").read_text()
    copies = dict(reversed(line.split()[1:3]) for line in text.splitlines() if line.startswith("COPY deploy/"))
    assert cfg.segments.path in copies, "the compose segments path is not a file the image contains"
    from operators.segments import load_segments
    assert load_segments(REPO / copies[cfg.segments.path]).segments
