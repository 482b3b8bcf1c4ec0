"""Regenerate the committed Python code for every ``.proto`` file under ``proto/``.

Run from anywhere::

    python -m proto.generate           # rewrite the generated files in place
    python proto/generate.py --check   # exit 1 if the committed files are stale

Generation runs ``python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=.
--pyi_out=.`` from the repository root, so the import path of the generated code is
``proto.pulse.v1.pulse_pb2``. The output depends on the grpcio-tools version (it is
written into the files), so use the version pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


class GenerateError(RuntimeError):
    """protoc failed; the message carries its output."""


def proto_files(root: Path = REPO_ROOT) -> list[Path]:
    """The ``.proto`` files under ``root/proto``, relative to ``root``, sorted."""
    return sorted(p.relative_to(root) for p in (root / "proto").rglob("*.proto"))


def generated_files(proto: Path) -> list[Path]:
    """The files protoc writes for ``proto`` (a path relative to the repository root)."""
    stem = proto.with_suffix("")
    return [stem.parent / f"{stem.name}{suffix}" for suffix in GENERATED_SUFFIXES]


def generate(root: Path = REPO_ROOT, out_dir: Path | None = None) -> list[Path]:
    """Run protoc over every proto under ``root``; write into ``out_dir`` (default: ``root``).

    Returns the generated paths, relative to the output directory.
    """
    out = root if out_dir is None else out_dir
    protos = proto_files(root)
    if not protos:
        raise GenerateError(f"no .proto files under {root / 'proto'}")
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", "-I.",
        f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}",
        *(p.as_posix() for p in protos),
    ]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerateError(
            f"protoc failed (exit {result.returncode}) in {root}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return [g for p in protos for g in generated_files(p)]


def stale_files(root: Path = REPO_ROOT) -> list[str]:
    """Generated files under ``root`` that differ from a fresh generation (or are missing)."""
    with tempfile.TemporaryDirectory(prefix="pulse-proto-") as tmp:
        fresh = Path(tmp)
        stale = []
        for rel in generate(root, fresh):
            committed = root / rel
            if not committed.exists():
                stale.append(f"{rel.as_posix()} (missing)")
            elif committed.read_bytes() != (fresh / rel).read_bytes():
                stale.append(f"{rel.as_posix()} (differs)")
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the committed generated files are stale")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        if args.check:
            stale = stale_files(root)
            if stale:
                print("generated protobuf code is stale; run 'python -m proto.generate':", file=sys.stderr)
                for line in stale:
                    print(f"  {line}", file=sys.stderr)
                return 1
            print("generated protobuf code is current")
            return 0
        for rel in generate(root):
            print(f"wrote {rel.as_posix()}")
        return 0
    except GenerateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
