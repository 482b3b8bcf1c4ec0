"""``pulse_build_info``: which Pulse, Python and Bytewax a process runs (value always 1).

Declared here once because one process may export both the processor's and the
server's metrics (``pulse demo``): ``flows.metrics`` and ``serving.metrics`` both import
``BUILD_INFO`` from this module, so it is registered exactly once.
"""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import Info

DISTRIBUTION = "pulse-personalization"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    """The label values of ``pulse_build_info``.

    >>> sorted(build_labels())
    ['bytewax', 'python', 'version']
    """
    return {"version": _version(DISTRIBUTION), "python": platform.python_version(),
            "bytewax": _version("bytewax")}


BUILD_INFO = Info("pulse_build", "Pulse build: package version, Python and Bytewax versions (value 1)")
BUILD_INFO.info(build_labels())
