"""Segments in the profile flow (TestingSource, MemoryStore): triggers in the outbox with
the membership index, time-caused exits and entries, too-late events, replays, backfill."""

from __future__ import annotations

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord, Tick
from operators.segments import parse_segments
from state.store import MemoryStore, member_key

T0 = 1_795_800_000_000  # a whole second
MIN = 60_000
SEGMENTS = parse_segments("""
segments:
  - id: cart_abandoner
    condition: count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0
  - id: waited_30m
    condition: count(add_to_cart, 2h) >= 1 and since(add_to_cart) >= 30m and since(purchase) >= 30m
  - id: outdoor_fan
    marketing: false
    condition: count(product_view, 7d, category="outdoor") >= 2
""", "test.yaml")


def ev(i: int, type_: str, user: str, ts: int, **fields) -> dict:
    return {"event_id": f"e{i}", "type": type_, "user_id": user, "timestamp": ts, **fields}


def records(docs: list[dict], source: str = "events/0", final: bool = True) -> list:
    out: list = [RawRecord(orjson.dumps(d), d["user_id"].encode(), source, i, d["timestamp"])
                 for i, d in enumerate(docs)]
    if final:
        out.append(Tick(source, None, final=True))
    return out


def run(store, items, segments=SEGMENTS, lateness_ms=10 * MIN):
    dlq: list = []
    flow = build_flow(TestingSource(items), TestingSink(dlq), store, segments=segments, lateness_ms=lateness_ms)
    run_main(flow)
    return dlq


def outbox(store) -> list[dict]:
    return [orjson.loads(v) for _k, v in store.scan(b"o")]


def transitions(store, profile_id=None) -> list[tuple]:
    return [(t["profile_id"], t["segment_id"], t["transition"], t["at_ms"], t["cause"]) for t in outbox(store)
            if profile_id is None or t["profile_id"] == profile_id]


def test_cart_abandoner_enters_on_the_event_and_exits_when_ten_minutes_pass():
    store = MemoryStore()
    docs = [
        ev(1, "add_to_cart", "a", T0 + 500, item_id="tent", price=100),
        # Another user's events move the partition's event time past the 10 minutes.
        ev(2, "page_view", "b", T0 + 11 * MIN),
    ]
    run(store, records(docs))
    got = transitions(store, "user:a")
    # The bucket of T0+500 (second resolution) leaves the 10 m window at T0 + 10 m.
    assert got[:2] == [("user:a", "cart_abandoner", "entered", T0 + 500, "e1"),
                       ("user:a", "cart_abandoner", "exited", T0 + 10 * MIN, "time")]
    assert store.get_raw(member_key("cart_abandoner", "user:a")) is None


def test_time_alone_enters_waited_30m_with_no_further_event_from_the_user():
    store = MemoryStore()
    docs = [ev(1, "add_to_cart", "a", T0, item_id="tent", price=100), ev(2, "page_view", "b", T0 + 45 * MIN)]
    run(store, records(docs))
    waited = [t for t in transitions(store, "user:a") if t[1] == "waited_30m"]
    assert waited == [("user:a", "waited_30m", "entered", T0 + 30 * MIN, "time")]
    assert int.from_bytes(store.get_raw(member_key("waited_30m", "user:a")), "big") == T0 + 30 * MIN
    profile = store.get("user:a")
    assert profile.segments["waited_30m"][0] == T0 + 30 * MIN
    # Still pending: the 2 h window lapses at T0 + 2 h (not reached by the stream).
    assert profile.next_check_ms == T0 + 120 * MIN


def test_a_purchase_exits_immediately_with_the_event_as_cause():
    store = MemoryStore()
    docs = [ev(1, "add_to_cart", "a", T0, item_id="tent", price=100),
            ev(2, "purchase", "a", T0 + MIN, item_id="tent", price=100)]
    run(store, records(docs))
    assert transitions(store, "user:a") == [("user:a", "cart_abandoner", "entered", T0, "e1"),
                                            ("user:a", "cart_abandoner", "exited", T0 + MIN, "e2")]


def test_trigger_records_carry_ids_versions_and_values():
    store = MemoryStore()
    run(store, records([ev(1, "add_to_cart", "a", T0, item_id="tent", price=100)]))
    (trig,) = outbox(store)
    assert trig["segment_version"] == SEGMENTS.by_id["cart_abandoner"].version
    assert trig["values"]["count(add_to_cart, 10m)"] == 1
    assert len(trig["trigger_id"]) == 32 and trig["backfill"] is False


def test_without_personalization_consent_no_marketing_segment_but_others_still_apply():
    store = MemoryStore()
    docs = [ev(0, "consent_update", "a", T0, consent={"personalization": False}),
            ev(1, "add_to_cart", "a", T0 + 1000, item_id="tent", price=100),
            ev(2, "product_view", "a", T0 + 2000, item_id="t1", category="outdoor/tents"),
            ev(3, "product_view", "a", T0 + 3000, item_id="t2", category="outdoor/tents")]
    run(store, records(docs))
    assert [t[1:3] for t in transitions(store)] == [("outdoor_fan", "entered")]


def test_an_event_older_than_the_lateness_goes_to_the_dead_letters_and_changes_nothing():
    store = MemoryStore()
    docs = [ev(1, "page_view", "b", T0 + 60 * MIN),
            ev(2, "add_to_cart", "a", T0, item_id="tent", price=100),  # 60 min behind, lateness 10 min
            ev(3, "add_to_cart", "c", T0 + 55 * MIN, item_id="tent", price=100)]  # late but accepted
    dlq = run(store, records(docs))
    assert [(d.error.reason, d.record.offset) for d in dlq] == [("too_late", 1)]
    assert store.get("user:a") is None
    assert store.get("user:c").counts == {"add_to_cart": 1}
    # Accepted late: it enters at the profile's clock, which is its own event time here.
    assert ("user:c", "cart_abandoner", "entered", T0 + 55 * MIN, "e3") in transitions(store)


def test_reprocessing_the_same_records_emits_no_new_triggers():
    store = MemoryStore()
    docs = [ev(1, "add_to_cart", "a", T0, item_id="tent", price=100), ev(2, "page_view", "b", T0 + 11 * MIN)]
    run(store, records(docs))
    first = outbox(store)
    run(store, records(docs))  # a restart that re-reads everything
    assert outbox(store) == first


def test_the_final_tick_fires_what_the_stream_end_passed_and_nothing_beyond():
    store = MemoryStore()
    docs = [ev(1, "add_to_cart", "a", T0, item_id="tent", price=100), ev(2, "page_view", "b", T0 + 5 * MIN)]
    run(store, records(docs))
    assert [t[2] for t in transitions(store, "user:a")] == ["entered"]  # 10 minutes have not passed
    assert store.get("user:a").next_check_ms == T0 + 10 * MIN


def test_changed_definitions_backfill_entries_and_removed_ones_drop_silently():
    from flows.runtime_state import ProcessorState
    from flows.profile_flow import ProfileLogic
    from operators.profile import Policy

    store = MemoryStore()
    docs = [ev(1, "product_view", "a", T0, item_id="t1", category="outdoor/tents"),
            ev(2, "product_view", "a", T0 + 1000, item_id="t2", category="outdoor/tents")]
    run(store, records(docs))
    assert ProfileLogic(ProcessorState(store, policy=Policy(), max_aliases=50, cache_profiles=100,
                                       segments=SEGMENTS)).backfill() == 0  # memberships already current
    before = len(outbox(store))
    changed = parse_segments("""
segments:
  - id: outdoor_fan
    marketing: false
    condition: count(product_view, 7d, category="outdoor") >= 1
  - id: recent_viewer
    condition: since(product_view) < 1d
  - id: viewer
    condition: count(product_view, 7d) >= 2
""")
    state = ProcessorState(store, policy=Policy(), max_aliases=50, cache_profiles=100, segments=changed)
    assert ProfileLogic(state).backfill() == 2
    new = outbox(store)[before:]
    # A changed definition re-enters its members under the new version; recency of every
    # event type is always kept, so a new since() segment backfills exactly. A windowed
    # series no segment tracked before (viewer's) starts counting now: documented.
    assert sorted((t["segment_id"], t["transition"], t["backfill"], t["cause"], t["segment_version"]) for t in new) == [
        ("outdoor_fan", "entered", True, "backfill", changed.by_id["outdoor_fan"].version),
        ("recent_viewer", "entered", True, "backfill", changed.by_id["recent_viewer"].version)]
    assert set(store.get("user:a").segments) == {"outdoor_fan", "recent_viewer"}
    assert ProfileLogic(state).backfill() == 0  # nothing changed since


def test_evaluating_only_what_an_event_changed_equals_evaluating_everything(monkeypatch):
    # The example segments read counters, context (country, device, channel, location),
    # traits, the cart and lifetime attributes; the synthetic stream changes all of them.
    from operators.segments import load_segments
    from operators.synthetic import ClickstreamGenerator
    from operators.triggers import SegmentEngine

    segments = load_segments("deploy/segments.yaml")
    gen = ClickstreamGenerator(seed=21, users=300, invalid_rate=0.0)
    recs = [RawRecord(v, k, "events/0", i, T0 + i * 20_000)
            for i, (k, v) in enumerate(gen.next_record(T0 + i * 20_000) for i in range(6000))]
    recs.append(Tick("events/0", None, final=True))

    def triggers(full: bool) -> list[tuple]:
        if full:
            original = SegmentEngine.on_event
            monkeypatch.setattr(SegmentEngine, "on_event",
                                lambda self, p, eid, ts, etype=None, full=False: original(self, p, eid, ts, etype, True))
        store = MemoryStore()
        run(store, recs, segments=segments)
        monkeypatch.undo()
        return [(t["profile_id"], t["segment_id"], t["transition"], t["at_ms"], t["cause"]) for t in outbox(store)]

    partial, full = triggers(False), triggers(True)
    assert len(full) > 500 and {t[1] for t in full} >= {"cart_abandoner", "app_regular", "alpine_local"}
    assert partial == full


def test_a_context_change_alone_moves_a_profile_into_a_segment():
    segs = parse_segments("""
segments:
  - id: german_viewer
    condition: country == "DE" and count(product_view, 7d) >= 1
  - id: adult
    condition: trait("age_band") in ["25-34", "35-44"]
""")
    store = MemoryStore()
    geo = {"country": "FR", "city": "Lyon"}
    docs = [ev(1, "product_view", "a", T0, item_id="t", context={"geo": geo}),
            ev(2, "page_view", "a", T0 + 1000, context={"geo": {"country": "DE", "city": "Berlin"}}),
            ev(3, "login", "a", T0 + 2000, traits={"age_band": "25-34"})]
    run(store, records(docs), segments=segs)
    assert [t[1:3] + (t[4],) for t in transitions(store)] == [("german_viewer", "entered", "e2"),
                                                               ("adult", "entered", "e3")]


def test_an_event_after_a_since_offset_passed_re_evaluates_the_since_readers():
    # since() readers are evaluated on an event only when the time since the previous
    # event had reached a comparison's offset (SegmentSet.changed_inputs). inactive_1h
    # enters at T0 + 1 h (time); the next event, half a second after that instant, must
    # take the user out at once; one 59 minutes later changes nothing.
    segments = parse_segments("""
segments:
  - id: inactive_1h
    condition: inactive(1h)
""", "test.yaml")
    store = MemoryStore()
    docs = [ev(1, "page_view", "a", T0), ev(2, "page_view", "b", T0 + 60 * MIN),
            ev(3, "page_view", "a", T0 + 60 * MIN + 500), ev(4, "page_view", "a", T0 + 119 * MIN),
            ev(5, "page_view", "b", T0 + 119 * MIN + 1000)]
    run(store, records(docs), segments=segments)
    assert transitions(store, "user:a") == [
        ("user:a", "inactive_1h", "entered", T0 + 60 * MIN, "time"),
        ("user:a", "inactive_1h", "exited", T0 + 60 * MIN + 500, "e3"),
    ]
    assert "inactive_1h" not in store.get("user:a").segments
