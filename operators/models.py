"""Online purchase-propensity and churn-risk models, learnt from delayed labels.

Every behaviour event scores the profile with each model (``profile.scores``) and may
start an *example*: the features and score of that moment, kept on the profile in
``profile.labels[name] = [created_ms, deadline_ms, score_then, features]`` until its
outcome is known (at most one per model and profile).

Label semantics, in event time, for an example created at ``c`` with deadline
``d = c + horizon_ms``:

* ``purchase`` kind (propensity): 1 when a purchase arrives with a time in ``(c, d]``;
  0 when the deadline passes without one.
* ``inactivity`` kind (churn): 0 when any behaviour event arrives with a time in
  ``(c, d]``; 1 when the deadline passes without one.
* The interval is closed at the deadline: an event at exactly ``d`` decides the example
  if it is processed before the deadline is resolved by time. Timeouts are resolved at
  ``d`` by ``advance(profile, now)`` for ``d <= now``, or by the first event later than
  ``d``, whichever comes first; so ``advance`` should be driven by a clock that no
  event of the profile will fall behind (the flow's watermark).
* An event at or before ``c`` decides nothing (it is not after the example was made).
  Examples start only from a profile's newest event (``ts >= profile.last_seen_ms``): an
  out-of-order event would open a window whose outcome was partly seen already.
  ``ModelSpec.min_gap_ms`` spaces examples apart: a new one starts only when none is
  pending and the previous one started ``min_gap_ms`` or more earlier (an example
  resolved sooner than that leaves ``profile.labels[name + STARTED]`` = ``[created_ms]``
  behind until the gap has passed).

Learning is progressive validation: each resolved example first updates the rolling
metrics with the score the model gave *when the example was made*, then the model learns
it. Models are shared by all profiles of a process and learn in the order examples
resolve, which follows processing (arrival) order, not event time. Scores are therefore
not part of the replay-exactness guarantee of segment transitions: a replay after a
restart may score the same event slightly differently.

Memory: per profile, at most one pending example per model (a dict of ~35 floats) and
one gap marker; per process and model, ``retrain_examples`` buffered examples and
``metric_window`` (label, score, loss) triples.

A rise of the squared error detected by ADWIN is a drift; ``ModelsConfig.drift_policy``
says what then happens (``log``: count it; ``reset``: start a fresh model; ``retrain``:
a fresh model relearns the buffered examples since ADWIN's cut). There is one detector
per label: examples resolve out of creation order by label (a purchase decides its
example at once, a quiet horizon decides many at the instant a timer passes them), so a
single error stream alternates runs of positives and runs of negatives, whose errors
differ, and ADWIN took those runs for drifts (on a live stream the default ``reset``
then reset the propensity model every few seconds). Within one label the order does not
matter; a changed concept raises the error of either label. A fresh model gets fresh
detectors: they watch its errors, not its predecessor's, once it has learnt
``DRIFT_GRACE`` examples of each label. Labels arrive up to a horizon late with the score
given when the example started, so examples started before the reset (event time up to
the latest start then) are learnt but not watched: their scores are the old model's.

>>> models = Models(ModelsConfig(propensity_horizon_ms=60_000))
>>> p = Profile("user:u1")
>>> p.last_seen_ms = 1_000
>>> models.on_event(p, "page_view", 1_000)   # nothing pending yet: both models start one
[]
>>> p.scores, models.next_deadline(p)         # untrained models say 0.5
({'propensity': 0.5, 'churn': 0.5}, 61000)
>>> p.last_seen_ms = 31_000
>>> [(label.model, label.y) for label in models.on_event(p, "purchase", 31_000)]
[('propensity', True), ('churn', False)]
>>> [(label.model, label.y, label.resolved_ms) for label in models.advance(p, 100_000)]
[('propensity', False, 91000)]
>>> models.status()["propensity"]["examples"]
2
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from dataclasses import dataclass
from typing import Any

import river
from river import compose, drift, linear_model, optim, preprocessing
from river.utils.math import sigmoid

from operators.events import EVENT_TYPES
from operators.profile import Profile

PROPENSITY = "propensity"
CHURN = "churn"
PURCHASE = "purchase"
INACTIVITY = "inactivity"
KINDS = (PURCHASE, INACTIVITY)
DRIFT_POLICIES = ("log", "reset", "retrain")
STATE_VERSION = 1
STARTED = ".started"  # profile.labels[name + STARTED] = [created_ms of the last example]

# Every event but consent changes is behaviour (as in Profile.apply).
BEHAVIOUR_TYPES = tuple(t for t in EVENT_TYPES if t != "consent_update")
_BEHAVIOUR = frozenset(BEHAVIOUR_TYPES)
SESSION_MS = 30 * 60_000
_HOUR_MS = 3_600_000.0
MAX_HOURS = 90 * 24.0  # durations are capped here; "never" counts as this long ago
_NEVER = math.log1p(MAX_HOURS)
_EPS = 1e-7  # probabilities are clipped to [_EPS, 1 - _EPS] for log loss
_L2 = 1e-4
MAX_FEATURE = 1e9  # examples with a larger (or non-finite) feature value are not learnt
_CLIP_GRADIENT = 5.0

_COUNT_KEY = {t: "n_" + t for t in BEHAVIOUR_TYPES}
# Per event type (None: none): every count at zero and the one-hot of the type.
_BLANK = {t: {**{"n_" + u: 0.0 for u in BEHAVIOUR_TYPES}, **{"is_" + u: float(u == t) for u in BEHAVIOUR_TYPES}}
          for t in (*BEHAVIOUR_TYPES, None)}
_log1p = math.log1p


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # PURCHASE or INACTIVITY (see the module docstring)
    horizon_ms: int
    min_gap_ms: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or STARTED in self.name:
            raise ValueError(f"ModelSpec.name: {self.name!r} must be a non-empty string without {STARTED!r}")
        if self.kind not in KINDS:
            raise ValueError(f"ModelSpec.kind: {self.kind!r} is not one of {KINDS}")
        _check_int("ModelSpec.horizon_ms", self.horizon_ms, 1)
        _check_int("ModelSpec.min_gap_ms", self.min_gap_ms, 0)


@dataclass(frozen=True)
class ModelsConfig:
    propensity_horizon_ms: int = 30 * 60_000
    churn_days: int = 14
    churn_min_gap_ms: int = 3_600_000
    drift_policy: str = "reset"
    retrain_examples: int = 500  # the newest labelled examples kept for "retrain"
    metric_window: int = 1000  # examples in the rolling ROC AUC and log loss
    learning_rate: float = 0.05

    def __post_init__(self) -> None:
        _check_int("ModelsConfig.propensity_horizon_ms", self.propensity_horizon_ms, 1)
        _check_int("ModelsConfig.churn_days", self.churn_days, 1)
        _check_int("ModelsConfig.churn_min_gap_ms", self.churn_min_gap_ms, 0)
        if self.drift_policy not in DRIFT_POLICIES:
            raise ValueError(f"ModelsConfig.drift_policy: {self.drift_policy!r} is not one of {DRIFT_POLICIES}")
        _check_int("ModelsConfig.retrain_examples", self.retrain_examples, 1)
        _check_int("ModelsConfig.metric_window", self.metric_window, 1)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0.0 < lr <= 10.0:
            raise ValueError(f"ModelsConfig.learning_rate: {lr!r} must be a number in (0, 10]")

    def specs(self) -> tuple[ModelSpec, ...]:
        return (
            ModelSpec(PROPENSITY, PURCHASE, self.propensity_horizon_ms),
            ModelSpec(CHURN, INACTIVITY, self.churn_days * 24 * 3_600_000, self.churn_min_gap_ms),
        )


def _check_int(field: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: {value!r} must be an integer >= {minimum}")


@dataclass(frozen=True)
class Label:
    """One resolved example: its outcome ``y`` and the score given when it was made."""

    model: str
    profile_id: str
    y: bool
    score: float
    created_ms: int
    resolved_ms: int
    drift: bool  # learning it made the model detect a drift


def _hours(ms: float) -> float:
    h = ms / _HOUR_MS
    if h <= 0.0:
        return 0.0
    return _NEVER if h >= MAX_HOURS else _log1p(h)


def features(profile: Profile, now_ms: int, event_type: str | None) -> dict[str, float]:
    """The model input at ``now_ms``: finite floats, always the same keys (counts, money
    and durations log-transformed; durations in hours, capped at ``MAX_HOURS``). Reads
    the profile only; never ``profile.counters``."""
    x = dict(_BLANK.get(event_type, _BLANK[None]))  # zero counts, one-hot of event_type
    for etype, n in profile.counts.items():
        key = _COUNT_KEY.get(etype)
        if key is not None and n > 0:
            x[key] = _log1p(n)
    orders = profile.orders
    spend = profile.total_spend if profile.total_spend > 0.0 else 0.0
    x["orders"] = _log1p(orders) if orders > 0 else 0.0
    x["spend"] = _log1p(spend)
    x["aov"] = _log1p(spend / orders) if orders > 0 else 0.0
    x["age_h"] = _hours(now_ms - profile.first_seen_ms) if profile.first_seen_ms else 0.0
    x["idle_h"] = _hours(now_ms - profile.last_seen_ms) if profile.last_seen_ms else _NEVER
    last_order = None
    for order in profile.recent_orders:  # [[ms, amount], ...], not necessarily sorted
        if last_order is None or order[0] > last_order:
            last_order = order[0]
    x["since_order_h"] = _NEVER if last_order is None else _hours(now_ms - last_order)
    qty = value = 0.0
    oldest = now_ms
    for line in profile.cart.values():
        n = line["qty"]
        qty += n
        value += n * (line["price"] or 0.0)
        added = line["added_ms"]
        if added < oldest:
            oldest = added
    x["cart_items"] = _log1p(qty)
    x["cart_value"] = _log1p(value) if value > 0.0 else 0.0
    x["cart_age_h"] = _hours(now_ms - oldest)
    x["categories"] = _log1p(len(profile.categories))
    x["brands"] = _log1p(len(profile.brands))
    x["price_taste"] = profile.mean_log_price() or 0.0
    views = carts = buys = 0
    previous = None
    since = now_ms - SESSION_MS
    for ts, _item, etype in profile.recent:  # the newest product interactions, oldest first
        if ts < now_ms and (previous is None or ts > previous):
            previous = ts
        if since <= ts <= now_ms:
            if etype == "product_view":
                views += 1
            elif etype == "add_to_cart":
                carts += 1
            elif etype == "purchase":
                buys += 1
    x["session_views"] = _log1p(views)
    x["session_carts"] = _log1p(carts)
    x["session_purchases"] = _log1p(buys)
    x["prev_gap_h"] = _NEVER if previous is None else _hours(now_ms - previous)
    return x


def _fresh_pipeline(learning_rate: float) -> compose.Pipeline:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(learning_rate), l2=_L2, intercept_lr=learning_rate, clip_gradient=_CLIP_GRADIENT)


def _usable(x: dict) -> bool:
    """Numbers of a sane size only: one huge value would overflow the scaler's variance
    and leave NaN weights behind (``features`` values stay below 1e3)."""
    return all(isinstance(v, (int, float)) and -MAX_FEATURE <= v <= MAX_FEATURE for v in x.values())


def roc_auc(pairs) -> float | None:
    """Exact ROC AUC of ``(y, score)`` pairs (ties count one half); None without both classes."""
    ranked = sorted(pairs, key=lambda pair: pair[1])
    n_pos = sum(1 for y, _ in ranked if y)
    n_neg = len(ranked) - n_pos
    if not n_pos or not n_neg:
        return None
    rank_sum = 0.0  # sum of the positives' (average) ranks, 1-based
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][1] == ranked[i][1]:
            j += 1
        positives = sum(1 for y, _ in ranked[i:j] if y)
        rank_sum += positives * (i + 1 + j) / 2.0
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


# Examples of each label a model must have learnt before its errors are watched for
# drifts. A new model first sees only positives (a purchase decides its example at once;
# the first quiet horizon passes only after ``propensity_horizon_ms``), and while it then
# adjusts to the negatives its error on positives rises: not a drift, but ADWIN flagged
# it, and a reset started the same transient again.
DRIFT_GRACE = 1000


class OnlineModel:
    """One model: a scaled logistic regression, its rolling metrics and drift detectors."""

    def __init__(self, spec: ModelSpec, config: ModelsConfig) -> None:
        self.spec = spec
        self.config = config
        self.pipeline = _fresh_pipeline(config.learning_rate)
        self.detectors = (drift.ADWIN(), drift.ADWIN())  # squared errors of negatives, of positives
        self._since_cut = 0  # examples the last drift's retrain set holds (see retrain_set)
        self.learnt = [0, 0]  # examples of each label the current pipeline has learnt
        # Event times: the latest at which an example was started (and scored, by
        # ``Models.on_event``), and that time when the current pipeline replaced another:
        # examples started until then carry a predecessor's score.
        self.started_ms = -1
        self.born_ms = -1
        self.window: deque[tuple[bool, float, float]] = deque(maxlen=config.metric_window)  # y, score, log loss
        self.buffer: deque[tuple[dict, bool]] = deque(maxlen=config.retrain_examples)
        self.examples = 0
        self.positives = 0
        self.skipped = 0  # examples not learnt: a feature value was not finite or beyond MAX_FEATURE
        self.drifts = 0
        self.last_drift_ms: int | None = None
        self._folded: tuple[float, dict[str, tuple[float, float]]] | None = None  # see _linear

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_folded": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "detector" in state:  # saved before detectors per label: its window mixed both
            del state["detector"]
            state["detectors"] = (drift.ADWIN(), drift.ADWIN())
            state["_since_cut"] = 0
        if "learnt" not in state:  # saved before the grace below: past it by now if it learnt enough
            n, pos = state.get("examples", 0), state.get("positives", 0)
            state["learnt"] = [n - pos, pos]
        state.setdefault("started_ms", -1)
        state.setdefault("born_ms", -1)
        self.__dict__.update(state)

    def _replace_pipeline(self) -> None:
        self.pipeline = _fresh_pipeline(self.config.learning_rate)
        self._folded = None

    def _linear(self) -> tuple[float, dict[str, tuple[float, float]]]:
        """The pipeline as (intercept, feature -> (weight / std, mean)): the logit is
        ``intercept + sum(w * (x - mean))`` over the features of x the scaler has seen
        vary, exactly what StandardScaler then LogisticRegression compute, in a third of
        the time. Rebuilt after the model learns."""
        folded = self._folded
        if folded is None:
            scaler, lr = self.pipeline[0], self.pipeline[-1]
            means, variances = scaler.means, scaler.vars
            terms = {}
            for name, w in lr.weights.items():
                var = variances.get(name, 0.0)
                if var > 0.0:
                    terms[name] = (w / var ** 0.5, means.get(name, 0.0))
            folded = self._folded = (lr.intercept, terms)
        return folded

    def base_rate(self) -> float:
        return (self.positives + 0.5) / (self.examples + 1.0)

    def predict(self, x: dict) -> float:
        """P(y = 1 | x), never NaN (the running base rate stands in for a non-finite score)."""
        z, terms = self._linear()
        for name, value in x.items():
            got = terms.get(name)
            if got is not None:
                z += got[0] * (value - got[1])
        p = sigmoid(z)
        return p if 0.0 <= p <= 1.0 else self.base_rate()

    def learn(self, x: dict, y: bool, score_then: float, at_ms: int, scored_ms: int | None = None) -> bool:
        """Score, then learn, one resolved example; True if it revealed a drift.
        ``scored_ms``: the event time ``score_then`` was given at (None: just now, by this
        pipeline). Only the current pipeline's scores are watched for drifts: a delayed
        label scored before a reset measures the replaced model."""
        y = bool(y)
        if not 0.0 <= score_then <= 1.0:  # also NaN
            score_then = self.base_rate()
        p = min(max(score_then, _EPS), 1.0 - _EPS)
        self.window.append((y, score_then, -math.log(p if y else 1.0 - p)))
        self.examples += 1
        self.positives += y
        detector = self.detectors[y]
        learnt = self.learnt
        if learnt[0] >= DRIFT_GRACE and learnt[1] >= DRIFT_GRACE and (scored_ms is None or scored_ms > self.born_ms):
            before = detector.estimation
            detector.update((y - score_then) ** 2)
            # ADWIN flags any change of the mean; only a rise of the error is a drift (a model
            # that is getting better is not reset).
            drifted = detector.drift_detected and detector.estimation > before
        else:
            drifted = False
        usable = _usable(x)
        if usable:
            self.buffer.append((x, y))
        else:
            self.skipped += 1
        if drifted:
            self.drifts += 1
            self.last_drift_ms = at_ms
            self._since_cut = self._count_since_cut(y, int(detector.width))
            policy = self.config.drift_policy
            if policy in ("reset", "retrain"):
                self._replace_pipeline()
                self.detectors = (drift.ADWIN(), drift.ADWIN())
                self.learnt = [0, 0]
                self.born_ms = self.started_ms
                if policy == "retrain":
                    for bx, by in self.retrain_set():
                        self.pipeline.learn_one(bx, by)
                        self.learnt[by] += 1
                    return True
        if usable:
            self.pipeline.learn_one(x, y)
            self.learnt[y] += 1
            self._folded = None
        return drifted

    def _count_since_cut(self, y: bool, width: int) -> int:
        """Buffered examples (either label) from the oldest one still in the window of
        the label-``y`` detector (its last ``width`` examples) to the newest."""
        seen = n = 0
        for _x, by in reversed(self.buffer):
            if by == y:
                if seen == width:
                    break
                seen += 1
            n += 1
        return n

    def retrain_set(self) -> list[tuple[dict, bool]]:
        """The buffered examples since the last drift's cut (the oldest example the
        detector that fired kept, and every later one of either label; at most
        ``retrain_examples``), oldest first, as they were when it fired."""
        n = min(len(self.buffer), self._since_cut)
        return list(self.buffer)[len(self.buffer) - n:]

    def reconfigure(self, config: ModelsConfig) -> None:
        """Adopt ``config``'s settings, keeping what was learnt (after a restart)."""
        if config.learning_rate != self.config.learning_rate:
            last = self.pipeline[-1]
            last.optimizer = optim.SGD(config.learning_rate)
            last.intercept_lr = config.learning_rate
        if config.metric_window != self.config.metric_window:
            self.window = deque(self.window, maxlen=config.metric_window)
        if config.retrain_examples != self.config.retrain_examples:
            self.buffer = deque(self.buffer, maxlen=config.retrain_examples)
        self.config = config

    def status(self) -> dict[str, Any]:
        window = self.window
        auc = roc_auc((y, s) for y, s, _ in window)
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "horizon_ms": self.spec.horizon_ms,
            "examples": self.examples,
            "positives": self.positives,
            "skipped": self.skipped,
            "window": len(window),
            "roc_auc": None if auc is None else round(auc, 6),
            "log_loss": round(sum(loss for _, _, loss in window) / len(window), 6) if window else None,
            "drifts": self.drifts,
            "last_drift_ms": self.last_drift_ms,
            "policy": self.config.drift_policy,
        }


class Models:
    """The models of one process, and the per-profile bookkeeping of their examples."""

    def __init__(self, config: ModelsConfig = ModelsConfig()) -> None:
        self.config = config
        self.models: dict[str, OnlineModel] = {spec.name: OnlineModel(spec, config) for spec in config.specs()}

    def on_event(self, profile: Profile, event_type: str, ts_ms: int) -> list[Label]:
        """A behaviour event of ``profile`` (already applied to it): resolve, score, start."""
        if event_type not in _BEHAVIOUR:
            return []
        labels = profile.labels
        out: list[Label] = []
        for name, model in self.models.items():
            pending = labels.get(name)
            if pending is None:
                continue
            created, deadline = pending[0], pending[1]
            kind = model.spec.kind
            if deadline < ts_ms:
                out.append(self._resolve(profile, model, pending, kind == INACTIVITY, deadline))
            elif created < ts_ms and (kind == INACTIVITY or event_type == "purchase"):
                out.append(self._resolve(profile, model, pending, kind == PURCHASE, ts_ms))
        newest = ts_ms >= profile.last_seen_ms
        x = features(profile, max(ts_ms, profile.last_seen_ms), event_type)
        scores = profile.scores
        for name, model in self.models.items():
            p = model.predict(x)
            scores[name] = round(p, 4)
            if newest and name not in labels and self._gap_allows(labels, model.spec, ts_ms):
                labels[name] = [ts_ms, ts_ms + model.spec.horizon_ms, p, x]
                if ts_ms > model.started_ms:
                    model.started_ms = ts_ms
        return out

    def advance(self, profile: Profile, now_ms: int) -> list[Label]:
        """Resolve by timeout, at their deadlines, the examples due at ``now_ms``."""
        out = []
        for name, model in self.models.items():
            pending = profile.labels.get(name)
            if pending is not None and pending[1] <= now_ms:
                out.append(self._resolve(profile, model, pending, model.spec.kind == INACTIVITY, pending[1]))
        return out

    def next_deadline(self, profile: Profile) -> int | None:
        deadlines = [profile.labels[name][1] for name in self.models if name in profile.labels]
        return min(deadlines) if deadlines else None

    def forget(self, profile: Profile) -> None:
        """Drop the profile's pending examples and gap markers (merged away or erased)."""
        for name in self.models:
            profile.labels.pop(name, None)
            profile.labels.pop(name + STARTED, None)

    def status(self) -> dict[str, dict]:
        return {name: model.status() for name, model in self.models.items()}

    @staticmethod
    def _gap_allows(labels: dict, spec: ModelSpec, ts_ms: int) -> bool:
        if not spec.min_gap_ms:
            return True
        marker = labels.get(spec.name + STARTED)
        if marker is None:
            return True
        if ts_ms - marker[0] < spec.min_gap_ms:
            return False
        del labels[spec.name + STARTED]
        return True

    @staticmethod
    def _resolve(profile: Profile, model: OnlineModel, pending: list, y: bool, at_ms: int) -> Label:
        created, _deadline, score, x = pending
        spec = model.spec
        del profile.labels[spec.name]
        if spec.min_gap_ms and at_ms - created < spec.min_gap_ms:
            profile.labels[spec.name + STARTED] = [created]
        drifted = model.learn(x, y, score, at_ms, created)
        return Label(spec.name, profile.profile_id, y, score, created, at_ms, drifted)

    # -- stored form -----------------------------------------------------------------
    def dumps(self) -> bytes:
        """All model state (pipelines, metrics, detectors, buffers), pickled with a version tag.
        Load it only from Pulse's own state store: unpickling runs code."""
        state = {"v": STATE_VERSION, "river": river.__version__, "models": self.models}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def loads(cls, data: bytes, config: ModelsConfig) -> Models:
        """State from ``dumps``. A model whose spec (kind, horizon, gap) differs from
        ``config``'s starts afresh; other settings of ``config`` apply to what was learnt."""
        try:
            state = pickle.loads(data)
        except Exception as exc:
            raise ValueError(f"models state: not a pickled Models state ({exc})") from exc
        version = state.get("v") if isinstance(state, dict) else None
        if version != STATE_VERSION:
            raise ValueError(f"models state version {version!r}, expected {STATE_VERSION}")
        models = state.get("models")
        if not isinstance(models, dict):
            raise ValueError("models state: no models in it")
        out = cls(config)
        for name, model in models.items():
            current = out.models.get(name)
            if current is not None and isinstance(model, OnlineModel) and model.spec == current.spec:
                model.reconfigure(config)
                out.models[name] = model
        return out
