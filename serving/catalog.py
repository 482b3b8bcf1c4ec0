"""The live item index: built from a reader's items, rebuilt when the store changed,
swapped atomically.

The server's catch-up loop calls ``refresh(changed, ready)`` after every catch-up; the
index is rebuilt at most every ``refresh_ms`` and only when a catch-up reported new
writes since the last build (the first build happens as soon as the store is ready).
Requests call ``current()`` once and rank that index to the end: a rebuild replaces the
reference, never the arrays a request is using.

A reader whose ``catch_up`` never reports changes (``MemoryStore``: its writes are
visible at once) gets one build; ``rebuild()`` forces another.

A build is incremental (``IncrementalItems``): it scans the raw item records (``i`` keys,
~4 ms for 10,000 items), compares each with the bytes of the previous build, and decodes
only the records that changed; when no item appeared or went, the previous arrays are
copied and patched. The scan and the decoding run in slices of ``slice_items`` records
with a short sleep between slices, so the request threads get the GIL at least every
slice (~0.5 ms) instead of waiting out a whole build (a full decode of 10,000 item
records with ``decode_item`` + ``build_index`` took 50-110 ms with the GIL held). Sorting
the rows for the request-time selection (``make_index``, ~2 ms) pauses between its steps too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import orjson

from operators.items import READABLE_VERSIONS
from serving.errors import StoreUnavailable
from serving.hybrid import ItemExtras
from serving.item_index import NO_CATEGORY, ItemIndex, make_index
from state.codec import StateCodecError
from state.store import StoreNotReady, item_key

log = logging.getLogger(__name__)

ITEM_PREFIX = item_key("")
DEFAULT_SLICE_ITEMS = 1000
DEFAULT_PAUSE_S = 0.0002


def _fields(raw: bytes) -> tuple[str, str, float, float, int, float, int, ItemExtras]:
    """(item id, category, price, score, ref_ms, trend, trend_ref_ms, extras) of an item
    record, as ``build_index`` reads an ``ItemStats`` (no category: NO_CATEGORY, unknown
    price: 0.0), without building one."""
    try:
        rec = orjson.loads(raw)
        if rec.get("v") not in READABLE_VERSIONS:
            raise ValueError(f"item record version {rec.get('v')!r}, expected one of {READABLE_VERSIONS}")
        extras = ItemExtras(rec.get("brand"), rec.get("factors") or (), rec.get("neighbors") or {}, rec.get("in_stock"))
        return (rec["item_id"], rec["category"] or NO_CATEGORY, float(rec["price"] or 0.0), float(rec["score"]),
                int(rec["ref_ms"]), float(rec.get("trend", 0.0)), int(rec.get("trend_ref_ms", 0)), extras)
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StateCodecError(f"undecodable item record ({len(raw)} bytes): {exc}") from exc


class IncrementalItems:
    """Builds item indexes from a reader's raw item records, decoding only what changed
    since the previous build. Equal to ``build_index(reader.iter_items())`` (tests check).

    Not thread-safe: one build at a time (``LiveItemIndex`` holds its lock).
    """

    def __init__(self, reader, slice_items: int = DEFAULT_SLICE_ITEMS, pause_s: float = DEFAULT_PAUSE_S) -> None:
        if slice_items < 1:
            raise ValueError(f"slice_items must be at least 1, got {slice_items}")
        self._reader = reader
        self._slice = slice_items
        self._pause = pause_s
        self._keys: list[bytes] = []
        self._raws: list[bytes] = []
        self._cats: list[str] = []  # category per row
        self._scores = np.empty(0, np.float64)
        self._refs = np.empty(0, np.int64)
        self._trends = np.empty(0, np.float64)
        self._trend_refs = np.empty(0, np.int64)
        self._extras: list[ItemExtras] = []
        self._index: ItemIndex | None = None
        self.decoded = 0  # records decoded by the last build (tests, logs)

    def _breathe(self, n: int) -> None:
        if n % self._slice == 0 and self._pause >= 0:
            time.sleep(self._pause)  # let request threads take the GIL between slices

    def _step(self) -> None:
        """Between the steps of ``make_index`` (sorting the rows for the selection)."""
        if self._pause >= 0:
            time.sleep(self._pause)

    def build(self) -> ItemIndex:
        keys: list[bytes] = []
        raws: list[bytes] = []
        for n, (key, raw) in enumerate(self._reader.scan(ITEM_PREFIX), 1):
            keys.append(key)
            raws.append(raw)
            self._breathe(n)
        prev = self._index
        if prev is not None and keys == self._keys:
            index = self._patch(prev, raws)
        else:
            index = self._full(keys, raws)  # sets self._keys
        self._raws, self._index = raws, index
        return index

    def _patch(self, prev: ItemIndex, raws: list[bytes]) -> ItemIndex:
        """Same items as the previous build: copy its columns and change the changed rows."""
        old = self._raws
        changed = [row for row, (a, b) in enumerate(zip(raws, old)) if a != b]
        self.decoded = len(changed)
        if not changed:
            return prev
        prices, scores, refs = prev.prices.copy(), self._scores.copy(), self._refs.copy()
        trends, trend_refs, extras = self._trends.copy(), self._trend_refs.copy(), self._extras.copy()
        cats = self._cats.copy()
        ids = prev.ids
        recode = False
        for n, row in enumerate(changed, 1):
            item_id, category, price, score, ref, trend, trend_ref, extra = _fields(raws[row])
            if item_id != ids[row]:  # a record stored under another key: rebuild from scratch
                return self._full(self._keys, raws)
            if category != cats[row]:
                cats[row] = category
                recode = True
            prices[row], scores[row], refs[row] = price, score, ref
            trends[row], trend_refs[row], extras[row] = trend, trend_ref, extra
            self._breathe(n)
        if recode:
            names, codes = self._codes(cats)
        else:
            names, codes = prev.category_names, prev.category_codes.copy()
        self._cats, self._scores, self._refs = cats, scores, refs
        self._trends, self._trend_refs, self._extras = trends, trend_refs, extras
        return make_index(ids, codes, names, prices, scores, refs, rows=prev.rows, breathe=self._step,
                          trends=trends, trend_refs=trend_refs, extras=extras, previous_models=prev.models)

    def _full(self, keys: list[bytes], raws: list[bytes]) -> ItemIndex:
        """Items appeared or went: new rows, reusing the fields of records that did not change."""
        before = dict(zip(self._keys, range(len(self._keys))))
        old_raws, old_cats = self._raws, self._cats
        prev = self._index
        if prev is not None:  # per-element numpy reads cost ~10x a list's
            old = list(zip(prev.ids.tolist(), old_cats, prev.prices.tolist(), self._scores.tolist(),
                           self._refs.tolist(), self._trends.tolist(), self._trend_refs.tolist(), self._extras))
        fields: list[tuple] = []
        decoded = 0
        for n, (key, raw) in enumerate(zip(keys, raws), 1):
            row = before.get(key)
            if row is not None and old_raws[row] == raw:
                fields.append(old[row])
            else:
                fields.append(_fields(raw))
                decoded += 1
            self._breathe(n)
        fields.sort(key=lambda f: f[0])  # rows in item id order (keys are, unless ids and keys disagree)
        n = len(fields)
        ids = np.empty(n, dtype=object)
        ids[:] = [f[0] for f in fields]
        cats = [f[1] for f in fields]
        names, codes = self._codes(cats)
        prices = np.fromiter((f[2] for f in fields), np.float64, n)
        scores = np.fromiter((f[3] for f in fields), np.float64, n)
        refs = np.fromiter((f[4] for f in fields), np.int64, n)
        trends = np.fromiter((f[5] for f in fields), np.float64, n)
        trend_refs = np.fromiter((f[6] for f in fields), np.int64, n)
        extras = [f[7] for f in fields]
        if [f[0] for f in fields] != [k[len(ITEM_PREFIX):].decode("utf-8") for k in keys]:
            keys = []  # rows do not follow keys: never patch by key position, rebuild next time
        self._keys = keys
        self._cats, self._scores, self._refs = cats, scores, refs
        self._trends, self._trend_refs, self._extras = trends, trend_refs, extras
        self.decoded = decoded
        return make_index(ids, codes, names, prices, scores.copy(), refs.copy(), breathe=self._step,
                          trends=trends.copy(), trend_refs=trend_refs.copy(), extras=extras)

    @staticmethod
    def _codes(cats: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
        names = tuple(sorted(set(cats)))
        code_of = {name: code for code, name in enumerate(names)}
        return names, np.fromiter((code_of[c] for c in cats), np.intp, len(cats))


class LiveItemIndex:
    def __init__(self, reader, refresh_ms: int = 2000, clock: Callable[[], float] = time.monotonic, *,
                 slice_items: int = DEFAULT_SLICE_ITEMS, pause_s: float = DEFAULT_PAUSE_S) -> None:
        if refresh_ms < 1:
            raise ValueError(f"refresh_ms must be at least 1, got {refresh_ms}")
        self._reader = reader
        self._builder = IncrementalItems(reader, slice_items, pause_s)
        self._refresh_s = refresh_ms / 1000
        self._clock = clock
        self._index: ItemIndex | None = None
        self._dirty = True  # writes landed since the last build (or nothing built yet)
        self._last_attempt: float | None = None
        self._last_error: str | None = None
        self._build_lock = threading.Lock()

    @property
    def index(self) -> ItemIndex | None:
        """The current index; None until the first build."""
        return self._index

    def _ready(self) -> bool:
        return bool(getattr(self._reader, "ready", True))  # MemoryStore has no `ready`

    def current(self) -> ItemIndex:
        """The index to rank with. Before the catch-up loop's first build, builds it here.

        Raises ``StoreUnavailable`` while the store does not exist or cannot be read.
        """
        index = self._index
        if index is not None:
            return index
        with self._build_lock:
            if self._index is None:
                try:
                    self._build()
                except StoreNotReady as exc:
                    raise StoreUnavailable(
                        "the profile store is not ready yet (the processor has not created it); retry later"
                    ) from exc
            return self._index

    def refresh(self, changed: bool, ready: bool) -> bool:
        """Called after each catch-up: rebuild if due. Returns True if a new index is in place.

        A failed build is logged (once per distinct error) and retried at the next
        interval; the previous index keeps serving meanwhile.
        """
        if changed:
            self._dirty = True
        if not ready or not self._dirty:
            return False
        now = self._clock()
        if self._index is not None and self._last_attempt is not None and now - self._last_attempt < self._refresh_s:
            return False
        self._last_attempt = now
        with self._build_lock:
            try:
                self._build()
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if text != self._last_error:
                    self._last_error = text
                    log.warning("building the item index failed (keeping the previous one; will retry): %s", text)
                return False
        if self._last_error is not None:
            log.info("building the item index works again")
            self._last_error = None
        return True

    def rebuild(self) -> ItemIndex:
        """Build now, whatever the schedule (tests, tools)."""
        with self._build_lock:
            return self._build()

    def _build(self) -> ItemIndex:
        first = self._index is None
        start = time.perf_counter()
        index = self._builder.build()
        self._index = index  # one reference assignment: requests see the old or the new index
        self._dirty = False
        took_ms = (time.perf_counter() - start) * 1000
        (log.info if first else log.debug)("item index: %d items in %d categories (%d records decoded), "
                                           "built in %.1f ms", len(index), len(index.category_names),
                                           self._builder.decoded, took_ms)
        return index
