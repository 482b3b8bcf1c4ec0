"""``LiveItemIndex``: first build when ready, rebuilds only when the store changed and the
interval passed, failures keep the previous index."""

from __future__ import annotations

import logging

import pytest

from operators.items import ItemStats
from serving import LiveItemIndex, StoreUnavailable
from state.store import MemoryStore
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

    def iter_items(self):
        self.scans += 1
        if self.fail is not None:
            raise self.fail
        return super().iter_items()


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
    store.fail = None
    clock.now += 2
    assert live.refresh(changed=False, ready=True)  # the change is still pending after a failure
    assert live.current() is not before


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
