"""Trustworthy input end to end, on the real broker with `pulse run` and `pulse serve`:
duplicates are ignored, an anonymous session followed by a login becomes one profile,
consent is honoured, and an erase leaves no trace in any column family."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import orjson
import pytest
from confluent_kafka import Consumer

from operators.pii import hash_email
from proto.pulse.v1 import pulse_pb2
from state.store import RocksStore
from tests.integration.test_pipeline import REPO, PulsePair, metric, wait_for

pytestmark = pytest.mark.kafka
SECRET = "integration-test-secret"
ADMIN_KEY = "test-admin-key"
KEY = [("x-api-key", ADMIN_KEY)]  # with a key configured, every Pulse RPC needs one


def ev(event_id: str, type_: str, ts: int, **ids_and_fields) -> tuple[bytes, bytes]:
    doc = {"event_id": event_id, "type": type_, "timestamp": ts, **ids_and_fields}
    key = (doc.get("user_id") or doc.get("anonymous_id") or doc.get("device_id") or "k").encode()
    return key, orjson.dumps(doc)


@pytest.fixture
def pulse(kafka_bootstrap, kafka_topic, tmp_path):
    pair = PulsePair(kafka_bootstrap, kafka_topic("events", partitions=3), kafka_topic("dlq"), tmp_path,
                     PULSE_SERVING_ADMIN_API_KEY=ADMIN_KEY)

    def profile(user, predicate=lambda p: True, timeout=60):
        def attempt():
            try:
                p = pair.stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=user), timeout=2, metadata=KEY).profile
            except grpc.RpcError as err:
                if err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    return None
                raise
            return p if predicate(p) else None
        return wait_for(attempt, timeout, f"profile of {user!r}\n{pair.logs()}")

    pair.profile = profile
    yield pair
    pair.stop()


def test_duplicates_are_ignored_and_counted(pulse):
    t = int(time.time() * 1000)
    view = ev("dup-1", "product_view", t, user_id="dana", item_id="tent-1", category="outdoor/tents", price=99.0)
    pulse.produce([view, view, ev("dup-2", "product_view", t + 1, user_id="dana", item_id="tent-1"), view])
    p = pulse.profile("dana", lambda p: sum(p.event_counts.values()) >= 2)
    # A sentinel after the duplicates proves they were all processed.
    pulse.produce([ev("dup-3", "page_view", t + 2, user_id="dana")])
    p = pulse.profile("dana", lambda p: p.event_counts.get("page_view") == 1)
    assert dict(p.event_counts) == {"product_view": 2, "page_view": 1}
    assert metric(pulse.metrics, 'pulse_events_out_total{outcome="duplicate"}') == 2


def test_anonymous_session_then_login_is_one_merged_profile(pulse):
    t = int(time.time() * 1000) - 60_000
    anon = [
        ev("a1", "page_view", t, anonymous_id="cookie-7"),
        ev("a2", "product_view", t + 1, anonymous_id="cookie-7", item_id="boot-1", category="outdoor/boots", price=80.0),
        ev("a3", "add_to_cart", t + 2, anonymous_id="cookie-7", item_id="boot-1", category="outdoor/boots", price=80.0),
        # The app on a phone with another cookie, then the phone with the first cookie:
        # identify events link them (a chain: cookie-8 - phone-7 - cookie-7).
        ev("a4", "identify", t + 3, anonymous_id="cookie-8", device_id="phone-7"),
        ev("a5", "search", t + 4, anonymous_id="cookie-8", query="socks"),
        ev("a6", "identify", t + 4, anonymous_id="cookie-7", device_id="phone-7"),
    ]
    login = ev("l1", "login", t + 5, user_id="erin", anonymous_id="cookie-7", email="  Erin@Example.COM ")
    after = [
        ev("u1", "purchase", t + 6, user_id="erin", items=[{"item_id": "boot-1", "price": 80.0, "quantity": 1,
                                                           "category": "outdoor/boots"}]),
        ev("u2", "page_view", t + 7, anonymous_id="cookie-8"),  # an old alias still lands in erin's profile
    ]
    pulse.produce(anon + [login] + after)
    expected = {"page_view": 2, "product_view": 1, "add_to_cart": 1, "identify": 2, "search": 1, "login": 1,
                "purchase": 1}
    p = pulse.profile("erin", lambda p: dict(p.event_counts) == expected)
    assert p.profile_id == "user:erin"
    email_alias = "email:" + hash_email("erin@example.com", SECRET.encode())
    assert set(p.aliases) == {"user:erin", "anon:cookie-7", "anon:cookie-8", "device:phone-7", email_alias}
    assert p.orders == 1 and p.total_spend == pytest.approx(80.0)
    assert not p.cart  # bought: no longer in the cart
    # Every alias answers with the same merged profile.
    for alias in ("anon:cookie-7", "device:phone-7", email_alias):
        assert pulse.profile(alias).profile_id == "user:erin"
    assert metric(pulse.metrics, "pulse_identity_merges_total") >= 1
    # The raw email is nowhere in the store, only its keyed hash.
    pulse.run.stop()
    store = RocksStore(pulse.tmp / "state" / "store")
    try:
        dump = b"".join(k + v for _cf, k, v in store.dump()).lower()
    finally:
        store.close()
    assert b"erin@example.com" not in dump and email_alias.encode() in dump


def test_consent_controls_what_is_stored_and_personalization(pulse):
    t = int(time.time() * 1000) - 30_000
    pulse.produce([
        ev("c1", "page_view", t, user_id="fay"),
        ev("c2", "consent_update", t + 1, user_id="fay", consent={"personalization": False}),
        ev("c3", "product_view", t + 2, user_id="fay", item_id="x"),
    ])
    p = pulse.profile("fay", lambda p: p.event_counts.get("product_view") == 1)
    assert not p.personalization_allowed
    assert not p.consent.personalization.granted and p.consent.personalization.explicit
    assert p.consent.analytics.granted and not p.consent.analytics.explicit  # opt-out default
    # Withdrawing analytics clears the behaviour and stops storing it.
    pulse.produce([ev("c4", "consent_update", t + 3, user_id="fay", consent={"analytics": False}),
                   ev("c5", "page_view", t + 4, user_id="fay")])
    p = pulse.profile("fay", lambda p: not p.consent.analytics.granted)
    wait_for(lambda: metric(pulse.metrics, 'pulse_events_out_total{outcome="suppressed"}') >= 1, 30,
             "the page view after withdrawal to be suppressed")
    p = pulse.profile("fay")
    assert dict(p.event_counts) == {} and p.version > 0


def test_erase_leaves_no_trace_and_is_published(pulse):
    t = int(time.time() * 1000) - 30_000
    email_alias = "email:" + hash_email("gus@example.org", SECRET.encode())
    pulse.produce([
        ev("g1", "page_view", t, anonymous_id="cookie-gus"),
        ev("g2", "login", t + 1, user_id="gus", anonymous_id="cookie-gus", email="gus@example.org"),
        ev("g3", "add_to_cart", t + 2, user_id="gus", item_id="tent-9", price=300.0),
        ev("h1", "page_view", t + 3, user_id="hal"),  # someone else, who must stay
    ])
    pulse.profile("gus", lambda p: p.event_counts.get("add_to_cart") == 1)
    pulse.profile("hal")
    export = pulse.admin.ExportUser(pulse_pb2.ExportUserRequest(user_id="gus"), timeout=5,
                                    metadata=[("x-api-key", ADMIN_KEY)])
    doc = json.loads(export.document_json)
    assert doc["profile_id"] == "user:gus" and email_alias in doc["aliases"]
    assert doc["profile"]["counts"] == {"page_view": 1, "login": 1, "add_to_cart": 1}

    cli = subprocess.run([sys.executable, "-m", "pulse.cli", "erase", "gus", "--request-id", "req-gus", "--wait", "60"],
                         cwd=REPO, env={**__import__("os").environ, **pulse.env}, capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr + cli.stdout
    for alias in ("gus", "anon:cookie-gus", email_alias):
        with pytest.raises(grpc.RpcError) as err:
            pulse.stub.GetProfile(pulse_pb2.GetProfileRequest(user_id=alias), timeout=2, metadata=KEY)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert pulse.profile("hal").profile_id == "user:hal"

    # The erase record is on the compacted erasures topic for downstream systems.
    consumer = Consumer({"bootstrap.servers": pulse.bootstrap, "group.id": "t-erasures",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([pulse.env["PULSE_KAFKA_ERASURES_TOPIC"]])
    msg = wait_for(lambda: (lambda m: m if m is not None and m.error() is None else None)(consumer.poll(0.5)),
                   30, "the erase record")
    consumer.close()
    record = orjson.loads(msg.value())
    assert msg.key() == b"user:gus" and record["request_id"] == "req-gus" and record["found"]
    assert set(record["aliases"]) == {"user:gus", "anon:cookie-gus", email_alias}

    # Later events for the same id are a new person.
    pulse.produce([ev("g4", "page_view", t + 10, user_id="gus")])
    p = pulse.profile("gus")
    assert dict(p.event_counts) == {"page_view": 1} and set(p.aliases) == {"user:gus"}

    # No trace of the erased person in any column family (besides the new profile).
    pulse.run.stop()
    store = RocksStore(pulse.tmp / "state" / "store")
    try:
        rows = list(store.dump())
    finally:
        store.close()
    blob = b"\n".join(cf.encode() + b" " + k + b" " + v for cf, k, v in rows)
    for trace in (b"cookie-gus", email_alias.encode()):
        assert trace not in blob, trace
    assert b"hal" in blob
    # What gus did stays only as anonymous aggregates: item statistics count the cart add
    # (keyed by item, with no reference to any person); no profile mentions the item.
    personal = b"\n".join(k + b" " + v for cf, k, v in rows if cf != "items")
    assert b"tent-9" not in personal
    item = orjson.loads(next(v for cf, k, v in rows if cf == "items" and k == b"itent-9"))
    assert item["carts"] == 1 and not any(key in item for key in ("user", "profile", "aliases"))
