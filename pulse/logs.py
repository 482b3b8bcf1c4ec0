"""Logging setup: JSON lines (for log shippers) or plain text, at a configurable level.

    setup_logging("INFO", "json")

A JSON line holds ``ts`` (UTC, ISO-8601 with milliseconds), ``level``, ``logger``,
``message`` and, when the record carries an exception or a stack, ``exception`` /
``stack`` with the traceback text. Nothing else of the record is copied: ``extra=``
attributes are not emitted, so an event payload reaches a log line only if code puts it
into the message itself (Pulse never does; dead-lettered payloads go to the DLQ).

>>> import io, json
>>> stream = io.StringIO()
>>> setup_logging("INFO", "json", stream=stream)
>>> logging.getLogger("pulse.example").info("consumer %s started", "c-1", extra={"payload": "x"})
>>> line = json.loads(stream.getvalue())
>>> sorted(line), line["message"], line["level"]
(['level', 'logger', 'message', 'ts'], 'consumer c-1 started', 'INFO')
>>> reset_logging()
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Marks the handler setup_logging installed, so a second call replaces it instead of adding one.
_PULSE_HANDLER = "_pulse_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message (+ exception, stack)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: a message argument that is not JSON-serializable is already in
        # ``message`` as text; this only guards odd logger names or level names.
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str, *, stream: TextIO | None = None) -> None:
    """Send the root logger to ``stream`` (default stderr) as ``fmt`` ("json" or "text") at ``level``.

    Idempotent: calling it again replaces the handler it installed; other handlers on the
    root logger (e.g. pytest's) are left alone.
    """
    level_name = level.upper() if isinstance(level, str) else level
    if level_name not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of: {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of: {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    setattr(handler, _PULSE_HANDLER, True)
    root = logging.getLogger()
    _remove_pulse_handlers(root)
    root.addHandler(handler)
    root.setLevel(level_name)


def reset_logging() -> None:
    """Remove the handler ``setup_logging`` installed (for tests and embedding)."""
    _remove_pulse_handlers(logging.getLogger())


def _remove_pulse_handlers(root: logging.Logger) -> None:
    for old in [h for h in root.handlers if getattr(h, _PULSE_HANDLER, False)]:
        root.removeHandler(old)
        old.close()
