"""Reading an experiment's per-variant daily totals from the store (``x`` keys)."""

from __future__ import annotations

import orjson

from operators.attribution import Totals
from state.store import parse_experiment_key


def daily_totals(reader, experiment_id: str) -> dict[tuple[str, int], Totals]:
    """(variant id, UTC day) -> that day's change of the variant's totals."""
    prefix = b"x" + experiment_id.encode("utf-8") + b"\x00"
    out: dict[tuple[str, int], Totals] = {}
    for key, value in reader.scan(prefix):
        _exp, variant, day = parse_experiment_key(key)
        out[(variant, day)] = Totals.from_record(orjson.loads(value))
    return out
