"""`pulse erase` and `pulse export` (the command-line side of the admin API)."""

from __future__ import annotations

import json
import threading
import time

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pulse.cli import main
from pulse.logs import reset_logging
from state.store import RocksStore
from tests.serving.conftest import make_profile, put_profile
from tests.serving.test_control import read_topic


@pytest.fixture(autouse=True)
def _no_leftover_log_handler():
    """main() sends the root logger to this test's (captured, then closed) stderr; later
    tests' log lines, from server threads too, must not go there."""
    yield
    reset_logging()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean PULSE_* environment with its own state directory; returns a setter."""
    import os

    for var in [v for v in os.environ if v.startswith("PULSE_") and not v.startswith("PULSE_TEST_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("RUST_BACKTRACE", "0")  # main() sets it; restore afterwards
    monkeypatch.setenv("PULSE_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch.setenv


@pytest.fixture
def stored(tmp_path, env):
    store = RocksStore(tmp_path / "state" / "store")
    put_profile(store, make_profile("user:u1"), "anon:a1", "device:d1")
    yield store
    store.close()


@pytest.fixture
def kafka_env(env, kafka_bootstrap, kafka_topic):
    """Kafka settings with uuid-named topics (created here, so they are cleaned up)."""
    env("PULSE_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    topics = {name: kafka_topic(name) for name in ("events", "dlq", "control", "erasures")}
    for name, topic in topics.items():
        env(f"PULSE_KAFKA_{name.upper()}_TOPIC", topic)
    return topics


def test_export_prints_the_document(stored, capsys, tmp_path):
    assert main(["export", "anon:a1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["profile_id"] == "user:u1"
    assert document["aliases"] == ["anon:a1", "device:d1", "user:u1"]
    assert document["profile"]["id"] == "user:u1"
    assert not any((tmp_path / "state" / "readers").iterdir())  # its secondary dir is gone


def test_export_of_an_unknown_user_exits_2(stored, capsys):
    assert main(["export", "nobody"]) == 2
    assert "nothing stored for 'nobody'" in capsys.readouterr().err


def test_export_without_a_store_says_so(env, capsys):
    assert main(["export", "u1"]) == 1
    assert "is 'pulse run' running?" in capsys.readouterr().err


def test_erase_rejects_a_bad_request_id_before_touching_kafka(env, capsys):
    env("PULSE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["erase", "u1", "--request-id", "a\nb"]) == 2
    assert "--request-id must be printable" in capsys.readouterr().err


@pytest.mark.kafka
def test_erase_publishes_the_request(kafka_env, kafka_bootstrap, capsys):
    assert main(["erase", "anon:a1", "--request-id", "ticket-5"]) == 0
    assert "erase request ticket-5 for anon:a1 published" in capsys.readouterr().out
    (record,) = read_topic(kafka_bootstrap, kafka_env["control"], 1)
    assert record.key() == b"anon:a1"
    assert orjson.loads(record.value()) == {"command": "erase", "alias": "anon:a1", "request_id": "ticket-5"}


def _fake_flow(bootstrap: str, topic: str, store: RocksStore, stop: threading.Event) -> None:
    """Executes erase requests the way `pulse run` does, as far as the store is concerned."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pulse-test-unused",
                         "enable.auto.commit": "false"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None or msg.error() is not None:
                continue
            pid = store.profile_of(orjson.loads(msg.value())["alias"])
            if pid is not None:
                members = store.members_of(pid) or (pid,)
                store.apply(profiles={pid: None}, aliases={a: None for a in members}, members={pid: None})
    finally:
        consumer.close()


@pytest.mark.kafka
def test_erase_wait_returns_once_the_flow_has_erased(kafka_env, kafka_bootstrap, stored, capsys, tmp_path):
    stop = threading.Event()
    flow = threading.Thread(target=_fake_flow, args=(kafka_bootstrap, kafka_env["control"], stored, stop))
    flow.start()
    try:
        started = time.monotonic()
        assert main(["erase", "device:d1", "--wait", "30"]) == 0
        assert time.monotonic() - started < 30
    finally:
        stop.set()
        flow.join()
    out = capsys.readouterr().out
    assert "erased: device:d1 is no longer in" in out
    assert stored.profile_of("user:u1") is None and stored.get("user:u1") is None
    assert not any((tmp_path / "state" / "readers").iterdir())


@pytest.mark.kafka
def test_erase_wait_times_out_without_a_flow(kafka_env, stored, capsys, tmp_path):
    assert main(["erase", "u1", "--request-id", "t-9", "--wait", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "user:u1 is still in" in err and "is `pulse run` running?" in err and "request t-9 stays on" in err
    assert stored.profile_of("user:u1") == "user:u1"
    assert not any((tmp_path / "state" / "readers").iterdir())
