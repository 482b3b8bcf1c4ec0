"""Graceful stop: SIGINT/SIGTERM ask the sources to end, so the flow drains, takes its
final recovery snapshot and returns. A second signal interrupts at once."""

from __future__ import annotations

import signal
import threading

STOP = threading.Event()


def stop_requested() -> bool:
    return STOP.is_set()


def _on_signal(signum, frame) -> None:
    if STOP.is_set():
        raise KeyboardInterrupt
    STOP.set()


def install_handlers() -> None:
    """Route SIGINT and SIGTERM (`docker stop`, Kubernetes) to a graceful stop."""
    STOP.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
