"""Experiments: definitions (YAML), validation with precise positions, deterministic assignment.

An experiment splits the profiles eligible for one *surface* (``recommendations``, or a
content slot such as ``hero``) between variants by weight. Assignment hashes the
experiment's salt and the unit key (the profile id; for a visitor the server does not
know, the typed alias of the request), so it is the same on every server and after every
restart, and independent between experiments with different salts.

```yaml
experiments:
  - id: reco_personal_vs_popular      # [a-z][a-z0-9_]{0,63}, unique
    description: personalized recommendations against the popular list
    surface: recommendations          # or a content slot of content.yaml
    layer: reco                       # optional: experiments overlapping in time on one
                                      # surface need distinct layers
    population: all                   # or a segment id: only its members are in it
    start: 2026-11-01T00:00:00Z       # ISO-8601 with offset (optional: always started)
    stop: 2027-01-01T00:00:00Z        # optional
    salt: reco-2026-11                # optional, default: the id (change it to reshuffle)
    metric: {primary: conversion, window: 7d}   # conversion | revenue | click_through
    guardrails: [revenue]
    variants:
      - {id: control, weight: 0.5, control: true}      # the holdout: non-personal experience
      - {id: personal, weight: 0.5}
```

A variant may name ``strategy`` (recommendations: ``hybrid``, ``personal`` or ``popular``) or
``module`` (a content slot: force that module); the control variant gets the non-personal
experience. Weights must sum to 1.

>>> exps = parse_experiments('''
... experiments:
...   - id: hero_test
...     surface: hero
...     variants:
...       - {id: control, weight: 0.5, control: true}
...       - {id: big_banner, weight: 0.5, module: hero_big}
... ''')
>>> e = exps.by_id["hero_test"]
>>> v = e.assign("user:u42"); v.id in ("control", "big_banner"), e.assign("user:u42") is v
(True, True)
>>> split = [e.assign(f"user:u{i}").id for i in range(10_000)]
>>> 0.48 < split.count("control") / 10_000 < 0.52
True
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

SURFACE_RECOMMENDATIONS = "recommendations"
METRICS = ("conversion", "revenue", "click_through")
STRATEGIES = ("hybrid", "personal", "popular")
_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_EXPERIMENT_KEYS = {"id", "description", "surface", "layer", "population", "start", "stop", "salt", "metric",
                    "guardrails", "variants", "unit"}
_VARIANT_KEYS = {"id", "weight", "control", "strategy", "module", "description"}


class ExperimentError(ValueError):
    """A bad definition: ``file:line:column: experiment 'id': what is wrong``."""

    def __init__(self, file: str, experiment_id: str | None, line: int, column: int, message: str) -> None:
        self.file, self.experiment_id, self.line, self.column, self.message = file, experiment_id, line, column, message
        where = f"{file}:{line}:{column}: "
        who = f"experiment {experiment_id!r}: " if experiment_id else ""
        super().__init__(where + who + message)


@dataclass(frozen=True)
class Variant:
    id: str
    weight: float
    control: bool = False
    strategy: str | None = None
    module: str | None = None


@dataclass(frozen=True)
class Experiment:
    id: str
    surface: str
    variants: tuple[Variant, ...]
    description: str = ""
    layer: str | None = None
    population: str = "all"  # "all" or a segment id
    start_ms: int | None = None
    stop_ms: int | None = None
    salt: str = ""
    metric: str = "conversion"
    window_ms: int = 7 * 86_400_000
    guardrails: tuple[str, ...] = ()
    _cumulative: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def active(self, now_ms: int) -> bool:
        return (self.start_ms is None or now_ms >= self.start_ms) and (self.stop_ms is None or now_ms < self.stop_ms)

    def eligible(self, segments: dict | None) -> bool:
        """Whether a profile with these memberships is in the population (None: unknown visitor)."""
        return self.population == "all" or (segments is not None and self.population in segments)

    def bucket(self, unit: str) -> float:
        """The unit's position in [0, 1): 64 bits of BLAKE2b of salt and unit key."""
        digest = hashlib.blake2b(f"{self.salt}\x00{unit}".encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def assign(self, unit: str) -> Variant:
        x = self.bucket(unit)
        for variant, upper in zip(self.variants, self._cumulative):
            if x < upper:
                return variant
        return self.variants[-1]  # float rounding at the very top

    @property
    def control(self) -> Variant | None:
        return next((v for v in self.variants if v.control), None)


@dataclass(frozen=True)
class ExperimentSet:
    experiments: tuple[Experiment, ...] = ()

    @property
    def by_id(self) -> dict[str, Experiment]:
        return {e.id: e for e in self.experiments}

    def for_surface(self, surface: str, now_ms: int) -> list[Experiment]:
        """The experiments running on ``surface`` now (at most one per layer)."""
        return [e for e in self.experiments if e.surface == surface and e.active(now_ms)]


def parse_experiments(text: str, filename: str = "<experiments>", *, segments=None, surfaces=None,
                      modules=None) -> ExperimentSet:
    """Parse and validate. ``segments``: known segment ids (a population must be one);
    ``surfaces``: known content slots (plus ``recommendations``); ``modules``: slot ->
    module ids a variant may force. None skips that check."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ExperimentError(filename, None, line, col, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        return ExperimentSet()
    p = _Parser(filename, segments, surfaces, modules)
    top = p.mapping(root, None, "the file")
    unknown = set(top) - {"experiments"}
    if unknown:
        key = sorted(unknown)[0]
        p.fail(top[key][0], None, f"unexpected top-level key {key!r}: the only key is 'experiments'")
    if "experiments" not in top:
        return ExperimentSet()
    items = top["experiments"][1]
    if not isinstance(items, yaml.SequenceNode):
        p.fail(items, None, "'experiments' must be a list")
    out: list[Experiment] = []
    seen: dict[str, int] = {}
    for node in items.value:
        exp = p.experiment(node)
        if exp.id in seen:
            p.fail(node, exp.id, f"duplicate experiment id {exp.id!r} (first defined on line {seen[exp.id]})")
        seen[exp.id] = node.start_mark.line + 1
        for other in out:
            if other.surface == exp.surface and _overlap(other, exp) and (
                    exp.layer is None or other.layer is None or exp.layer == other.layer):
                how = (f"both in layer {exp.layer!r}" if exp.layer is not None and exp.layer == other.layer
                       else "give each a distinct 'layer'")
                p.fail(node, exp.id, f"overlaps experiment {other.id!r} on surface {exp.surface!r} in time: {how}")
        out.append(exp)
    return ExperimentSet(tuple(out))


def load_experiments(path, **checks) -> ExperimentSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentError(str(path), None, 1, 1, f"cannot read the file: {exc}") from None
    return parse_experiments(text, str(path), **checks)


def _overlap(a: Experiment, b: Experiment) -> bool:
    a0, a1 = a.start_ms or -math.inf, a.stop_ms or math.inf
    b0, b1 = b.start_ms or -math.inf, b.stop_ms or math.inf
    return a0 < b1 and b0 < a1


class _Parser:
    def __init__(self, filename: str, segments, surfaces, modules) -> None:
        self.file = filename
        self.segments = None if segments is None else set(segments)
        self.surfaces = None if surfaces is None else set(surfaces) | {SURFACE_RECOMMENDATIONS}
        self.modules = modules

    def fail(self, node, exp_id: str | None, message: str):
        raise ExperimentError(self.file, exp_id, node.start_mark.line + 1, node.start_mark.column + 1, message)

    def mapping(self, node, exp_id, what: str) -> dict[str, tuple[Any, Any]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, exp_id, f"{what} must be a mapping")
        out: dict[str, tuple[Any, Any]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.fail(key, exp_id, "keys must be plain names")
            if key.value in out:
                self.fail(key, exp_id, f"duplicate key {key.value!r} in {what}")
            out[key.value] = (key, value)
        return out

    def scalar(self, node, exp_id, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, exp_id, f"{what} must be a single value")
        return node.value

    def experiment(self, node) -> Experiment:
        raw = self.mapping(node, None, "an experiment")
        if "id" not in raw:
            self.fail(node, None, "an experiment has no 'id'")
        exp_id = self.scalar(raw["id"][1], None, "'id'")
        if not _ID.fullmatch(exp_id):
            self.fail(raw["id"][1], None, f"experiment id {exp_id!r} must match [a-z][a-z0-9_]* (at most 64 chars)")
        for key in raw:
            if key not in _EXPERIMENT_KEYS:
                self.fail(raw[key][0], exp_id, f"unknown key {key!r}; keys: {', '.join(sorted(_EXPERIMENT_KEYS))}")
        for key in ("surface", "variants"):
            if key not in raw:
                self.fail(node, exp_id, f"missing {key!r}")
        unit = self.scalar(raw["unit"][1], exp_id, "'unit'") if "unit" in raw else "profile"
        if unit != "profile":
            self.fail(raw["unit"][1], exp_id, f"unit {unit!r} is not supported: the unit is 'profile'")
        surface = self.scalar(raw["surface"][1], exp_id, "'surface'")
        if self.surfaces is not None and surface not in self.surfaces:
            self.fail(raw["surface"][1], exp_id,
                      f"unknown surface {surface!r}; surfaces: {', '.join(sorted(self.surfaces))}")
        population = self.scalar(raw["population"][1], exp_id, "'population'") if "population" in raw else "all"
        if population != "all" and self.segments is not None and population not in self.segments:
            self.fail(raw["population"][1], exp_id, f"population {population!r} is not a known segment (or 'all')")
        start = self.time(raw.get("start"), exp_id)
        stop = self.time(raw.get("stop"), exp_id)
        if start is not None and stop is not None and stop <= start:
            self.fail(raw["stop"][1], exp_id, "'stop' must be after 'start'")
        metric, window = "conversion", 7 * 86_400_000
        if "metric" in raw:
            m = self.mapping(raw["metric"][1], exp_id, "'metric'")
            for key in m:
                if key not in ("primary", "window"):
                    self.fail(m[key][0], exp_id, f"unknown key {key!r} in 'metric' (primary, window)")
            if "primary" in m:
                metric = self.scalar(m["primary"][1], exp_id, "'metric.primary'")
                if metric not in METRICS:
                    self.fail(m["primary"][1], exp_id, f"metric {metric!r} is not one of: {', '.join(METRICS)}")
            if "window" in m:
                window = self.duration(m["window"][1], exp_id)
        guardrails: tuple[str, ...] = ()
        if "guardrails" in raw:
            g = raw["guardrails"][1]
            if not isinstance(g, yaml.SequenceNode):
                self.fail(g, exp_id, "'guardrails' must be a list of metrics")
            names = [self.scalar(n, exp_id, "a guardrail") for n in g.value]
            for n, name in zip(g.value, names):
                if name not in METRICS:
                    self.fail(n, exp_id, f"guardrail {name!r} is not one of: {', '.join(METRICS)}")
            guardrails = tuple(names)
        variants = self.variants(raw["variants"], exp_id, surface)
        total = 0.0
        cumulative = []
        for v in variants:
            total += v.weight
            cumulative.append(total)
        if abs(total - 1.0) > 1e-9:
            self.fail(raw["variants"][0], exp_id, f"variant weights sum to {total:g}, not 1")
        layer = self.scalar(raw["layer"][1], exp_id, "'layer'") if "layer" in raw else None
        salt = self.scalar(raw["salt"][1], exp_id, "'salt'") if "salt" in raw else exp_id
        description = self.scalar(raw["description"][1], exp_id, "'description'") if "description" in raw else ""
        return Experiment(exp_id, surface, variants, description, layer, population, start, stop, salt, metric,
                          window, guardrails, tuple(cumulative))

    def variants(self, entry, exp_id, surface) -> tuple[Variant, ...]:
        key_node, node = entry
        if not isinstance(node, yaml.SequenceNode) or len(node.value) < 2:
            self.fail(key_node, exp_id, "'variants' must be a list of at least two variants")
        out: list[Variant] = []
        for vnode in node.value:
            raw = self.mapping(vnode, exp_id, "a variant")
            for key in raw:
                if key not in _VARIANT_KEYS:
                    self.fail(raw[key][0], exp_id, f"unknown variant key {key!r}; keys: {', '.join(sorted(_VARIANT_KEYS))}")
            if "id" not in raw or "weight" not in raw:
                self.fail(vnode, exp_id, "a variant needs 'id' and 'weight'")
            vid = self.scalar(raw["id"][1], exp_id, "a variant id")
            if not _ID.fullmatch(vid):
                self.fail(raw["id"][1], exp_id, f"variant id {vid!r} must match [a-z][a-z0-9_]*")
            if any(v.id == vid for v in out):
                self.fail(raw["id"][1], exp_id, f"duplicate variant id {vid!r}")
            try:
                weight = float(self.scalar(raw["weight"][1], exp_id, "'weight'"))
            except ValueError:
                self.fail(raw["weight"][1], exp_id, "'weight' must be a number in (0, 1]")
            if not 0 < weight <= 1:
                self.fail(raw["weight"][1], exp_id, f"weight {weight:g} must be in (0, 1]")
            control = False
            if "control" in raw:
                text = self.scalar(raw["control"][1], exp_id, "'control'")
                if text not in ("true", "false"):
                    self.fail(raw["control"][1], exp_id, "'control' must be true or false")
                control = text == "true"
            strategy = module = None
            if "strategy" in raw:
                strategy = self.scalar(raw["strategy"][1], exp_id, "'strategy'")
                if surface != SURFACE_RECOMMENDATIONS:
                    self.fail(raw["strategy"][1], exp_id, "'strategy' is for the recommendations surface; "
                                                         "a content slot's variant names a 'module'")
                if strategy not in STRATEGIES:
                    self.fail(raw["strategy"][1], exp_id, f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
            if "module" in raw:
                module = self.scalar(raw["module"][1], exp_id, "'module'")
                if surface == SURFACE_RECOMMENDATIONS:
                    self.fail(raw["module"][1], exp_id, "'module' is for a content slot, not recommendations")
                known = None if self.modules is None else self.modules.get(surface, ())
                if known is not None and module not in known:
                    self.fail(raw["module"][1], exp_id, f"module {module!r} is not a module of slot {surface!r}")
            out.append(Variant(vid, weight, control, strategy, module))
        if sum(v.control for v in out) > 1:
            self.fail(key_node, exp_id, "at most one variant may be the control")
        return tuple(out)

    def time(self, entry, exp_id) -> int | None:
        if entry is None:
            return None
        node = entry[1]
        text = self.scalar(node, exp_id, "a time")
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(node, exp_id, f"{text!r} is not an ISO-8601 time (e.g. 2026-11-01T00:00:00Z)")
        if parsed.tzinfo is None:
            self.fail(node, exp_id, f"{text!r} has no UTC offset (add Z or +01:00)")
        return int(parsed.timestamp() * 1000)

    def duration(self, node, exp_id) -> int:
        text = self.scalar(node, exp_id, "a duration")
        m = _DURATION.fullmatch(text)
        if not m or int(m.group(1)) == 0:
            self.fail(node, exp_id, f"{text!r} is not a duration such as 30m, 24h or 7d")
        return int(m.group(1)) * _UNIT_MS[m.group(2)]
