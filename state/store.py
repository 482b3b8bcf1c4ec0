"""The keyed profile store: one writer (the flow), any number of secondary readers.

Two implementations share one contract (``tests/state/test_store_contract.py``):
``MemoryStore`` for unit tests and ``RocksStore`` (rocksdict) for everything real.
Layout: column family ``profiles`` (profile id -> profile record); the default column
family holds identity (``a<alias>`` -> profile id, ``m<profile id>`` -> JSON list of its
aliases), item statistics (``i<item id>`` -> item record), segment membership
(``s<segment id>\x00<profile id>`` -> entered-at ms, 8 bytes big-endian), pending segment
timers (``t<instant ms, 8 bytes>`` + profile id), the trigger outbox (``o<sequence, 8 bytes>``
-> trigger record) and meta (``\x00<name>``). Few column families on purpose: a secondary's
catch-up costs ~0.7 ms per column family here, with the GIL held (measured: 1.8 ms with
one named family, 4.1 ms with four), and that is the serving tail latency.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson
from rocksdict import AccessType, Options, Rdict, WriteBatch

from operators.profile import Profile
from operators.items import ItemStats
from state.codec import decode_item, decode_profile, encode_profile, profile_key

PROFILES_CF = "profiles"
IDENTITY_CF = "identity"  # logical kinds; identity, items and meta share the default family
ITEMS_CF = "items"
META_CF = "meta"
COLUMN_FAMILIES = (PROFILES_CF,)
_PHYSICAL = {PROFILES_CF: PROFILES_CF, IDENTITY_CF: "default", ITEMS_CF: "default", META_CF: "default"}
_META_PREFIX = b"\x00"
STORE_FORMAT = b"pulse-store-v4"
SEGMENTS_KIND, TIMERS_KIND, OUTBOX_KIND = "segments", "timers", "outbox"
EXPERIMENTS_KIND = "experiments"
_KIND_BY_PREFIX = {ord("i"): ITEMS_CF, ord("s"): SEGMENTS_KIND, ord("t"): TIMERS_KIND, ord("o"): OUTBOX_KIND,
                   ord("x"): EXPERIMENTS_KIND}


def alias_key(alias: str) -> bytes:
    return b"a" + alias.encode("utf-8")


def members_key(profile_id: str) -> bytes:
    return b"m" + profile_id.encode("utf-8")


def item_key(item_id: str) -> bytes:
    return b"i" + item_id.encode("utf-8")


def member_key(segment_id: str, profile_id: str) -> bytes:
    return b"s" + segment_id.encode("utf-8") + b"\x00" + profile_id.encode("utf-8")


def members_prefix(segment_id: str) -> bytes:
    return b"s" + segment_id.encode("utf-8") + b"\x00"


def timer_key(at_ms: int, profile_id: str) -> bytes:
    return b"t" + max(0, at_ms).to_bytes(8, "big") + profile_id.encode("utf-8")


def parse_timer_key(key: bytes) -> tuple[int, str]:
    return int.from_bytes(key[1:9], "big"), key[9:].decode("utf-8")


def outbox_key(seq: int) -> bytes:
    return b"o" + seq.to_bytes(8, "big")


def experiment_key(experiment_id: str, variant_id: str, day: int) -> bytes:
    """Totals of one experiment variant for one UTC day (``x<exp>\x00<variant>\x00<day>``)."""
    return b"x" + experiment_id.encode() + b"\x00" + variant_id.encode() + b"\x00" + day.to_bytes(4, "big")


def parse_experiment_key(key: bytes) -> tuple[str, str, int]:
    exp, variant, day = key[1:].split(b"\x00", 2)
    return exp.decode(), variant.decode(), int.from_bytes(day, "big")


def meta_key(name: str) -> bytes:
    return _META_PREFIX + name.encode("utf-8")


def encode_ms(ms: int) -> bytes:
    return max(0, ms).to_bytes(8, "big")


def encode_members(aliases) -> bytes:
    return orjson.dumps(list(aliases))


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message names the path and what to do."""


class StoreNotReady(StoreError):
    """The writer has not created the store yet (readers wait for it)."""


class ProfileStore(Protocol):
    def get(self, profile_id: str) -> Profile | None: ...
    def profile_of(self, alias: str) -> str | None: ...
    def members_of(self, profile_id: str) -> tuple[str, ...] | None: ...
    def apply(self, profiles: Mapping[str, bytes | None], aliases: Mapping[str, str | None] = ...,
              members: Mapping[str, bytes | None] = ...) -> None: ...
    def write(self, profiles: Iterable[Profile]) -> None: ...
    def close(self) -> None: ...


class ProfileReader(Protocol):
    def get(self, profile_id: str) -> Profile | None: ...
    def profile_of(self, alias: str) -> str | None: ...
    def members_of(self, profile_id: str) -> tuple[str, ...] | None: ...
    def catch_up(self) -> bool: ...
    def close(self) -> None: ...


class _Lookups:
    """Reads shared by every implementation, over ``_raw(cf, key)``."""

    def _raw(self, cf: str, key: bytes) -> bytes | None:
        raise NotImplementedError

    def get(self, profile_id: str) -> Profile | None:
        raw = self._raw(PROFILES_CF, profile_key(profile_id))
        return None if raw is None else decode_profile(raw)

    def profile_of(self, alias: str) -> str | None:
        raw = self._raw(IDENTITY_CF, alias_key(alias))
        return None if raw is None else raw.decode("utf-8")

    def members_of(self, profile_id: str) -> tuple[str, ...] | None:
        raw = self._raw(IDENTITY_CF, members_key(profile_id))
        return None if raw is None else tuple(orjson.loads(raw))

    def get_item(self, item_id: str) -> ItemStats | None:
        raw = self._raw(ITEMS_CF, item_key(item_id))
        return None if raw is None else decode_item(raw)

    def iter_items(self) -> Iterator[ItemStats]:
        """Every item record (a scan of the ``i`` key range)."""
        for kind, key, raw in self.dump():
            if kind == ITEMS_CF:
                yield decode_item(raw)

    def write(self, profiles: Iterable[Profile]) -> None:
        self.apply({p.profile_id: encode_profile(p) for p in profiles})

    def get_raw(self, key: bytes) -> bytes | None:
        """A record of the default family by its full key (segments, timers, outbox, meta)."""
        return self._raw(META_CF, key)

    def get_meta(self, name: str) -> bytes | None:
        return self._raw(META_CF, meta_key(name))

    def raw_get(self, family: str, key: bytes) -> bytes | None:
        """A record by physical column family (``profiles`` or ``default``) and key."""
        return self._raw(PROFILES_CF if family == PROFILES_CF else META_CF, key)

    def scan(self, prefix: bytes, start: bytes | None = None, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of the default family whose keys start with ``prefix``, in key
        order, from ``start`` (inclusive; default the prefix itself)."""
        n = 0
        for key, value in self._scan_from(start or prefix):
            if not key.startswith(prefix) or (limit is not None and n >= limit):
                return
            n += 1
            yield key, value

    def _scan_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError


def _batch_items(profiles, aliases, members, items=None, raw=None):
    """(kind, key, value or None) for every change, in a stable order."""
    for key, value in (raw or {}).items():
        yield META_CF, key, value
    for item_id, raw in (items or {}).items():
        yield ITEMS_CF, item_key(item_id), raw
    for pid, raw in profiles.items():
        yield PROFILES_CF, profile_key(pid), raw
    for alias, pid in aliases.items():
        yield IDENTITY_CF, alias_key(alias), None if pid is None else pid.encode("utf-8")
    for pid, raw in members.items():
        yield IDENTITY_CF, members_key(pid), raw


class MemoryStore(_Lookups):
    """In-memory store with the same contract (keeps encoded bytes, like the real one)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[bytes, bytes]] = {PROFILES_CF: {}, "default": {}}
        self._lock = threading.Lock()

    def apply(self, profiles, aliases=None, members=None, items=None, raw=None) -> None:
        self.raw_apply((_PHYSICAL[cf], key, value)
                       for cf, key, value in _batch_items(profiles, aliases or {}, members or {}, items, raw))

    def _raw(self, cf: str, key: bytes) -> bytes | None:
        return self._data[_PHYSICAL[cf]].get(key)

    def raw_apply(self, rows) -> None:
        """(physical family, key, value or None) rows, as one write (changelog replicas)."""
        with self._lock:
            for family, key, value in rows:
                if value is None:
                    self._data[family].pop(key, None)
                else:
                    self._data[family][key] = value

    def _scan_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            rows = sorted((k, v) for k, v in self._data["default"].items() if k >= start)
        yield from rows

    def catch_up(self) -> bool:
        return False

    def count(self) -> int:
        return len(self._data[PROFILES_CF])

    def iter_profiles(self) -> Iterator[Profile]:
        for raw in list(self._data[PROFILES_CF].values()):
            yield decode_profile(raw)

    def dump(self) -> Iterator[tuple[str, bytes, bytes]]:
        yield from _dump({PROFILES_CF: self._data[PROFILES_CF], "default": dict(sorted(self._data["default"].items()))})

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class StoreHealth:
    """What RocksDB reports about its write path (``RocksStore.health``): a write that
    slows down without more work in Python is usually compaction falling behind, and
    these say so. Per physical column family: files in level 0 (writes slow down at 20
    and stop at 36 with the default options), bytes compaction still has to rewrite,
    memtable bytes."""

    stall_seconds: float  # writes delayed or stopped by RocksDB since the store opened
    delayed_write_rate: int  # bytes/s RocksDB throttles writes to now; 0 when not throttling
    write_stopped: bool
    compactions_running: int
    level0_files: dict[str, int]
    pending_compaction_bytes: dict[str, int]
    memtable_bytes: dict[str, int]


_STALL = re.compile(r"Cumulative stall: (\d+):(\d+):([\d.]+) H:M:S")


def _stall_seconds(db_stats: str | None) -> float:
    """The cumulative stall time in RocksDB's ``rocksdb.dbstats`` text (0 if absent)."""
    found = _STALL.search(db_stats or "")
    if found is None:
        return 0.0
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class StoreOptions:
    """How the writer opens RocksDB (readers need none of it: the files say what they hold).

    ``write_buffer_mb``: the memtable of the profiles family. Profile records are rewritten
    whole on every change, and every level-0 compaction merges into a base level that holds
    every profile: larger memtables mean fewer, larger level-0 files and fewer rewrites of
    that level (``bench.bench_store``, 2026-12-05: flush and compaction CPU 11.2 -> 4.8 s for
    the same writes, 64 -> 256 MB; WriteBatch time unchanged). RocksDB keeps up to two of
    them (one being flushed).
    No blob files (key-value separation), which would cut rewrites further: RocksDB does not
    support them with secondary instances, which is how ``pulse serve`` reads this store."""

    defaults: bool = False  # RocksDB's own defaults for everything (Pulse before 2026-12-05)
    write_buffer_mb: int = 256


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    return opts


def _cf_options(opt: StoreOptions | None = None) -> dict[str, Options]:
    """Options per named column family; readers pass none (RocksDB's defaults)."""
    out = {}
    for name in COLUMN_FAMILIES:
        cf = Options(raw_mode=True)
        if opt is not None and not opt.defaults:
            cf.set_write_buffer_size(opt.write_buffer_mb << 20)
        out[name] = cf
    return out


def _iter_items(cfs: dict) -> Iterator[ItemStats]:
    for key, raw in cfs["default"].items(from_key=b"i"):
        if not key.startswith(b"i"):
            break
        yield decode_item(raw)


def _kind(key: bytes) -> str:
    return _KIND_BY_PREFIX.get(key[0], IDENTITY_CF) if key else IDENTITY_CF


def _dump(cfs: dict) -> Iterator[tuple[str, bytes, bytes]]:
    for key, value in cfs[PROFILES_CF].items():
        yield PROFILES_CF, key, value
    for key, value in cfs["default"].items():
        if key.startswith(_META_PREFIX):
            yield META_CF, key[1:], value
        else:
            yield _kind(key), key, value


class RocksStore(_Lookups):
    """The primary (read-write) store. Exactly one process opens it this way."""

    def __init__(self, path: str | os.PathLike, options: StoreOptions = StoreOptions()) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(str(self.path), _options(), column_families=_cf_options(options))
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's text
            raise StoreError(
                f"cannot open the state store at {self.path}: {exc}. If another 'pulse run' "
                "uses this directory, stop it; if the directory is damaged, restore it from "
                "a backup, or move it away and rebuild it with `pulse replay` (history files or "
                "--topic) into an empty directory."
            ) from exc
        self._cfs = {"default": self._db, PROFILES_CF: self._db.get_column_family(PROFILES_CF)}
        self._handles = {PROFILES_CF: self._db.get_column_family_handle(PROFILES_CF), "default": None}
        fmt = self._db.get(_META_PREFIX + b"format")
        self.created = fmt is None  # a new, empty store (no Pulse data was here)
        if fmt is None:
            self._db[_META_PREFIX + b"format"] = STORE_FORMAT
        elif fmt != STORE_FORMAT:
            raise StoreError(f"{self.path} holds store format {fmt!r}, this Pulse reads {STORE_FORMAT!r}")
        self._profiles_db = self._cfs[PROFILES_CF]

    def _raw(self, cf: str, key: bytes) -> bytes | None:
        return self._cfs[_PHYSICAL[cf]].get(key)

    def apply(self, profiles, aliases=None, members=None, items=None, raw=None) -> None:
        """Write every change (``None`` deletes) atomically, in one WriteBatch; ``raw``
        maps full default-family keys (segments, timers, outbox, meta) to values."""
        self.raw_apply((_PHYSICAL[cf], key, value)
                       for cf, key, value in _batch_items(profiles, aliases or {}, members or {}, items, raw))

    def raw_apply(self, rows) -> None:
        """(physical family, key, value or None) rows in one WriteBatch (changelog replicas)."""
        wb = WriteBatch(raw_mode=True)
        for family, key, value in rows:
            handle = self._handles[family]
            if value is None:
                wb.delete(key, handle)
            else:
                wb.put(key, value, handle)
        if len(wb):
            self._db.write(wb)

    def dump(self) -> Iterator[tuple[str, bytes, bytes]]:
        """Every (kind, key, value) in the store, across all column families: for audits."""
        yield from _dump(self._cfs)

    def iter_items(self) -> Iterator[ItemStats]:
        yield from _iter_items(self._cfs)

    def _scan_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from self._db.items(from_key=start)

    def iter_profiles(self) -> Iterator[Profile]:
        for _key, raw in self._profiles_db.items():
            yield decode_profile(raw)

    def count(self) -> int:
        """Exact number of profiles (a full key scan: for tests and tools, not hot paths)."""
        return sum(1 for _ in self._profiles_db.keys())

    def estimate_count(self) -> int:
        """RocksDB's cheap estimate (counts overwrites until compaction)."""
        return int(self._profiles_db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def health(self) -> StoreHealth:
        """RocksDB's write-path figures now (a few property reads: for a gauge thread)."""
        db = self._db

        def per_family(prop: str, text: bool = False) -> dict[str, int]:
            """An integer property of each family (``text``: one RocksDB reports as a string)."""
            out = {}
            for name in ("default", PROFILES_CF):
                cf = self._cfs[name]
                out[name] = int((cf.property_value(prop) if text else cf.property_int_value(prop)) or 0)
            return out
        return StoreHealth(
            stall_seconds=_stall_seconds(db.property_value("rocksdb.dbstats")),
            delayed_write_rate=int(db.property_int_value("rocksdb.actual-delayed-write-rate") or 0),
            write_stopped=bool(db.property_int_value("rocksdb.is-write-stopped")),
            compactions_running=int(db.property_int_value("rocksdb.num-running-compactions") or 0),
            level0_files=per_family("rocksdb.num-files-at-level0", text=True),
            pending_compaction_bytes=per_family("rocksdb.estimate-pending-compaction-bytes"),
            memtable_bytes=per_family("rocksdb.cur-size-all-mem-tables"),
        )

    def family_stats(self, family: str = PROFILES_CF) -> str:
        """RocksDB's text report of one column family (``rocksdb.cfstats``: levels, files,
        compaction bytes and CPU), for benchmarks and debugging."""
        return self._cfs[family].property_value("rocksdb.cfstats") or ""

    def close(self) -> None:
        # RocksDB's lock is released only when every handle is gone, so drop them all.
        if self._db is None:
            return
        self._cfs[PROFILES_CF].close()
        self._db.close()
        self._db = self._profiles_db = None
        self._cfs = {}
        self._handles = {}


class RocksReader(_Lookups):
    """A secondary instance over the writer's directory; ``catch_up`` pulls new writes.

    Opening waits for the writer: until the store exists, ``get`` raises
    ``StoreNotReady``. Each reader needs its own ``secondary_dir``.
    """

    def __init__(self, path: str | os.PathLike, secondary_dir: str | os.PathLike) -> None:
        self.path = Path(path)
        self.secondary_dir = Path(secondary_dir)
        self._db: Rdict | None = None
        self._profiles_db: Rdict | None = None
        self._cfs: dict[str, Rdict] = {}
        self._seen_files: tuple = ()
        self._lock = threading.Lock()
        self._try_open()

    @property
    def ready(self) -> bool:
        return self._profiles_db is not None

    def _try_open(self) -> bool:
        if not (self.path / "CURRENT").exists():
            return False
        self.secondary_dir.mkdir(parents=True, exist_ok=True)
        self._seen_files = self._primary_files()
        try:
            db = Rdict(
                str(self.path),
                Options(raw_mode=True),
                column_families=_cf_options(),
                access_type=AccessType.secondary(str(self.secondary_dir)),
            )
        except Exception as exc:
            if "Column family not found" in str(exc):
                return False  # the writer is creating the store right now: not ready yet
            raise StoreError(f"cannot open the state store at {self.path} as a reader: {exc}") from exc
        self._db = db
        self._cfs = {"default": db, PROFILES_CF: db.get_column_family(PROFILES_CF)}
        self._profiles_db = self._cfs[PROFILES_CF]
        return True

    def _primary_files(self) -> tuple:
        """Names and sizes of the writer's WAL and MANIFEST files: they change on every
        write, flush and compaction, so an unchanged tuple means nothing to catch up."""
        with os.scandir(self.path) as entries:
            return tuple(sorted((e.name, e.stat().st_size) for e in entries
                                if e.name.endswith(".log") or e.name.startswith("MANIFEST-")))

    def catch_up(self) -> bool:
        """Follow the writer; returns True if the reader (re)read the primary's changes.

        A RocksDB catch-up costs ~1 ms per column family and holds the GIL, so it is
        skipped when the primary's files have not changed since the last one.
        """
        with self._lock:
            if self._db is None:
                return self._try_open()
            files = self._primary_files()
            if files == self._seen_files:
                return False
            self._db.try_catch_up_with_primary()
            self._seen_files = files
            return True

    def _raw(self, cf: str, key: bytes) -> bytes | None:
        if self._profiles_db is None:
            raise StoreNotReady(f"no Pulse store at {self.path} yet: is 'pulse run' running?")
        return self._cfs[_PHYSICAL[cf]].get(key)

    def dump(self) -> Iterator[tuple[str, bytes, bytes]]:
        if self._profiles_db is None:
            raise StoreNotReady(f"no Pulse store at {self.path} yet: is 'pulse run' running?")
        yield from _dump(self._cfs)

    def iter_items(self) -> Iterator[ItemStats]:
        if self._profiles_db is None:
            raise StoreNotReady(f"no Pulse store at {self.path} yet: is 'pulse run' running?")
        yield from _iter_items(self._cfs)

    def _scan_from(self, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self._profiles_db is None:
            raise StoreNotReady(f"no Pulse store at {self.path} yet: is 'pulse run' running?")
        yield from self._db.items(from_key=start)

    def iter_profiles(self) -> Iterator[Profile]:
        if self._profiles_db is None:
            raise StoreNotReady(f"no Pulse store at {self.path} yet: is 'pulse run' running?")
        for _key, raw in self._profiles_db.items():
            yield decode_profile(raw)

    def apply(self, *args, **kwargs) -> None:
        raise StoreError("a reader cannot write")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._cfs[PROFILES_CF].close()
                self._db.close()
                self._db = self._profiles_db = None
                self._cfs = {}
