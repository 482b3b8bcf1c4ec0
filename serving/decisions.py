"""Decide and experiment assignment at request time, and the exposures they publish.

``LiveConfig`` holds the content catalog and the experiment definitions the server uses
(files from the configuration; ``Admin.ReloadConfiguration`` re-reads them, keeping the
running ones if a file is bad). ``decide`` fills each requested slot; ``assignment``
gives the recommendations surface's variant. Every assignment that changes or could
change what a user sees is an *exposure*, published (``ExposureSink``) for the analysis
of ``pulse experiments`` — a Kafka topic in production, a JSON-lines file in the demo.

Who is assigned: the unit is the profile id when the store knows the user, else the
request's typed alias (``user:<id>``, ``anon:<id>``); an anonymous request without an id
is in no experiment. A user without personalization consent is decided as an anonymous
visitor, but still assigned (the assignment itself uses no profile data).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import orjson

from operators.content import Catalog, ContentError, Context, load_catalog
from operators.experiments import SURFACE_RECOMMENDATIONS, Experiment, ExperimentError, ExperimentSet, Variant, \
    load_experiments
from operators.profile import Policy, Profile
from operators.segments import SegmentError, load_segments
from proto.pulse.v1 import pulse_pb2
from serving import metrics as sm
from serving.errors import FailedPrecondition, InvalidArgument
from serving.lookup import typed_alias

log = logging.getLogger(__name__)
MAX_SLOTS = 20
MAX_CONTEXT_CHARS = 128
EXPOSURE_SCHEMA = 1
ANONYMOUS = "anonymous"


class LiveConfig:
    """The catalog and experiments in use; ``reload`` swaps both or neither."""

    def __init__(self, content_file: str = "", experiments_file: str = "", segments_file: str = "") -> None:
        self._files = (content_file, experiments_file, segments_file)
        self._lock = threading.Lock()
        self.catalog, self.experiments = self._load()

    def _load(self) -> tuple[Catalog | None, ExperimentSet]:
        content_file, experiments_file, segments_file = self._files
        segment_ids = [s.id for s in load_segments(segments_file).segments] if segments_file else None
        catalog = load_catalog(content_file, segments=segment_ids) if content_file else None
        experiments = ExperimentSet()
        if experiments_file:
            experiments = load_experiments(experiments_file, segments=segment_ids,
                                           surfaces=None if catalog is None else catalog.slots,
                                           modules=None if catalog is None else catalog.module_ids)
        return catalog, experiments

    def current(self) -> tuple[Catalog | None, ExperimentSet]:
        return self.catalog, self.experiments

    def reload(self) -> tuple[int, int]:
        """Re-read the files; a bad one raises ``InvalidArgument`` and changes nothing."""
        try:
            catalog, experiments = self._load()
        except (ContentError, ExperimentError, SegmentError) as exc:
            raise InvalidArgument(f"configuration not reloaded: {exc}") from None
        with self._lock:
            self.catalog, self.experiments = catalog, experiments
        log.info("configuration reloaded: %d content modules, %d experiments",
                 0 if catalog is None else len(catalog.modules), len(experiments.experiments))
        return (0 if catalog is None else len(catalog.modules)), len(experiments.experiments)


class ExposureSink:
    """Where exposures go. The base class drops them (no analysis configured)."""

    def publish(self, record: dict) -> None:
        return None

    def close(self) -> None:
        return None


class JsonlExposureSink(ExposureSink):
    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def publish(self, record: dict) -> None:
        line = orjson.dumps(record) + b"\n"
        with self._lock, self._path.open("ab") as fh:
            fh.write(line)
        sm.EXPOSURES.inc()


class KafkaExposureSink(ExposureSink):
    """Exposures to a Kafka topic (key: the unit), without blocking the request: the
    record is handed to librdkafka's queue and delivered in the background. If the queue
    is full (brokers down for long), the exposure is counted as dropped."""

    def __init__(self, bootstrap_servers: str, topic: str, producer_config: Mapping[str, str] | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": "true",
                                   "linger.ms": "20", "client.id": "pulse-exposures", **dict(producer_config or {})})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="pulse-exposures", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _delivered(self, err, _msg) -> None:
        if err is None:
            sm.EXPOSURES.inc()
        else:
            sm.EXPOSURES_DROPPED.inc()
            log.warning("an exposure was not delivered to %s: %s", self.topic, err)

    def publish(self, record: dict) -> None:
        try:
            self._producer.produce(self.topic, key=record["unit"].encode("utf-8"), value=orjson.dumps(record),
                                   on_delivery=self._delivered)
        except BufferError:
            sm.EXPOSURES_DROPPED.inc()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._producer.flush(10)


def exposure(exp: Experiment, variant: Variant, unit: str, profile_id: str | None, surface: str, shown: str,
             request_id: str, now_ms: int) -> dict:
    return {"v": EXPOSURE_SCHEMA, "exposure_id": uuid.uuid4().hex, "experiment_id": exp.id, "variant_id": variant.id,
            "control": variant.control, "unit": unit, "profile_id": profile_id, "surface": surface, "shown": shown,
            "request_id": request_id, "ts_ms": now_ms}


def _unit(user_id: str, found: tuple[str, Profile] | None) -> str | None:
    if found is not None:
        return found[0]
    return typed_alias(user_id) if user_id else None


def _assign(exp: Experiment, unit: str | None, profile: Profile | None) -> Variant | None:
    if unit is None or not exp.eligible(None if profile is None else profile.segments):
        return None
    return exp.assign(unit)


def recommendation_assignment(experiments: ExperimentSet, user_id: str, found, now_ms: int
                              ) -> tuple[Experiment, Variant, str] | None:
    """The recommendations experiment covering this request: (experiment, variant, unit)."""
    unit = _unit(user_id, found)
    for exp in experiments.for_surface(SURFACE_RECOMMENDATIONS, now_ms):
        variant = _assign(exp, unit, None if found is None else found[1])
        if variant is not None:
            return exp, variant, unit
    return None


def check_decide(request: pulse_pb2.DecideRequest, catalog: Catalog | None) -> None:
    if catalog is None:
        raise FailedPrecondition("no content catalog is configured (content.path)")
    slots = list(request.slots)
    if not slots:
        raise InvalidArgument("slots is empty: name at least one slot, e.g. \"hero\"")
    if len(slots) > MAX_SLOTS:
        raise InvalidArgument(f"{len(slots)} slots requested; the limit is {MAX_SLOTS}")
    seen = set()
    for slot in slots:
        if slot not in catalog.slots:
            raise InvalidArgument(f"unknown slot {slot[:80]!r}; slots: {', '.join(sorted(catalog.slots))}")
        if slot in seen:
            raise InvalidArgument(f"slot {slot!r} is requested twice")
        seen.add(slot)
    ctx = request.context
    for name in ("page_type", "channel", "category"):
        if len(getattr(ctx, name)) > MAX_CONTEXT_CHARS:
            raise InvalidArgument(f"context.{name} is longer than {MAX_CONTEXT_CHARS} characters")
    if len(request.request_id) > MAX_CONTEXT_CHARS:
        raise InvalidArgument(f"request_id is longer than {MAX_CONTEXT_CHARS} characters")


def decide(request: pulse_pb2.DecideRequest, found: tuple[str, Profile] | None, config: LiveConfig,
           exposures: ExposureSink, policy: Policy, now_ms: int) -> pulse_pb2.DecideResponse:
    catalog, experiments = config.current()
    check_decide(request, catalog)
    ctx = Context(request.context.page_type, request.context.channel, request.context.category)
    profile = None if found is None else found[1]
    personal = profile is not None and profile.allows("personalization", policy)
    facts = profile if personal else Profile(ANONYMOUS)
    unit = _unit(request.user_id, found)
    response = pulse_pb2.DecideResponse(personalized=personal)
    for slot in request.slots:
        chosen_exp = variant = None
        for exp in experiments.for_surface(slot, now_ms):
            variant = _assign(exp, unit, profile)
            if variant is not None:
                chosen_exp = exp
                break
        if chosen_exp is not None and variant.control:
            decision = catalog.decide(slot, Profile(ANONYMOUS), now_ms, ctx)
        else:
            decision = catalog.decide(slot, facts, now_ms, ctx, force=None if variant is None else variant.module)
        out = response.decisions.add(slot=slot, module_id="" if decision.module is None else decision.module.id,
                                     payload_json="{}" if decision.module is None else decision.module.payload_json,
                                     reason=decision.reason)
        if chosen_exp is not None:
            out.experiment.experiment_id = chosen_exp.id
            out.experiment.variant_id = variant.id
            out.experiment.control = variant.control
            if variant.control:
                out.reason = f"{decision.reason}; experiment {chosen_exp.id}: control (non-personal)"
            exposures.publish(exposure(chosen_exp, variant, unit, None if found is None else found[0], slot,
                                       out.module_id, request.request_id, now_ms))
    return response


def now_ms() -> int:
    return int(time.time() * 1000)
