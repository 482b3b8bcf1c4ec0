"""End to end: synthetic populations through the real flow (events + exposures into
RocksDB), then the report. A variant that truly converts better is found significant; a
null difference is not; a 60/40 split of a 50/50 experiment raises the sample-ratio flag."""

from __future__ import annotations

import random

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.profile_flow import build_flow
from flows.records import RawRecord
from operators.experiment_report import analyze
from operators.experiments import parse_experiments
from pulse.cli import main
from state.experiment_totals import daily_totals
from state.store import RocksStore

T0 = 1_795_000_000_000
HOUR, DAY = 3_600_000, 86_400_000
EXPERIMENTS_YAML = """experiments:
  - id: reco
    surface: recommendations
    metric: {primary: conversion, window: 7d}
    guardrails: [revenue]
    variants:
      - {id: control, weight: 0.5, control: true}
      - {id: personal, weight: 0.5, strategy: personal}
"""
EXP = parse_experiments(EXPERIMENTS_YAML).by_id["reco"]


def population(seed: int, users: int, rates: dict[str, float], split: float | None = None):
    """Exposures over 21 days and purchases following them: (event records, exposure records)."""
    rng = random.Random(seed)
    events, exposures = [], []
    for i in range(users):
        unit = f"user:u{i}"
        if split is None:
            variant = EXP.assign(unit).id
        else:  # a broken assignment: not the configured weights
            variant = "personal" if rng.random() < split else "control"
        t = T0 + rng.randrange(21 * DAY)
        exposures.append({"experiment_id": "reco", "variant_id": variant, "unit": unit, "ts_ms": t})
        if rng.random() < rates[variant]:
            events.append({"event_id": f"p{i}", "type": "purchase", "user_id": f"u{i}",
                           "timestamp": t + rng.randrange(1, 72) * HOUR, "item_id": "sku",
                           "price": round(rng.uniform(20, 80), 2)})
        if rng.random() < 0.3:
            events.append({"event_id": f"v{i}", "type": "product_view", "user_id": f"u{i}",
                           "timestamp": t + rng.randrange(1, 24) * HOUR, "item_id": "sku"})
    events.sort(key=lambda e: e["timestamp"])
    exposures.sort(key=lambda e: e["ts_ms"])
    ev = [RawRecord(orjson.dumps(e), e["user_id"].encode(), "events/0", n, e["timestamp"]) for n, e in enumerate(events)]
    ex = [RawRecord(orjson.dumps(e), e["unit"].encode(), "exposures/0", n, e["ts_ms"]) for n, e in enumerate(exposures)]
    return ev, ex


def run(tmp_path, seed, rates, split=None, users=12_000):
    store = RocksStore(tmp_path / "store")
    events, exposures = population(seed, users, rates, split)
    dead: list = []
    run_main(build_flow(TestingSource(events), TestingSink(dead), store, exposures=TestingSource(exposures),
                        experiments=parse_experiments(EXPERIMENTS_YAML)))
    assert dead == []
    report = analyze(EXP, daily_totals(store, "reco"))
    store.close()
    return report


def primary(report):
    return next(c for c in report.comparisons if c.metric == "conversion")


def test_a_true_uplift_is_significant_and_the_split_is_healthy(tmp_path):
    report = run(tmp_path, 1, {"control": 0.05, "personal": 0.08})
    comp = primary(report)
    assert comp.significant and comp.always_valid_p < 0.05 and comp.p_value < 0.05
    assert comp.cs_low > 0 and comp.relative_uplift > 0.2
    assert 0.02 < comp.difference < 0.04
    assert sum(v.totals.units for v in report.variants) == 12_000
    assert not report.srm.mismatch
    assert len(report.days) >= 21 and len(comp.history) >= 21
    revenue = next(c for c in report.comparisons if c.metric == "revenue")
    assert revenue.difference > 0  # more buyers, more revenue per unit


def test_no_true_difference_is_not_significant(tmp_path):
    comp = primary(run(tmp_path, 2, {"control": 0.05, "personal": 0.05}))
    assert not comp.significant and comp.always_valid_p > 0.05
    assert comp.cs_low < 0 < comp.cs_high


def test_a_60_40_split_on_a_50_50_experiment_raises_the_sample_ratio_flag(tmp_path):
    report = run(tmp_path, 3, {"control": 0.05, "personal": 0.05}, split=0.6)
    assert report.srm.mismatch and report.srm.p_value < 1e-6


def test_the_report_command_prints_the_table_and_writes_a_png(tmp_path, monkeypatch, capsys):
    exp_file = tmp_path / "experiments.yaml"
    exp_file.write_text(EXPERIMENTS_YAML)
    run(tmp_path / "state", 4, {"control": 0.05, "personal": 0.08}, users=4000)
    monkeypatch.setenv("PULSE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PULSE_EXPERIMENTS_PATH", str(exp_file))
    png = tmp_path / "reco.png"
    assert main(["experiments", "report", "reco", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "experiment reco (surface recommendations, primary metric conversion" in out
    assert "personal vs control on conversion" in out and "sample ratio" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["experiments", "report", "nope"]) == 2
