"""More than one `pulse run` process (Bytewax ``-i/-a``): every process reads its share of
the Kafka partitions, and the records are moved to the first worker of process 0, which
alone holds the store and runs the profile step.

Profiles cannot be split by key across processes: identity stitching moves one key's state
into another's, and the profile step must see records in the order they were read (see the
README, "Where the code departs from ARCHITECTURE.md"). So the extra processes share the
Kafka consumption and nothing else, and every process builds the same dataflow.

Bytewax sends a keyed stream's items to worker ``siphash13(key + 0xff) % worker_count``
(Rust's ``DefaultHasher`` over a ``String``; checked against Bytewax by a test), so the
routing key is chosen to land on worker 0, and the step that receives the records refuses
to run in a process without the store rather than process them somewhere else.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

from flows import metrics as m

_MASK = (1 << 64) - 1


class ClusterError(RuntimeError):
    """The profile step was routed to a process that does not hold the store."""


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _MASK
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _MASK
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _MASK
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with the zero key (what Rust's ``DefaultHasher::new()`` computes)."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    tail = len(data) - len(data) % 8
    for i in range(0, tail, 8):
        word = int.from_bytes(data[i:i + 8], "little")
        v3 ^= word
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= word
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[tail:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, worker_count: int) -> int:
    """The worker Bytewax moves a keyed item with ``key`` to."""
    return siphash13(key.encode("utf-8") + b"\xff") % worker_count


def owner_key(worker_count: int) -> str:
    """A routing key that lands on worker 0 (the first worker of process 0)."""
    i = 0
    while worker_of(f"profiles-{i}", worker_count) != 0:
        i += 1
    return f"profiles-{i}"


class Elsewhere:
    """What a process other than process 0 passes as the flow's state: it builds the same
    dataflow but never runs the steps after the move to the owner."""

    def __init__(self, process_id: int, experiments: Any) -> None:
        self.process_id = process_id
        self.experiments = experiments  # decides whether the flow has an exposures input


class _Pass(op.StatefulBatchLogic):
    """Hands the records on, unchanged, on the worker they were moved to."""

    def on_batch(self, values: list) -> tuple[list, bool]:
        return values, False

    def snapshot(self) -> None:
        return None  # the profiles' state is in the store, not in Bytewax


def to_owner(step_id: str, up: Stream, key: str, state: Any) -> Stream:
    """``up``'s items, moved to the worker that ``key`` routes to, in the order each
    sending worker read them. The receiving process must hold the processor's state."""

    def build(_resume: None) -> _Pass:
        if isinstance(state, Elsewhere):
            raise ClusterError(
                f"Bytewax moved the profile step's records to process {state.process_id}, but only "
                "process 0 holds the state store: this Bytewax version routes keys differently "
                "from the one Pulse was built for (see flows/cluster.py)")
        return _Pass()

    moved = m.RECORDS_MOVED.labels(step_id.removesuffix("_to_owner"))

    def route(_item: Any) -> str:
        moved.inc()
        return key

    keyed = op.key_on(f"{step_id}_key", up, route)
    return op.key_rm(f"{step_id}_unkey", op.stateful_batch(step_id, keyed, build))
