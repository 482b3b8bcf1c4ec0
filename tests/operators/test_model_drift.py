"""operators.models' drift detection: ADWIN over each label's squared errors, the policies
(log, reset, retrain), runs of one label and the startup transient (neither is a drift),
and models saved with the former single detector."""

from __future__ import annotations

import pickle
import random

import pytest
from river import drift

from operators.models import PROPENSITY, PURCHASE, Models, ModelsConfig, ModelSpec, OnlineModel, roc_auc
from operators.profile import Profile
from tests.operators.test_models import P_HORIZON, PROBES, T0, spec_stream, touch


def run_flip(policy: str, on_drift=None) -> OnlineModel:
    """3000 examples of one concept, then 400 of its reverse."""
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig(drift_policy=policy))
    rng = random.Random(5)
    stream = [*spec_stream(rng, 3000, False), *spec_stream(rng, 400, True)]
    for i, (x, y) in enumerate(stream):
        before = model.pipeline
        if model.learn(x, y, model.predict(x), i):
            assert i >= 3000, "a drift on the stationary part"
            if on_drift is not None:
                on_drift(model, before, x, y, i)
    return model


@pytest.mark.parametrize("policy", ["log", "reset", "retrain"])
def test_an_abrupt_concept_flip_is_detected(policy):
    model = run_flip(policy)
    status = model.status()
    assert status["drifts"] >= 1 and status["last_drift_ms"] >= 3000 and status["policy"] == policy
    late = [(y, s) for y, s, _ in list(model.window)[-200:]]
    assert roc_auc(late) > 0.75  # it follows the new concept


def test_reset_starts_a_fresh_model_from_the_drift_example():
    seen = []

    def check(model, before, x, y, _i):
        assert model.pipeline is not before
        assert dict(model.pipeline[0].counts) == {"a": 1, "b": 1}  # only the current example
        fresh = OnlineModel(model.spec, model.config)
        fresh.learn(x, y, 0.5, 0)
        assert [model.predict(q) for q in PROBES] == [fresh.predict(q) for q in PROBES]
        seen.append(1)

    run_flip("reset", check)
    assert seen


def test_retrain_relearns_the_examples_since_the_cut():
    seen = []

    def check(model, before, x, y, _i):
        replay = model.retrain_set()
        assert 0 < len(replay) <= model.config.retrain_examples
        buffered = list(model.buffer)
        assert replay == buffered[len(buffered) - len(replay):]  # the newest examples
        assert replay[-1] == (x, y)  # including the example that revealed the drift
        # It starts at the oldest example the firing (label-y) detector kept, unless the
        # buffer ran out first.
        assert replay[0][1] == y or len(replay) == len(buffered)
        assert model.pipeline is not before
        assert model.pipeline[0].counts["a"] == len(replay)
        fresh = OnlineModel(model.spec, model.config)
        for bx, by in replay:
            fresh.pipeline.learn_one(bx, by)
        assert [model.predict(q) for q in PROBES] == [fresh.predict(q) for q in PROBES]
        seen.append(1)

    run_flip("retrain", check)
    assert seen


def label_runs(stream, run: int = 400):
    """The examples in the order a live flow resolves them: within each run of ``run``,
    the positives first (a purchase decides its example at once), then the negatives (a
    quiet horizon decides many when a timer passes them)."""
    out = []
    for i in range(0, len(stream), run):
        chunk = stream[i:i + run]
        out += [e for e in chunk if e[1]] + [e for e in chunk if not e[1]]
    return out


@pytest.mark.parametrize("policy", ["log", "reset"])
def test_examples_resolved_in_runs_of_one_label_are_not_a_drift(policy):
    # One concept throughout; only the order of resolution is bursty. A single detector
    # over both labels found drifts here (and "reset" then started over and over).
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig(drift_policy=policy))
    stream = label_runs(list(spec_stream(random.Random(7), 12_000, False)))
    for i, (x, y) in enumerate(stream):
        model.learn(x, y, model.predict(x), i)
    assert model.drifts == 0
    late = [(y, s) for y, s, _ in list(model.window)]
    assert roc_auc(late) > 0.8  # and it learnt the concept


def test_a_flip_resolved_in_runs_is_still_detected_and_a_reset_does_not_repeat():
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig(drift_policy="reset"))
    rng = random.Random(5)
    stream = label_runs([*spec_stream(rng, 3000, False)]) + label_runs([*spec_stream(rng, 2000, True)])
    drifts_at = [i for i, (x, y) in enumerate(stream) if model.learn(x, y, model.predict(x), i)]
    assert drifts_at and drifts_at[0] >= 3000
    # The fresh model's detectors watch its own errors: they fall as it learns.
    assert len(drifts_at) <= 2, drifts_at


def test_log_only_counts():
    seen = []

    def check(model, before, _x, _y, i):
        assert model.pipeline is before
        assert model.pipeline[0].counts["a"] == i + 1  # every example learnt, none forgotten
        seen.append(1)

    model = run_flip("log", check)
    assert seen and model.drifts == len(seen)


def test_a_model_saved_with_one_detector_loads_with_fresh_ones_per_label():
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig())
    for i, (x, y) in enumerate(spec_stream(random.Random(3), 2500, False)):
        model.learn(x, y, model.predict(x), i)
    old = model.__dict__.copy()  # the attributes of a model saved before 2026-12-05
    del old["detectors"], old["_since_cut"], old["learnt"]
    old["detector"] = drift.ADWIN()
    legacy = OnlineModel.__new__(OnlineModel)
    legacy.__dict__.update(old)
    loaded = pickle.loads(pickle.dumps(legacy))
    assert not hasattr(loaded, "detector") and [d.width for d in loaded.detectors] == [0, 0]
    assert loaded.learnt == [model.examples - model.positives, model.positives] == model.learnt
    assert [loaded.predict(q) for q in PROBES] == [model.predict(q) for q in PROBES]  # what it learnt stays
    x, y = next(spec_stream(random.Random(4), 1, False))
    loaded.learn(x, y, loaded.predict(x), 2500)
    assert sum(d.width for d in loaded.detectors) == 1  # past the grace: watched at once


def startup_stream(seed: int = 9):
    """What a new propensity model resolves first: positives only (purchases decide their
    examples at once; no horizon has passed yet), then both labels."""
    rng = random.Random(seed)
    stream = list(spec_stream(rng, 20_000, False))
    first = [e for e in stream[:6000] if e[1]]
    return first + label_runs(stream[6000:])


def test_the_startup_transient_is_not_a_drift(monkeypatch):
    def detections() -> int:
        model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig(drift_policy="log"))
        for i, (x, y) in enumerate(startup_stream()):
            model.learn(x, y, model.predict(x), i)
        return model.drifts

    assert detections() == 0
    monkeypatch.setattr("operators.models.DRIFT_GRACE", 0)
    assert detections() > 0  # watched from the first example, the adjustment looks like one


def widths(model: OnlineModel) -> int:
    return sum(int(d.width) for d in model.detectors)


def test_after_a_reset_the_predecessors_scores_are_not_watched():
    """A delayed label carries the score given when its example started: after a reset,
    those given before it measure the replaced model, not the one being watched."""
    model = OnlineModel(ModelSpec("m", PURCHASE, 1000), ModelsConfig(drift_policy="reset"))
    rng = random.Random(5)
    for i, (x, y) in enumerate(spec_stream(rng, 3000, False)):
        model.learn(x, y, model.predict(x), i)
    model.started_ms = 10_000  # examples were started (and scored) up to this event time
    flipped = spec_stream(rng, 5000, True)
    for x, y in flipped:
        if model.learn(x, y, model.predict(x), 10_000):
            break
    assert model.drifts == 1 and model.born_ms == 10_000 and sum(model.learnt) == 1  # the drift example
    while min(model.learnt) < 1000:  # the fresh pipeline's grace
        x, y = next(flipped)
        model.learn(x, y, model.predict(x), 10_000)
    watched = widths(model)
    x, y = next(flipped)
    model.learn(x, y, 0.9, 20_000, scored_ms=10_000)  # scored by the predecessor
    assert widths(model) == watched
    model.learn(x, y, 0.9, 20_000, scored_ms=10_001)  # scored by the current pipeline
    assert widths(model) == watched + 1


def test_models_record_when_examples_start_and_resolve_them_with_that_time(monkeypatch):
    monkeypatch.setattr("operators.models.DRIFT_GRACE", 0)
    models, p = Models(ModelsConfig(drift_policy="reset")), Profile("user:a")
    model = models.models[PROPENSITY]
    touch(models, p, "page_view", T0)
    assert model.started_ms == T0 and p.labels[PROPENSITY][0] == T0
    model.born_ms = T0  # as if a reset had happened after this example started
    touch(models, p, "page_view", T0 + P_HORIZON + 1)  # times out: a predecessor's score
    assert widths(model) == 0 and model.started_ms == T0 + P_HORIZON + 1
    touch(models, p, "purchase", T0 + P_HORIZON + 2)  # started after the reset: watched
    assert widths(model) == 1
