"""The changelog: every state change also goes to a compacted Kafka topic, from which
serving replicas on other machines build their own store (``pulse serve --from-changelog``,
``serving.replica``), the way Kafka Streams restores a store from its changelog.

Exactly like the trigger outbox, and for the same reason (a crash between the store
write and the produce must not lose a change): each WriteBatch of the flow also writes
``c<sequence>`` = the keys it changed (``changelog_entry``). This publisher, a thread of
the flow's process, reads those entries in order, sends the *current* value of every key
(or a tombstone when the key is gone) and deletes the entry once Kafka acknowledged them
all. Sending the current value rather than the value of that batch makes the order of
entries irrelevant: a replica ends with the newest value of every key whatever it read
first, and a resend after a crash is harmless (same key, same or newer value).

Record key: one byte naming the column family (``p`` profiles, ``d`` the default
family) and the store key; value: the stored bytes, or none (a tombstone, which
compaction keeps until the replicas had time to read it). Replicated: profiles,
identity links, items, segment memberships, experiment totals and the models' status.
Not replicated: the trigger outbox, timers, the changelog entries themselves, source
watermarks and the pickled model state (processor-only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import orjson
from confluent_kafka import Producer

from flows.outbox import Drain

from state.store import PROFILES_CF, _batch_items, _PHYSICAL, meta_key

log = logging.getLogger(__name__)

CHANGELOG_PREFIX = b"c"
FAMILY_BYTE = {PROFILES_CF: b"p", "default": b"d"}
FAMILY_OF_BYTE = {ord("p"): PROFILES_CF, ord("d"): "default"}
# Default-family keys that stay with the processor.
_LOCAL_PREFIXES = (b"o", b"t", CHANGELOG_PREFIX)
_LOCAL_META = (meta_key("wm/"), meta_key("outbox_seq"), meta_key("models"), meta_key("changelog_seq"))


def changelog_key(seq: int) -> bytes:
    return CHANGELOG_PREFIX + seq.to_bytes(8, "big")


def replicated(family: str, key: bytes) -> bool:
    if family != "default":
        return True
    if key.startswith(_LOCAL_PREFIXES):
        return False
    # Meta keys: everything but the processor's own bookkeeping (models_status is kept).
    return not any(key.startswith(m) and not key.startswith(meta_key("models_status")) for m in _LOCAL_META)


def changelog_entry(profiles: Mapping, aliases: Mapping, members: Mapping, items: Mapping,
                    raw: Mapping) -> bytes | None:
    """The value of a ``c`` entry for one WriteBatch: the replicated keys it changes, as
    ``[[family byte, key hex], ...]``; None when it changes none."""
    keys = []
    for kind, key, _value in _batch_items(profiles, aliases, members, items, raw):
        family = _PHYSICAL[kind]
        if replicated(family, key):
            keys.append([FAMILY_BYTE[family].decode(), key.hex()])
    return orjson.dumps(keys) if keys else None


def record_key(family: str, key: bytes) -> bytes:
    return FAMILY_BYTE[family] + key


def split_record_key(record_key: bytes) -> tuple[str, bytes]:
    """(column family, store key) of a changelog record key; ValueError if malformed."""
    if not record_key or record_key[0] not in FAMILY_OF_BYTE:
        raise ValueError(f"changelog record key {record_key[:20]!r} does not start with a family byte (p or d)")
    return FAMILY_OF_BYTE[record_key[0]], record_key[1:]


class ChangelogPublisher(Drain):
    """Drains the ``c`` entries of ``store`` to ``topic`` (see the module docstring)."""

    def __init__(self, store, bootstrap_servers: str, topic: str, producer_config: Mapping[str, str] | None = None,
                 *, batch: int = 200, idle_wait_s: float = 0.05) -> None:
        self._topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": "true",
                                   "linger.ms": "5", "compression.type": "lz4", **dict(producer_config or {})})
        # ``published`` counts records acknowledged (a changelog entry names several).
        self._init_drain(store, batch, idle_wait_s, name="pulse-changelog", what="the changelog",
                         cursor=CHANGELOG_PREFIX)

    def drain_once(self) -> int:
        """Publish up to ``batch`` entries' keys; returns the entries done."""
        entries = list(self._store.scan(CHANGELOG_PREFIX, start=self._cursor, limit=self._batch))
        if not entries:
            return 0
        keys: dict[tuple[str, bytes], None] = {}
        for _ckey, value in entries:
            for family_byte, key_hex in orjson.loads(value):
                keys[(FAMILY_OF_BYTE[ord(family_byte)], bytes.fromhex(key_hex))] = None
        self._send(keys)
        done = [ckey for ckey, _ in entries]
        self._store.apply({}, raw={k: None for k in done})
        self._cursor = done[-1] + b"\x00"
        return len(done)

    def _send(self, keys: Iterable[tuple[str, bytes]]) -> None:
        failed: list[str] = []

        def delivered(err, _msg):
            if err is not None:
                failed.append(str(err))

        n = 0
        for family, key in keys:
            value = self._store.raw_get(family, key)
            self._producer.produce(self._topic, key=record_key(family, key), value=value, on_delivery=delivered)
            self._producer.poll(0)
            n += 1
        remaining = self._producer.flush(30)
        if failed or remaining:
            raise RuntimeError(f"{len(failed) + remaining} changelog records not acknowledged by {self._topic!r}: "
                               f"{failed[:1] or 'timeout'}")
        self.published += n
