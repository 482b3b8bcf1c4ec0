"""Bad input end to end, on the real broker with `pulse run`: every class of malformed
record reaches the dead-letter topic with its own reason, a useful detail, its origin and
its original bytes (raw PII scrubbed), and the flow keeps applying the valid events
around and after them. The raw email is nowhere in the store, the DLQ or the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from operators.events import INVALID_REASONS, MAX_EVENT_BYTES
from operators.pii import hash_email, hash_phone
from state.store import RocksReader
from tests.integration.test_pipeline import Pulse, free_port, metric, pulse_env, wait_for

pytestmark = pytest.mark.kafka
SECRET = "bad-input-test-secret"
SKEW_S = 60
PARTITIONS = 3
EMAIL = "Jane.Doe+dlq@example.org"
PHONE = "+49 30 1234 5678"
PHONE_DIGITS = "493012345678"


@dataclass
class Rec:
    """One record to produce; ``reason`` is None for a valid event."""

    name: str
    key: bytes
    value: bytes
    reason: str | None = None
    detail: str = ""  # a substring the DLQ detail header must contain
    partition: int = -1
    offset: int = -1


def doc(event_id: str, type_: str, user: str, ts: int | str, **fields) -> bytes:
    return orjson.dumps({"event_id": event_id, "type": type_, "user_id": user, "timestamp": ts, **fields})


def records(now: int) -> tuple[list[Rec], list[Rec]]:
    """(bad, valid): one bad record per class, and valid events to interleave with them."""
    bad = [
        Rec("missing field", b"u-a", orjson.dumps({"type": "page_view", "user_id": "u-a", "timestamp": now}),
            "missing_field", "field 'event_id' is required"),
        Rec("wrong type", b"u-a",
            orjson.dumps({"event_id": "b-type", "type": "page_view", "user_id": 42, "timestamp": now}),
            "bad_field", "field 'user_id' must be a non-empty string"),
        # 3 minutes ahead: inside the default skew (5 min), outside the configured 60 s.
        Rec("future timestamp", b"u-a", doc("b-future", "page_view", "u-a", now + 180_000),
            "bad_timestamp", f"more than {SKEW_S * 1000} ms in the future"),
        Rec("negative price", b"u-b", doc("b-price", "add_to_cart", "u-b", now, item_id="sku-1", price=-5.0),
            "bad_field", "field 'price' = -5.0 is outside"),
        Rec("unknown type", b"u-b", doc("b-unknown", "teleport", "u-b", now),
            "unknown_type", "type 'teleport' is not one of"),
        Rec("oversized", b"u-b", doc("b-big", "search", "u-b", now, query="q", pad="x" * (MAX_EVENT_BYTES + 10)),
            "too_large", f"limit {MAX_EVENT_BYTES}"),
        Rec("invalid utf-8", b"u-c", doc("b-enc", "page_view", "u-c", now).replace(b'"u-c"', b'"u-\xff\xfec"'),
            "bad_encoding", "not valid UTF-8"),
        Rec("not an object", b"u-c", b'["page_view", "u-c"]', "not_object", "expected a JSON object, got list"),
        Rec("not json", b"u-c", b"event_id=b-csv,type=page_view", "not_json", "invalid JSON"),
        Rec("bad consent purpose", b"u-d", doc("b-consent", "consent_update", "u-d", now, consent={"telepathy": True}),
            "bad_field", "consent purpose 'telepathy' is not one of"),
        Rec("pii with bad timestamp", b"u-pii",
            doc("b-pii", "identify", "u-pii", "yesterday", email=EMAIL, phone=PHONE, anonymous_id="anon-pii"),
            "bad_timestamp", "timestamp 'yesterday' is not ISO-8601"),
    ]
    valid = [
        Rec("page view", b"u-a", doc("v-1", "page_view", "u-a", now)),
        Rec("add to cart", b"u-b", doc("v-2", "add_to_cart", "u-b", now, item_id="sku-1", price=5.0)),
        Rec("purchase", b"u-b", doc("v-3", "purchase", "u-b", now,
                                    items=[{"item_id": "sku-2", "price": 20.0, "quantity": 2}])),
        # The same email and phone as the bad record, valid this time: stored as hashes only.
        Rec("identify with pii", b"u-mail", doc("v-4", "identify", "u-mail", now, email=EMAIL, phone=PHONE)),
        Rec("within skew", b"u-c", doc("v-5", "page_view", "u-c", now + 20_000)),
        Rec("consent", b"u-d", doc("v-6", "consent_update", "u-d", now, consent={"marketing": False})),
        Rec("search", b"u-b", doc("v-7", "search", "u-b", now, query="tent")),
    ]
    return bad, valid


def produce_tracked(bootstrap: str, topic: str, recs: list[Rec]) -> None:
    """Produce each record to its partition; fill in the offset from the delivery report."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": "true", "linger.ms": "5"})
    errors = []

    def delivered(rec: Rec):
        def cb(err, msg):
            if err is not None:
                errors.append((rec.name, err))
            else:
                rec.partition, rec.offset = msg.partition(), msg.offset()
        return cb

    for rec in recs:
        p.produce(topic, value=rec.value, key=rec.key, partition=rec.partition, on_delivery=delivered(rec))
        p.poll(0)
    assert p.flush(30) == 0
    assert errors == []


def consume_all(bootstrap: str, topic: str, count: int, timeout: float) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{topic}", "enable.auto.commit": "false"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    try:
        def have_all():
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg)
            return len(got) >= count
        wait_for(have_all, timeout, f"{count} dead letters", interval=0)
    finally:
        consumer.close()
    return got


def all_bytes(root: Path) -> dict[Path, bytes]:
    return {f: f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def store_contents(store_dir: Path) -> list[bytes]:
    """Every key and value of every column family (decompressed, unlike the files)."""
    out = []
    cfs = Rdict.list_cf(str(store_dir))
    db = Rdict(str(store_dir), Options(raw_mode=True), column_families={cf: Options(raw_mode=True) for cf in cfs},
               access_type=AccessType.read_only())
    try:
        for cf in cfs:
            for key, value in db.get_column_family(cf).items():
                out += [key, value]
    finally:
        db.close()
    return out


def test_every_bad_input_class_is_dead_lettered_and_the_flow_goes_on(kafka_bootstrap, kafka_topic, tmp_path):
    events, dlq = kafka_topic("events", partitions=PARTITIONS), kafka_topic("dlq")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    state_dir = tmp_path / "state"
    env = pulse_env(kafka_bootstrap, events, dlq, state_dir, PULSE_PROCESSOR_METRICS_PORT=str(port),
                    PULSE_PRIVACY_PII_SECRET=SECRET, PULSE_PRIVACY_MAX_FUTURE_SKEW_SECONDS=str(SKEW_S))
    key = SECRET.encode()
    run = Pulse(["run"], env, tmp_path / "run.log")
    reader = None
    try:
        bad, valid = records(int(time.time() * 1000))
        # Bad and valid alternate, spread over the partitions; then one sentinel per partition,
        # the last record of each: once applied, everything before it there was processed.
        mixed = [r for pair in zip(bad, valid + [None] * len(bad)) for r in pair if r is not None]
        for i, rec in enumerate(mixed):
            rec.partition = i % PARTITIONS
        sentinels = [Rec(f"sentinel {p}", b"s", doc(f"s-{p}", "page_view", f"sentinel-{p}", int(time.time() * 1000)),
                         partition=p) for p in range(PARTITIONS)]
        produce_tracked(kafka_bootstrap, events, mixed + sentinels)
        n_valid = len(valid) + len(sentinels)

        # The flow kept going: every valid event, the sentinels included, is applied.
        def applied():
            try:
                return metric(url, 'pulse_events_out_total{outcome="applied"}') >= n_valid
            except OSError:
                return False

        wait_for(applied, 90, f"{n_valid} applied events\nrun log:\n{run.text()[-3000:]}")
        reader = RocksReader(state_dir / "store", tmp_path / "reader")

        def sentinels_stored():
            reader.catch_up()
            pids = [reader.profile_of(f"user:sentinel-{p}") for p in range(PARTITIONS)]
            return all(pid and reader.get(pid) and reader.get(pid).counts.get("page_view") == 1 for pid in pids)

        wait_for(sentinels_stored, 30, "the sentinels' profiles in the store")
        # The valid PII event is stored under its hashes.
        mail_pid = reader.profile_of("user:u-mail")
        assert mail_pid is not None
        assert reader.profile_of("email:" + hash_email(EMAIL, key)) == mail_pid
        assert reader.profile_of("phone:" + hash_phone(PHONE, key)) == mail_pid
        # Nothing of a dead-lettered record was applied.
        assert reader.profile_of("user:u-pii") is None and reader.profile_of("anon:anon-pii") is None
        assert reader.get(reader.profile_of("user:u-a")).counts == {"page_view": 1}

        # Every bad record is on the DLQ, once, with its reason, detail and origin.
        letters = consume_all(kafka_bootstrap, dlq, len(bad), 60)
        by_origin = {}
        for msg in letters:
            h = {k: v.decode() for k, v in msg.headers()}
            by_origin[(h["pulse.dlq.source"], int(h["pulse.dlq.offset"]))] = (msg, h)
        assert len(by_origin) == len(letters) == len(bad)
        assert set(by_origin) == {(f"{events}/{r.partition}", r.offset) for r in bad}
        for rec in bad:
            msg, h = by_origin[(f"{events}/{rec.partition}", rec.offset)]
            assert (rec.name, h["pulse.dlq.reason"]) == (rec.name, rec.reason)
            assert rec.detail in h["pulse.dlq.detail"], (rec.name, h["pulse.dlq.detail"])
            assert msg.key() == rec.key, rec.name
            if rec.reason == "bad_timestamp" and b"b-pii" in rec.value:
                continue  # checked below
            assert msg.value() == rec.value, rec.name
        pii_msg, _ = by_origin[next((f"{events}/{r.partition}", r.offset) for r in bad if b"b-pii" in r.value)]
        scrubbed = pii_msg.value()
        for secret in (EMAIL, EMAIL.lower(), PHONE, PHONE_DIGITS):
            assert secret.encode() not in scrubbed
        assert orjson.loads(scrubbed) == {**orjson.loads(bad[-1].value), "email": "<redacted>", "phone": "<redacted>"}
        for msg in letters:
            everything = b"".join([msg.key() or b"", msg.value() or b"", *(v for _, v in msg.headers())])
            assert EMAIL.encode() not in everything and EMAIL.lower().encode() not in everything

        # The counters agree, reason by reason, and nothing more was dead-lettered.
        expected = {reason: sum(r.reason == reason for r in bad) for reason in INVALID_REASONS}
        counted = {reason: metric(url, f'pulse_events_invalid_total{{reason="{reason}"}}')
                   for reason in INVALID_REASONS}
        assert counted == expected
        assert metric(url, 'pulse_events_out_total{outcome="invalid"}') == len(bad)
        assert metric(url, 'pulse_events_out_total{outcome="applied"}') == n_valid
        assert metric(url, "pulse_dlq_published_total") == len(bad)
        assert metric(url, "pulse_events_in_total") == len(bad) + n_valid
    finally:
        if reader is not None:
            reader.close()
        run.stop()
    assert run.proc.returncode == 0, run.text()[-3000:]

    # The raw email (and phone) is nowhere on disk: not in any file of the state directory,
    # the reader's directory or the log, nor in any key or value of the store.
    files = all_bytes(tmp_path)
    assert any(hash_email(EMAIL, key).encode() in data for data in files.values())  # the scan sees the store
    for secret in (EMAIL, EMAIL.lower(), PHONE):
        assert [str(f) for f, data in files.items() if secret.encode() in data] == [], secret
    contents = store_contents(state_dir / "store")
    assert any(hash_email(EMAIL, key).encode() in kv for kv in contents)
    for secret in (EMAIL.lower(), PHONE, PHONE_DIGITS):
        assert not [kv for kv in contents if secret.encode() in kv.lower()], secret
