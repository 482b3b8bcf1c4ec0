"""``LiveItemIndex``: first build when ready, rebuilds only when the store changed and the
interval passed, failures keep the previous index."""

from __future__ import annotations

import logging

import pytest

import random

import numpy as np

from operators.items import ItemStats
from serving import LiveItemIndex, StoreUnavailable
from serving.catalog import IncrementalItems
from serving.item_index import build_index
from state.codec import StateCodecError, encode_item
from state.store import MemoryStore, item_key
from tests.serving.conftest import put_items


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Flaky(MemoryStore):
    """A MemoryStore whose item scan can be made to fail, or to look not created yet."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: Exception | None = None
        self.ready = True
        self.scans = 0

    def scan(self, prefix, start=None, limit=None):
        if prefix == item_key(""):
            self.scans += 1
            if self.fail is not None:
                raise self.fail
        return super().scan(prefix, start, limit)


@pytest.fixture
def setup():
    store, clock = Flaky(), Clock()
    put_items(store, ItemStats("a", "c", score=1.0, ref_ms=5))
    return store, clock, LiveItemIndex(store, refresh_ms=1000, clock=clock)


def test_first_build_as_soon_as_ready_then_only_after_changes_and_the_interval(setup):
    store, clock, live = setup
    assert live.index is None
    assert not live.refresh(changed=False, ready=False)
    assert live.refresh(changed=False, ready=True)  # first build: no change needed
    assert list(live.current().ids) == ["a"] and store.scans == 1

    put_items(store, ItemStats("b", "c", score=2.0, ref_ms=6))
    assert not live.refresh(changed=False, ready=True)  # nothing reported: no scan
    clock.now += 5
    assert not live.refresh(changed=False, ready=True) and store.scans == 1
    assert live.refresh(changed=True, ready=True)  # due, and changed
    assert list(live.current().ids) == ["a", "b"] and store.scans == 2

    clock.now += 0.5
    assert not live.refresh(changed=True, ready=True)  # changed, but not due yet: remembered
    clock.now += 0.5
    assert live.refresh(changed=False, ready=True) and store.scans == 3
    clock.now += 10
    assert not live.refresh(changed=False, ready=True) and store.scans == 3


def test_the_swap_never_changes_an_index_in_use(setup):
    store, clock, live = setup
    live.refresh(changed=False, ready=True)
    in_use = live.current()
    put_items(store, ItemStats("b", "c", score=2.0, ref_ms=6))
    clock.now += 2
    live.refresh(changed=True, ready=True)
    assert list(in_use.ids) == ["a"] and list(live.current().ids) == ["a", "b"]


def test_a_failed_build_keeps_the_previous_index_and_logs_once(setup, caplog):
    store, clock, live = setup
    live.refresh(changed=False, ready=True)
    before = live.current()
    store.fail = ValueError("undecodable item record")
    with caplog.at_level(logging.WARNING, logger="serving.catalog"):
        for _ in range(3):
            clock.now += 2
            assert not live.refresh(changed=True, ready=True)
    assert live.current() is before
    warnings = [r for r in caplog.records if r.name == "serving.catalog" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "undecodable item record" in warnings[0].getMessage()
    put_items(store, ItemStats("b", "c", score=2.0, ref_ms=6))
    store.fail = None
    clock.now += 2
    assert live.refresh(changed=False, ready=True)  # the change is still pending after a failure
    assert live.current() is not before and list(live.current().ids) == ["a", "b"]


def test_current_builds_on_first_use_or_says_the_store_is_not_ready(setup):
    store, _clock, live = setup
    from state.store import StoreNotReady

    store.fail = StoreNotReady("no store yet")
    with pytest.raises(StoreUnavailable, match="not ready"):
        live.current()
    store.fail = None
    assert list(live.current().ids) == ["a"]
    assert live.current() is live.current()


def test_rebuild_forces_a_build(setup):
    store, _clock, live = setup
    live.refresh(changed=False, ready=True)
    put_items(store, ItemStats("b", "c", score=2.0, ref_ms=6))
    assert list(live.rebuild().ids) == ["a", "b"]


def test_refresh_ms_is_checked():
    with pytest.raises(ValueError, match="refresh_ms"):
        LiveItemIndex(MemoryStore(), refresh_ms=0)


def assert_same_index(a, b):
    assert list(a.ids) == list(b.ids) and a.category_names == b.category_names and a.as_of_ms == b.as_of_ms
    for name in ("category_codes", "prices", "popularity"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert dict(a.rows) == dict(b.rows) and dict(a.codes) == dict(b.codes)
    assert list(a.names) == list(b.names)


def test_incremental_builds_equal_full_builds_and_decode_only_changed_records():
    rng = random.Random(7)
    store = MemoryStore()
    cats = ["kitchen", "outdoor/tents", "outdoor/boots", None]

    def stats(item_id, t):
        return ItemStats(item_id, rng.choice(cats), t, rng.choice([0.0, 5.0, 19.99]), t, rng.uniform(0, 50),
                         t - rng.randrange(10**8))

    store.apply({}, items={f"i{n:03d}": encode_item(stats(f"i{n:03d}", 10**12)) for n in range(200)})
    builder = IncrementalItems(store, slice_items=7)
    for step in range(40):
        index = builder.build()
        assert_same_index(index, build_index(store.iter_items()))
        if step == 0:
            assert builder.decoded == 200
        changes: dict = {f"i{rng.randrange(200):03d}": None for _ in range(rng.randrange(0, 12))}
        changes = {k: encode_item(stats(k, 10**12 + step)) for k in changes}
        if step % 5 == 1:
            changes[f"new{step}"] = encode_item(stats(f"new{step}", 10**12 + step))
        if step % 7 == 3:
            changes[f"i{rng.randrange(200):03d}"] = None  # an item goes
        if step % 11 == 5:
            changes[f"i{rng.randrange(200):03d}"] = encode_item(ItemStats("x", f"only-{step}", 1, 1.0, 1, 1.0, 1))
        store.apply({}, items=changes)
        if not changes and step < 5:  # (a record under another item's key makes every build a full one)
            assert builder.build() is index and builder.decoded == 0


def test_only_changed_records_are_decoded():
    store = MemoryStore()
    put_items(store, *(ItemStats(f"i{n}", "c", price=1.0, score=float(n), ref_ms=5) for n in range(50)))
    builder = IncrementalItems(store)
    first = builder.build()
    assert builder.decoded == 50
    assert builder.build() is first and builder.decoded == 0
    put_items(store, ItemStats("i3", "c", price=2.0, score=9.0, ref_ms=7))
    second = builder.build()
    assert builder.decoded == 1 and second.prices[second.rows["i3"]] == 2.0 and second.as_of_ms == 7
    assert first.prices[first.rows["i3"]] == 1.0  # the previous index is untouched
    assert_same_index(second, build_index(store.iter_items()))


def test_a_bad_item_record_is_an_error_naming_it():
    store = MemoryStore()
    store.apply({}, items={"a": b'{"v": 9, "item_id": "a"}'})
    with pytest.raises(StateCodecError, match="undecodable item record"):
        IncrementalItems(store).build()


def test_an_incremental_build_keeps_the_resolved_neighbours_of_unchanged_items_only():
    rng = random.Random(11)
    store = MemoryStore()
    ids = [f"i{n:03d}" for n in range(60)]

    def stats(item_id, t):
        return ItemStats(item_id, "c", t, 5.0, t, rng.uniform(0, 50), t,
                         neighbors={other: round(rng.uniform(0.1, 3.0), 2) for other in rng.sample(ids, 6)})

    store.apply({}, items={i: encode_item(stats(i, 10**12)) for i in ids})
    builder = IncrementalItems(store)
    index = builder.build()
    assert len(index.models.neighbor_rows) == len(ids)  # resolved by the build, not by requests
    for step in range(6):
        changed = set(rng.sample(ids, 5))
        store.apply({}, items={i: encode_item(stats(i, 10**12 + step + 1)) for i in changed})
        patched, fresh = builder.build(), build_index(store.iter_items())
        assert builder.decoded == len(changed)
        kept = {row for row in range(len(ids))
                if patched.models.neighbor_rows[row] is index.models.neighbor_rows[row]}
        assert kept == {row for row in range(len(ids)) if ids[row] not in changed}
        for row in range(len(fresh)):
            got, want = patched.models.neighbor_rows[row], fresh.models.neighbor_rows[row]
            assert got[0].tolist() == want[0].tolist() and got[1].tolist() == pytest.approx(want[1].tolist())
        index = patched
