"""The trigger outbox, drained to Kafka.

The profile step writes each trigger into the store (``o<sequence>`` keys) in the same
WriteBatch as the state change that caused it. This publisher, a thread of the flow's
process, sends the outbox in sequence order with an idempotent producer (key: the
profile id, so one profile's triggers stay ordered in one partition) and deletes the keys
the broker acknowledged. A crash between the acknowledgement and the delete sends those
triggers again with the same ``trigger_id``: consumers dedupe on it. Nothing is lost: a
trigger leaves the store only once Kafka has it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

import orjson
from confluent_kafka import Producer

from flows import metrics as m
from state.store import RocksStore

log = logging.getLogger(__name__)
TRIGGER_ID_HEADER = "pulse.trigger_id"


class Drain:
    """A thread that calls ``drain_once()`` (publish some records from the store, return
    how many) until it returns 0, then waits for ``wake()`` or ``idle_wait_s``; on an
    error it logs, keeps the records and retries after a second; ``stop()`` drains what
    is left first. Subclasses set their destination and call ``_init_drain``."""

    def _init_drain(self, store, batch: int, idle_wait_s: float, *, name: str = "pulse-outbox",
                    what: str = "the trigger outbox", cursor: bytes = b"o") -> None:
        self._store = store
        self._batch = batch
        self._idle_wait = idle_wait_s
        self._what = what
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.published = 0
        self._cursor = cursor

    def start(self):
        self._thread.start()
        return self

    def wake(self) -> None:
        """New records are in the store: drain now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Drain what is left (bounded by ``timeout``), then stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                sent = self.drain_once()
            except Exception:  # keep the records; retry after a pause
                log.exception("publishing %s failed; will retry", self._what)
                sent = 0
                time.sleep(1.0)
            if stopping and sent == 0:
                return
            if sent == 0:
                self._wake.wait(self._idle_wait)
                self._wake.clear()

    def drain_once(self) -> int:
        raise NotImplementedError


class OutboxPublisher(Drain):
    def __init__(self, store: RocksStore, bootstrap_servers: str, topic: str,
                 producer_config: Mapping[str, str] | None = None, *, batch: int = 5000,
                 idle_wait_s: float = 0.05) -> None:
        self._topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": "true",
                                   "linger.ms": "0", **dict(producer_config or {})})
        self._init_drain(store, batch, idle_wait_s)

    def drain_once(self) -> int:
        """Publish up to ``batch`` outbox records; returns how many were acknowledged."""
        # Outbox keys only grow (a sequence): start after the last one acknowledged, not at
        # the prefix, so the scan does not walk the tombstones of everything sent before.
        rows = list(self._store.scan(b"o", start=self._cursor, limit=self._batch))
        m.OUTBOX_DEPTH.set(len(rows))
        if not rows:
            return 0
        acked, error = self._send(rows)
        if acked and not error:
            self._cursor = max(acked) + b"\x00"
        now_ms = time.time() * 1000
        if acked:
            self._store.apply({}, raw={k: None for k in acked})
            m.TRIGGERS_PUBLISHED.inc(len(acked))
            self.published += len(acked)
        done = set(acked)
        for key, value in rows:
            if key in done:
                written = orjson.loads(value).get("written_ms")
                if written:
                    m.TRIGGER_PUBLISH_LATENCY.observe(max(0.0, (now_ms - written) / 1000))
        m.OUTBOX_DEPTH.set(len(rows) - len(acked))
        if error:
            raise RuntimeError(error)
        return len(acked)

    def _send(self, rows: list[tuple[bytes, bytes]]) -> tuple[list[bytes], str | None]:
        acked: list[bytes] = []
        failed: list[str] = []

        def delivered(err, key):
            if err is None:
                acked.append(key)
            else:
                failed.append(str(err))

        for key, value in rows:
            rec = orjson.loads(value)
            self._producer.produce(
                self._topic, key=rec["profile_id"].encode("utf-8"), value=value,
                headers=[(TRIGGER_ID_HEADER, rec["trigger_id"].encode())],
                on_delivery=lambda err, msg, key=key: delivered(err, key),
            )
            self._producer.poll(0)
        remaining = self._producer.flush(30)
        error = None
        if failed or remaining:
            error = f"{len(failed) + remaining} triggers not acknowledged by {self._topic!r}: {failed[:1] or 'timeout'}"
        return acked, error


class JsonlOutboxPublisher(OutboxPublisher):
    """The demo's outbox drain: triggers appended to a JSON-lines file instead of Kafka."""

    def __init__(self, store: RocksStore, path, *, batch: int = 5000, idle_wait_s: float = 0.05) -> None:
        self._path = path
        self._init_drain(store, batch, idle_wait_s)

    def _send(self, rows):
        with open(self._path, "ab") as fh:
            for _key, value in rows:
                fh.write(value + b"\n")
        return [key for key, _ in rows], None
