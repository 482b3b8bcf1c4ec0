"""Routing the records of a multi-process flow to process 0 (``flows.cluster``), checked
against Bytewax itself: which worker a keyed item lands on, and the move step."""

from __future__ import annotations

import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from flows.cluster import ClusterError, Elsewhere, owner_key, to_owner, worker_of


class _Landing(DynamicSink):
    """Records (worker index, item) for every item written."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, object]] = []
        self._lock = threading.Lock()

    def build(self, step_id, worker_index, worker_count):
        sink = self

        class Part(StatelessSinkPartition):
            def write_batch(self, items):
                with sink._lock:
                    sink.seen.extend((worker_index, item) for item in items)

        return Part()


class _Stateful(op.StatefulBatchLogic):
    def on_batch(self, values):
        return values, True

    def snapshot(self):
        return None


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_worker_of_is_where_bytewax_moves_a_keyed_item(workers):
    keys = [f"k{i}" for i in range(40)] + [owner_key(workers), "ünïcode-key"]
    flow = Dataflow("routing")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    landing = _Landing()
    op.output("out", op.stateful_batch("moved", keyed, lambda _s: _Stateful()), landing)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    where = {key: worker for worker, (key, _value) in landing.seen}
    assert len(where) == len(keys)
    assert {k: worker_of(k, workers) for k in keys} == where
    assert where[owner_key(workers)] == 0
    assert len(set(where.values())) == workers  # the keys did spread: the check can fail


def test_to_owner_moves_every_record_to_worker_0_in_read_order():
    items = list(range(500))
    flow = Dataflow("move")
    moved = to_owner("to_owner", op.input("in", flow, TestingSource(items, batch_size=7)), owner_key(3), state=None)
    landing = _Landing()
    op.output("out", moved, landing)
    cluster_main(flow, [], 0, worker_count_per_proc=3)
    assert {worker for worker, _ in landing.seen} == {0}
    assert [item for _, item in landing.seen] == items


def test_records_moved_to_a_process_without_the_store_stop_the_flow():
    flow = Dataflow("elsewhere")
    moved = to_owner("to_owner", op.input("in", flow, TestingSource([1, 2])), owner_key(1),
                     state=Elsewhere(1, experiments=None))
    op.output("out", moved, _Landing())
    with pytest.raises(ClusterError, match="only process 0 holds the state store"):
        cluster_main(flow, [], 0)
