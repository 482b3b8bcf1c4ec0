"""The embedded edges used by ``pulse demo``: the synthetic clickstream as a source and a
JSONL file as the dead-letter sink (no Kafka needed)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from flows import metrics as m
from flows.shutdown import stop_requested
from flows.records import DeadLetter, RawRecord, Tick
from operators.synthetic import ClickstreamGenerator

GENERATOR_SOURCE = "generator/0"
TICK_INTERVAL_S = 0.2


class _GeneratorPartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(self, gen: ClickstreamGenerator, rate: float, limit: int | None, resume: int | None,
                 batch_size: int) -> None:
        self._gen = gen
        self._rate = rate
        self._limit = limit
        self._batch_size = batch_size
        self._emitted = 0
        # Deterministic: regenerate (and drop) what was emitted before the restart.
        for _ in range(resume or 0):
            gen.next_record(0)
            self._emitted += 1
        self._start = time.monotonic() - self._emitted / rate
        self._awake: datetime | None = None
        self._next_tick = 0.0
        self._ended = False

    def next_batch(self) -> list[RawRecord | Tick]:
        if self._ended or stop_requested():
            raise StopIteration
        if self._limit is not None and self._emitted >= self._limit:
            self._ended = True
            return [Tick(GENERATOR_SOURCE, None, final=True)]
        # The generator is always caught up (its events are "now"): its heartbeat carries
        # the wall clock, so segment timers fire while it is quiet.
        now = time.monotonic()
        tick = []
        if now >= self._next_tick:
            self._next_tick = now + TICK_INTERVAL_S
            tick = [Tick(GENERATOR_SOURCE, int(time.time() * 1000))]
        due = int((time.monotonic() - self._start) * self._rate) - self._emitted
        n = min(due, self._batch_size)
        if self._limit is not None:
            n = min(n, self._limit - self._emitted)
        if n <= 0:
            self._awake = datetime.now(timezone.utc) + timedelta(seconds=min(1 / self._rate, TICK_INTERVAL_S))
            return tick
        self._awake = None
        now_ms = int(time.time() * 1000)
        out = []
        for _ in range(n):
            key, value = self._gen.next_record(now_ms)
            out.append(RawRecord(value, key, GENERATOR_SOURCE, self._emitted, now_ms))
            self._emitted += 1
        return out + tick

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._emitted


class GeneratorSource(FixedPartitionedSource[RawRecord, int]):
    """The synthetic clickstream at ``events_per_second``, stopping after ``limit`` if set."""

    def __init__(self, *, users: int, events_per_second: float, seed: int, invalid_rate: float,
                 limit: int | None = None, batch_size: int = 1000) -> None:
        self._args = (seed, users, invalid_rate)
        self._rate = events_per_second
        self._limit = limit
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return ["generator-0"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _GeneratorPartition:
        seed, users, invalid_rate = self._args
        gen = ClickstreamGenerator(seed=seed, users=users, invalid_rate=invalid_rate)
        return _GeneratorPartition(gen, self._rate, self._limit, resume_state, self._batch_size)


def dead_letter_json(dl: DeadLetter) -> bytes:
    value = dl.record.value or b""
    try:
        payload: dict = {"payload": value.decode("utf-8")}
    except UnicodeDecodeError:
        payload = {"payload_hex": value.hex()}
    return orjson.dumps({"reason": dl.error.reason, "detail": dl.error.detail,
                         "source": dl.record.source, "offset": dl.record.offset, **payload})


class _FilePartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")

    def write_batch(self, items: list[DeadLetter]) -> None:
        self._file.write(b"".join(dead_letter_json(dl) + b"\n" for dl in items))
        self._file.flush()
        m.DLQ_PUBLISHED.inc(len(items))

    def close(self) -> None:
        self._file.close()


class JsonlDeadLetterSink(DynamicSink[DeadLetter]):
    """Dead letters appended to a JSONL file (one file per worker)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FilePartition:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        path = self._path if worker_count == 1 else self._path.with_suffix(f".{worker_index}.jsonl")
        return _FilePartition(path)
