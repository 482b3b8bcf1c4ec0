"""Experiment definitions: validation with positions, deterministic weighted assignment."""

from __future__ import annotations

import pytest

from operators.experiments import ExperimentError, parse_experiments

GOOD = """experiments:
  - id: reco_test
    surface: recommendations
    layer: reco
    population: vip
    start: 2026-11-01T00:00:00Z
    stop: 2027-01-01T00:00:00Z
    metric: {primary: conversion, window: 7d}
    guardrails: [revenue]
    variants:
      - {id: control, weight: 0.2, control: true}
      - {id: personal, weight: 0.8, strategy: personal}
  - id: hero_test
    surface: hero
    variants:
      - {id: control, weight: 0.5, control: true}
      - {id: big, weight: 0.5, module: hero_big}
"""
T_NOV = 1_795_000_000_000  # 2026-11-17


def test_a_good_file_loads_with_every_field():
    exps = parse_experiments(GOOD, "x.yaml", segments={"vip"}, surfaces={"hero"}, modules={"hero": {"hero_big"}})
    reco = exps.by_id["reco_test"]
    assert (reco.surface, reco.layer, reco.population, reco.metric, reco.window_ms, reco.guardrails) == (
        "recommendations", "reco", "vip", "conversion", 7 * 86_400_000, ("revenue",))
    assert reco.control.id == "control" and reco.active(T_NOV) and not reco.active(1_900_000_000_000)
    assert [e.id for e in exps.for_surface("hero", T_NOV)] == ["hero_test"]
    assert reco.eligible({"vip": [1, "v"]}) and not reco.eligible({}) and not reco.eligible(None)


def test_assignment_is_deterministic_weighted_and_independent_between_experiments():
    exps = parse_experiments(GOOD)
    reco, hero = exps.by_id["reco_test"], exps.by_id["hero_test"]
    units = [f"user:u{i}" for i in range(20_000)]
    first = [reco.assign(u).id for u in units]
    restarted = parse_experiments(GOOD).by_id["reco_test"]  # a "restart": definitions parsed again
    assert first == [restarted.assign(u).id for u in units]
    share = first.count("control") / len(units)
    assert 0.19 < share < 0.21
    # Different salts: being in reco's control says nothing about hero's split.
    in_control = [u for u, v in zip(units, first) if v == "control"]
    hero_share = sum(hero.assign(u).id == "control" for u in in_control) / len(in_control)
    assert 0.47 < hero_share < 0.53


@pytest.mark.parametrize("text,line,col,message", [
    ("experiments:\n  - id: a\n    surface: hero\n    variants:\n      - {id: x, weight: 0.6}\n      - {id: y, weight: 0.6}\n",
     4, 5, "experiment 'a': variant weights sum to 1.2, not 1"),
    ("experiments:\n  - id: a\n    surface: hero\n    population: vpi\n    variants:\n      - {id: x, weight: 0.5}\n"
     "      - {id: y, weight: 0.5}\n", 4, 17, "population 'vpi' is not a known segment"),
    ("experiments:\n  - id: a\n    surface: hero\n    variants:\n      - {id: x, weight: 0.5}\n      - {id: y, weight: 0.5}\n"
     "  - id: b\n    surface: hero\n    variants:\n      - {id: x, weight: 0.5}\n      - {id: y, weight: 0.5}\n",
     7, 5, "experiment 'b': overlaps experiment 'a' on surface 'hero' in time: give each a distinct 'layer'"),
    ("experiments:\n  - id: a\n    surface: hero\n    variants:\n      - {id: x, weight: 1.0}\n", 4, 5,
     "at least two variants"),
    ("experiments:\n  - id: a\n    surface: hero\n    start: yesterday\n    variants:\n      - {id: x, weight: 0.5}\n"
     "      - {id: y, weight: 0.5}\n", 4, 12, "'yesterday' is not an ISO-8601 time"),
    ("experiments:\n  - id: a\n    surface: recommendations\n    variants:\n      - {id: x, weight: 0.5, module: m}\n"
     "      - {id: y, weight: 0.5}\n", 5, 38, "'module' is for a content slot"),
    ("experiments:\n  - id: a\n    surface: hero\n    variants:\n      - {id: x, weight: 0.5, control: true}\n"
     "      - {id: y, weight: 0.5, control: true}\n", 4, 5, "at most one variant may be the control"),
    ("experiments:\n  - id: a\n    surface: banner\n    variants:\n      - {id: x, weight: 0.5}\n      - {id: y, weight: 0.5}\n",
     3, 14, "unknown surface 'banner'"),
    ("experiments:\n  - id: a\n    surfce: hero\n", 3, 5, "unknown key 'surfce'"),
])
def test_bad_definitions_fail_with_file_line_column_and_reason(text, line, col, message):
    with pytest.raises(ExperimentError) as err:
        parse_experiments(text, "exp.yaml", segments={"vip"}, surfaces={"hero"})
    assert (err.value.line, err.value.column) == (line, col), str(err.value)
    assert message in str(err.value) and str(err.value).startswith(f"exp.yaml:{line}:{col}: ")


def test_experiments_in_distinct_layers_or_disjoint_times_may_share_a_surface():
    text = """experiments:
  - {id: a, surface: hero, layer: l1, variants: [{id: x, weight: 0.5}, {id: y, weight: 0.5}]}
  - {id: b, surface: hero, layer: l2, variants: [{id: x, weight: 0.5}, {id: y, weight: 0.5}]}
  - {id: c, surface: hero, layer: l1, start: 2030-01-01T00:00:00Z,
     variants: [{id: x, weight: 0.5}, {id: y, weight: 0.5}]}
"""
    with pytest.raises(ExperimentError, match="both in layer 'l1'"):
        parse_experiments(text)
    ok = text.replace("  - {id: a, surface: hero, layer: l1,",
                      "  - {id: a, surface: hero, layer: l1, stop: 2029-01-01T00:00:00Z,")
    assert [e.id for e in parse_experiments(ok).experiments] == ["a", "b", "c"]
