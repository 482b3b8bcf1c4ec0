"""A serving replica's store: the changelog topic (``flows.changelog``) materialized into
a local RocksDB, read through the same interface as the writer's secondary reader.

``ChangelogReplica`` consumes the topic from where it left off (the offsets are stored
in the local store with the records they cover, in one WriteBatch, so a restarted replica
neither skips nor needs to re-read anything) and applies each record: a value is put, a
tombstone deletes. It is ``ready`` once it has read, after its start, up to the end
offsets the topic had when it started: until then the server answers UNAVAILABLE rather
than from a half-loaded store. ``catch_up`` says whether records landed since the last
call (the server then refreshes its item index).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from flows.changelog import split_record_key
from state.store import RocksStore, StoreNotReady, StoreOptions, meta_key

log = logging.getLogger(__name__)

OFFSET_META = "replica_offset/"  # + partition: the next offset to read


class ChangelogReplica:
    def __init__(self, path: str | Path, bootstrap_servers: str, topic: str,
                 consumer_config: dict | None = None, *, poll_s: float = 0.05, batch: int = 2000,
                 store_options: StoreOptions = StoreOptions()) -> None:
        self.path = Path(path)
        self._store = RocksStore(self.path, store_options)
        self._topic = topic
        self._consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"pulse-replica-{self.path}",
                                   "enable.auto.commit": "false", "enable.partition.eof": "false",
                                   **dict(consumer_config or {})})
        meta = self._consumer.list_topics(topic, timeout=15)
        parts = meta.topics.get(topic)
        if parts is None or parts.error is not None:
            raise StoreNotReady(f"changelog topic {topic!r} is not available: {parts.error if parts else 'missing'}")
        self._targets: dict[int, int] = {}
        assignment = []
        for p in sorted(parts.partitions):
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            self._targets[p] = high
            stored = self._store.get_meta(OFFSET_META + str(p))
            start = int.from_bytes(stored, "big") if stored is not None else OFFSET_BEGINNING
            assignment.append(TopicPartition(topic, p, start))
        self._consumer.assign(assignment)
        self._positions = {tp.partition: (tp.offset if tp.offset >= 0 else 0) for tp in assignment}
        self._poll_s = poll_s
        self._batch = batch
        self._changed = False
        self._ready = self._caught_up()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.applied = 0
        self._thread = threading.Thread(target=self._loop, name="pulse-replica", daemon=True)
        self._thread.start()

    # -- the reader interface (as serving uses state.store.RocksReader) -------------------
    @property
    def ready(self) -> bool:
        return self._ready

    def catch_up(self) -> bool:
        """Whether records landed since the last call (False until ready)."""
        if not self._ready:
            return False
        changed, self._changed = self._changed, False
        return changed

    def __getattr__(self, name):
        # The reads (get, profile_of, members_of, get_item, iter_items, scan, get_meta, ...)
        # go to the local store; before the replica is ready they raise StoreNotReady, so
        # the server answers UNAVAILABLE rather than NOT_FOUND from a half-loaded store.
        store = self.__dict__.get("_store")
        if store is None:
            raise AttributeError(name)
        attr = getattr(store, name)
        if self._ready or not callable(attr):
            return attr

        def not_ready(*_args, **_kwargs):
            raise StoreNotReady(f"the replica at {self.path} is still reading the changelog {self._topic!r} "
                                f"({self.applied} records so far)")
        return not_ready

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        self._store.close()

    # -- consuming ---------------------------------------------------------------------------
    def _caught_up(self) -> bool:
        return all(self._positions.get(p, 0) >= high for p, high in self._targets.items())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self._consumer.consume(self._batch, self._poll_s)
            except Exception:
                log.exception("reading the changelog failed; will retry")
                self._stop.wait(1.0)
                continue
            rows, offsets = [], {}
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("changelog consumer error: %s", err)
                    continue
                try:
                    family, key = split_record_key(msg.key() or b"")
                except ValueError as exc:
                    log.warning("skipping a changelog record at %s/%d@%d: %s", msg.topic(), msg.partition(),
                                msg.offset(), exc)
                else:
                    rows.append((family, key, msg.value()))
                offsets[msg.partition()] = msg.offset() + 1
            if offsets:
                rows.extend(("default", meta_key(OFFSET_META + str(p)), o.to_bytes(8, "big"))
                            for p, o in offsets.items())
                self._store.raw_apply(rows)
                self.applied += len(msgs)
                self._positions.update(offsets)
                self._changed = True
            if not self._ready and self._caught_up():
                self._ready = True
                log.info("replica %s caught up with the changelog %r (%d records)", self.path, self._topic,
                         self.applied)
