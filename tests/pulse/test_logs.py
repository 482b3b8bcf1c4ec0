"""pulse.logs: JSON lines with ts, level, logger, message (+ exception), nothing from
``extra``; text format; level filtering; idempotent setup; bad settings rejected."""

from __future__ import annotations

import doctest
import io
import json
import logging
import subprocess
import sys
from datetime import datetime

import pytest

import pulse.logs
from pulse.logs import reset_logging, setup_logging


@pytest.fixture
def stream():
    out = io.StringIO()
    yield out
    reset_logging()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_exactly_the_documented_keys(stream):
    setup_logging("INFO", "json", stream=stream)
    log = logging.getLogger("flows.kafka_io")
    log.info("assigned %d partitions of %s", 3, "pulse.events",
             extra={"payload": '{"email": "a@example.com"}', "user_id": "u1"})
    log.debug("not shown at INFO")
    (line,) = lines(stream)
    assert set(line) == {"ts", "level", "logger", "message"}
    assert line["level"] == "INFO" and line["logger"] == "flows.kafka_io"
    assert line["message"] == "assigned 3 partitions of pulse.events"
    assert "a@example.com" not in stream.getvalue() and "u1" not in stream.getvalue()
    ts = datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
    assert line["ts"].endswith("Z") and ts.utcoffset().total_seconds() == 0


def test_exceptions_are_one_line_of_json_with_the_traceback(stream):
    setup_logging("WARNING", "json", stream=stream)
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("serving.errors").exception("handler failed")
    raw = stream.getvalue()
    assert raw.count("\n") == 1, "one record, one line"
    (line,) = lines(stream)
    assert line["level"] == "ERROR" and line["message"] == "handler failed"
    assert "Traceback" in line["exception"] and "ValueError: bad\nthing" in line["exception"]


def test_non_ascii_and_odd_arguments_survive(stream):
    setup_logging("DEBUG", "json", stream=stream)
    logging.getLogger("x").debug("city %s, %r", "Zürich", object.__new__(object))
    (line,) = lines(stream)
    assert line["message"].startswith("city Zürich, <object object at")


def test_text_format_and_level(stream):
    setup_logging("WARNING", "text", stream=stream)
    logging.getLogger("pulse").info("hidden")
    logging.getLogger("pulse").warning("shown")
    out = stream.getvalue()
    assert "hidden" not in out and " WARNING pulse: shown" in out


def test_setup_twice_replaces_the_handler_and_keeps_others(stream):
    root = logging.getLogger()
    others = list(root.handlers)
    setup_logging("INFO", "text", stream=io.StringIO())
    setup_logging("INFO", "json", stream=stream)
    assert len(root.handlers) == len(others) + 1
    logging.getLogger("y").info("once")
    assert len(lines(stream)) == 1
    reset_logging()
    assert root.handlers == others


@pytest.mark.parametrize("level,fmt", [("TRACE", "json"), ("INFO", "xml")])
def test_bad_settings_are_rejected_with_the_allowed_values(level, fmt):
    with pytest.raises(ValueError, match="is not one of"):
        setup_logging(level, fmt)


def test_lowercase_level_is_accepted(stream):
    setup_logging("debug", "json", stream=stream)
    assert logging.getLogger().level == logging.DEBUG


def test_a_fresh_process_logs_json_to_stderr():
    code = ("from pulse.logs import setup_logging; import logging; setup_logging('INFO', 'json'); "
            "logging.getLogger('pulse').warning('hello')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout == ""
    assert json.loads(result.stderr)["message"] == "hello"


def test_module_doctest():
    assert doctest.testmod(pulse.logs).failed == 0
