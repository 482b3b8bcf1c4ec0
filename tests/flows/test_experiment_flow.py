"""Exposures joined with outcomes in the flow: enrolment on the first exposure, conversions
and revenue within the attribution window (also for purchases read before the exposure),
per-variant daily totals in the store, replays counted once."""

from __future__ import annotations

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord
from operators.attribution import Totals
from operators.experiments import parse_experiments
from state.store import MemoryStore, parse_experiment_key

T0 = 1_795_800_000_000
DAY = 86_400_000
EXPERIMENTS = parse_experiments("""experiments:
  - id: reco
    surface: recommendations
    metric: {primary: conversion, window: 2d}
    variants:
      - {id: control, weight: 0.5, control: true}
      - {id: personal, weight: 0.5}
""")


def event(i, type_, user, ts, **fields) -> RawRecord:
    doc = {"event_id": f"e{i}", "type": type_, "user_id": user, "timestamp": ts, **fields}
    return RawRecord(orjson.dumps(doc), user.encode(), "events/0", i, ts)


def exposure(i, user, variant, ts, experiment="reco") -> RawRecord:
    doc = {"experiment_id": experiment, "variant_id": variant, "unit": f"user:{user}", "ts_ms": ts}
    return RawRecord(orjson.dumps(doc), user.encode(), "exposures/0", i, ts)


def run(store, events, exposures):
    dead: list = []
    run_main(build_flow(TestingSource(events), TestingSink(dead), store, exposures=TestingSource(exposures),
                        experiments=EXPERIMENTS))
    return dead


def totals(store) -> dict[str, Totals]:
    out: dict[str, Totals] = {}
    for key, value in store.scan(b"x"):
        _exp, variant, _day = parse_experiment_key(key)
        out.setdefault(variant, Totals()).add(Totals.from_record(orjson.loads(value)))
    return out


def test_exposures_enrol_and_outcomes_in_the_window_count_once_per_unit():
    store = MemoryStore()
    events = [  # in time order on one partition
        event(0, "purchase", "ann", T0 + 1000, item_id="a", price=30),       # before her exposure: not hers
        event(1, "product_view", "bob", T0 + 5000, item_id="d"),
        event(2, "purchase", "cy", T0 + 10_000, item_id="f", price=50),     # read before cy's exposure
        event(3, "purchase", "ann", T0 + 2 * 3_600_000, item_id="b", price=20),
        event(4, "purchase", "ann", T0 + DAY, item_id="c", price=10),       # second order: revenue only
        event(5, "purchase", "bob", T0 + 3 * DAY, item_id="e", price=99),   # after bob's 2-day window
    ]
    exposures = [exposure(0, "ann", "personal", T0 + 3_600_000), exposure(1, "bob", "control", T0 + 1000),
                 exposure(2, "ann", "personal", T0 + 4 * 3_600_000),  # a second exposure: still one unit
                 exposure(3, "cy", "control", T0 + 5000),
                 RawRecord(b"{not json", b"x", "exposures/0", 4, T0)]
    dead = run(store, events, exposures)
    assert [d.error.reason for d in dead] == ["not_json"]
    got = totals(store)
    assert (got["personal"].units, got["personal"].converted, got["personal"].revenue) == (1, 1, 30.0)
    assert got["personal"].revenue_sq == 900.0  # ann: one unit with 30 of revenue
    assert (got["control"].units, got["control"].converted, got["control"].revenue) == (2, 1, 50.0)
    assert got["control"].engaged == 1  # bob viewed a product within his window
    assert store.get("user:ann").experiments["reco"][:2] == ["personal", T0 + 3_600_000]


def test_reading_the_same_records_again_changes_no_total():
    store = MemoryStore()
    events = [event(0, "purchase", "ann", T0 + 2000, item_id="b", price=20)]
    exposures = [exposure(0, "ann", "personal", T0 + 1000)]
    run(store, events, exposures)
    first = {k: v for k, v in store.scan(b"x")}
    run(store, events, exposures)  # a restart re-reads both topics
    assert {k: v for k, v in store.scan(b"x")} == first
