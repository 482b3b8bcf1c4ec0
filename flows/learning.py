"""The model step of the profile flow: what every applied event teaches the models.

Per applied event, inside the profile step (same lock, same WriteBatch):

- propensity and churn (``operators.models``): pending examples the event decides are
  learnt, the profile is scored (``profile.scores``), a new example may start; examples
  whose horizon passes without an answer are learnt when the profile's timer fires (the
  same per-profile timers as segment instants: ``ProfileLogic`` schedules the earlier of
  the two);
- recommendations (``operators.reco``): each product line updates the user's and the
  item's latent factors (with sampled negatives) and the co-occurrence of the item with
  the user's recent items.

The models are process-wide. Every ``save_interval_s`` (wall clock) the whole model
state goes into the batch's WriteBatch (meta ``models``, pickled, with a JSON status in
meta ``models_status`` that ``pulse models status`` reads), so after a crash they
resume from a state consistent with the profiles written in the same batch. The events
between that save and the crash were already applied to their profiles and are skipped
on replay: the models do not learn them twice, and miss them (at most one save
interval). Learning order follows processing order, so scores are not part of the
replay-exactness that segment transitions have.
"""

from __future__ import annotations

import logging
import time

import orjson

from flows import metrics as m
from operators.models import Models, ModelsConfig
from operators.reco import INTERACTION_WEIGHTS, MatrixFactorization, NegativePool, co_visit
from state.store import meta_key

MODELS_META = "models"
MODELS_STATUS_META = "models_status"
GAUGE_INTERVAL_S = 5.0

log = logging.getLogger(__name__)


class Learner:
    """Model updates for the profile step; ``None`` parts are switched off."""

    def __init__(self, models: Models | None, mf: MatrixFactorization | None, *, negatives: int = 2,
                 save_interval_s: float = 30.0, clock=time.monotonic) -> None:
        self.models = models
        self.mf = mf
        self.negatives = negatives
        self.pool = NegativePool()
        self.save_interval_s = save_interval_s
        self._clock = clock
        self._last_save = clock()
        self._unsaved = False
        self._last_gauges = clock()

    @classmethod
    def load(cls, store, config: ModelsConfig | None, *, dim: int = 16, learning_rate: float = 0.15,
             negatives: int = 2, save_interval_s: float = 30.0) -> Learner:
        """The learner, with the models saved in ``store`` when there are any."""
        if config is None:
            return cls(None, None)
        models = None
        get_meta = getattr(store, "get_meta", None)
        saved = get_meta(MODELS_META) if get_meta is not None else None
        if saved is not None:
            try:
                models = Models.loads(saved, config)
                log.info("models resumed from the store: %s", ", ".join(
                    f"{name} ({st['examples']} examples)" for name, st in models.status().items()))
            except ValueError as exc:
                log.warning("the stored models cannot be read (%s): starting fresh ones", exc)
        if models is None:
            models = Models(config)
        return cls(models, MatrixFactorization(dim=dim, learning_rate=learning_rate), negatives=negatives,
                   save_interval_s=save_interval_s)

    @property
    def active(self) -> bool:
        return self.models is not None

    def next_deadline(self, profile) -> int | None:
        return None if self.models is None else self.models.next_deadline(profile)

    def on_event(self, profile, event, items) -> set[str]:
        """An applied event: labels, scores, factors, co-occurrence. Returns the ids of the
        items whose stored statistics changed (the caller writes them)."""
        changed: set[str] = set()
        if self.models is None:
            return changed
        self._labels(self.models.on_event(profile, event.type, event.ts_ms))
        weight = INTERACTION_WEIGHTS.get(event.type)
        if weight is None or not event.items:
            return changed
        mf, pool = self.mf, self.pool
        for line in event.items:
            item = items.get(line.item_id)
            negatives = []
            if self.negatives:
                for other in pool.sample(self.negatives, f"{event.event_id}/{line.item_id}", line.item_id):
                    negatives.append(items.get(other))
                    changed.add(other)
            mf.learn(profile, item, weight, negatives)
            changed.add(line.item_id)
            pool.add(line.item_id)
            changed |= co_visit(profile.recent, items.get, current=[event.ts_ms, line.item_id, event.type])
        self._unsaved = True
        return changed

    def advance(self, profile, now_ms: int) -> None:
        if self.models is not None:
            self._labels(self.models.advance(profile, now_ms))

    def _labels(self, labels) -> None:
        if not labels:
            return
        self._unsaved = True
        for label in labels:
            m.MODEL_EXAMPLES.labels(label.model, "1" if label.y else "0").inc()
            if label.drift:
                m.MODEL_DRIFTS.labels(label.model).inc()
                log.warning("model %s: drift detected at event time %d; policy %r applied", label.model,
                            label.resolved_ms, self.models.models[label.model].config.drift_policy)

    def maybe_save(self, raw: dict[bytes, bytes | None], force: bool = False) -> bool:
        """Every ``save_interval_s``: the models into ``raw`` (the batch's WriteBatch).
        The AUC and log-loss gauges are refreshed every ``GAUGE_INTERVAL_S``."""
        if self.models is None or not self._unsaved:
            return False
        now = self._clock()
        if now - self._last_gauges >= GAUGE_INTERVAL_S or force:
            self._last_gauges = now
            self._gauges_from(self.models.status())
        if not force and now - self._last_save < self.save_interval_s:
            return False
        self._last_save = now
        self._unsaved = False
        raw[meta_key(MODELS_META)] = self.models.dumps()
        raw[meta_key(MODELS_STATUS_META)] = orjson.dumps({"saved_ms": int(time.time() * 1000),
                                                          "models": self.models.status()})
        return True

    @staticmethod
    def _gauges_from(status: dict) -> None:
        for name, st in status.items():
            if st.get("roc_auc") is not None:
                m.MODEL_AUC.labels(name).set(st["roc_auc"])
            if st.get("log_loss") is not None:
                m.MODEL_LOG_LOSS.labels(name).set(st["log_loss"])
