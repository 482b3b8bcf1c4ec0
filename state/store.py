"""The keyed profile store: one writer (the flow), any number of secondary readers.

Two implementations share one contract (``tests/state/test_store_contract.py``):
``MemoryStore`` for unit tests and ``RocksStore`` (rocksdict) for everything real.
Column families: ``profiles`` (profile id -> profile record) and ``meta``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from rocksdict import AccessType, Options, Rdict, WriteBatch

from operators.profile import Profile
from state.codec import decode_profile, encode_profile, profile_key

PROFILES_CF = "profiles"
META_CF = "meta"
COLUMN_FAMILIES = (PROFILES_CF, META_CF)
STORE_FORMAT = b"pulse-store-v1"


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message names the path and what to do."""


class StoreNotReady(StoreError):
    """The writer has not created the store yet (readers wait for it)."""


class ProfileStore(Protocol):
    def get(self, profile_id: str) -> Profile | None: ...
    def write_encoded(self, records: Iterable[tuple[str, bytes]]) -> None: ...
    def write(self, profiles: Iterable[Profile]) -> None: ...
    def close(self) -> None: ...


class ProfileReader(Protocol):
    def get(self, profile_id: str) -> Profile | None: ...
    def catch_up(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """In-memory store with the same contract (keeps encoded bytes, like the real one)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def get(self, profile_id: str) -> Profile | None:
        raw = self._data.get(profile_key(profile_id))
        return None if raw is None else decode_profile(raw)

    def write_encoded(self, records: Iterable[tuple[str, bytes]]) -> None:
        encoded = [(profile_key(pid), raw) for pid, raw in records]
        with self._lock:
            self._data.update(encoded)

    def write(self, profiles: Iterable[Profile]) -> None:
        self.write_encoded((p.profile_id, encode_profile(p)) for p in profiles)

    def catch_up(self) -> None:
        return None

    def count(self) -> int:
        return len(self._data)

    def close(self) -> None:
        return None


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    return opts


def _cf_options() -> dict[str, Options]:
    return {name: Options(raw_mode=True) for name in COLUMN_FAMILIES}


class RocksStore:
    """The primary (read-write) store. Exactly one process opens it this way."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(str(self.path), _options(), column_families=_cf_options())
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's text
            raise StoreError(
                f"cannot open the state store at {self.path}: {exc}. If another 'pulse run' "
                "uses this directory, stop it; if the directory is damaged, restore it from "
                "a backup or rebuild it with a replay into an empty directory."
            ) from exc
        self._profiles = self._db.get_column_family_handle(PROFILES_CF)
        self._meta = self._db.get_column_family(META_CF)
        fmt = self._meta.get(b"format")
        if fmt is None:
            self._meta[b"format"] = STORE_FORMAT
        elif fmt != STORE_FORMAT:
            raise StoreError(f"{self.path} holds store format {fmt!r}, this Pulse reads {STORE_FORMAT!r}")
        self._profiles_db = self._db.get_column_family(PROFILES_CF)

    def get(self, profile_id: str) -> Profile | None:
        raw = self._profiles_db.get(profile_key(profile_id))
        return None if raw is None else decode_profile(raw)

    def write_encoded(self, records: Iterable[tuple[str, bytes]]) -> None:
        """Write encoded profile records atomically, in one WriteBatch."""
        wb = WriteBatch(raw_mode=True)
        for pid, raw in records:
            wb.put(profile_key(pid), raw, self._profiles)
        if len(wb):
            self._db.write(wb)

    def write(self, profiles: Iterable[Profile]) -> None:
        self.write_encoded((p.profile_id, encode_profile(p)) for p in profiles)

    def iter_profiles(self) -> Iterator[Profile]:
        for _key, raw in self._profiles_db.items():
            yield decode_profile(raw)

    def count(self) -> int:
        """Exact number of profiles (a full key scan: for tests and tools, not hot paths)."""
        return sum(1 for _ in self._profiles_db.keys())

    def estimate_count(self) -> int:
        """RocksDB's cheap estimate (counts overwrites until compaction)."""
        return int(self._profiles_db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def close(self) -> None:
        # RocksDB's lock is released only when every handle is gone, so drop them all.
        if self._db is None:
            return
        self._meta.close()
        self._profiles_db.close()
        self._db.close()
        self._db = self._meta = self._profiles = self._profiles_db = None


class RocksReader:
    """A secondary instance over the writer's directory; ``catch_up`` pulls new writes.

    Opening waits for the writer: until the store exists, ``get`` raises
    ``StoreNotReady``. Each reader needs its own ``secondary_dir``.
    """

    def __init__(self, path: str | os.PathLike, secondary_dir: str | os.PathLike) -> None:
        self.path = Path(path)
        self.secondary_dir = Path(secondary_dir)
        self._db: Rdict | None = None
        self._profiles_db: Rdict | None = None
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
            raise StoreError(f"cannot open the state store at {self.path} as a reader: {exc}") from exc
        self._db = db
        self._profiles_db = db.get_column_family(PROFILES_CF)
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

    def get(self, profile_id: str) -> Profile | None:
        db = self._profiles_db
        if db is None:
            raise StoreNotReady(f"no Pulse store at {self.path} yet: is 'pulse run' running?")
        raw = db.get(profile_key(profile_id))
        return None if raw is None else decode_profile(raw)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._profiles_db.close()
                self._db.close()
                self._db = self._profiles_db = None
