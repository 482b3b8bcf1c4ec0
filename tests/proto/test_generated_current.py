"""The committed generated code matches the .proto files (run `python -m proto.generate`)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from proto import generate


def test_committed_generated_code_is_current():
    result = subprocess.run([sys.executable, "-m", "proto.generate", "--check"], cwd=generate.REPO_ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_check_detects_a_stale_file(tmp_path):
    shutil.copytree(generate.REPO_ROOT / "proto", tmp_path / "proto",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proto = tmp_path / "proto" / "pulse" / "v1" / "pulse.proto"
    proto.write_text(proto.read_text() + "\n// a new message\nmessage Added { string x = 1; }\n")
    assert generate.stale_files(tmp_path) == [
        "proto/pulse/v1/pulse_pb2.py (differs)",
        "proto/pulse/v1/pulse_pb2.pyi (differs)",
    ]
    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
