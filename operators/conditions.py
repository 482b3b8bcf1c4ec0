"""One condition of the segment language on its own, for rules outside a segments file
(content targeting and hard constraints). ``segment("id")`` reads the profile's current
membership instead of evaluating another definition.

>>> from operators.profile import Profile
>>> cond = compile_condition('orders == 0 or segment("vip")')
>>> cond.evaluate(Profile("anon"), 0), cond.evaluate(Profile("u", orders=3), 0)
(True, False)
>>> cond.evaluate(Profile("u", orders=3, segments={"vip": [1, "v1"]}), 0)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import yaml

from operators import segment_parser as sp
from operators.segment_parser import ExprError
from operators.segments import SegmentError, _Compiler, _Loader


class _AnyId(tuple):
    """Known segment ids when the caller does not check them: every id is known."""

    def __contains__(self, item: object) -> bool:
        return True


class _Held(dict):
    """The memberships ``segment("id")`` reads: absent means not a member."""

    def __missing__(self, key: str) -> bool:
        return False


@dataclass(frozen=True)
class Condition:
    text: str
    fn: Callable[[Any, int, dict], bool]
    requirements: tuple  # (SeriesSpec, window or None, distinct attr or None): counters it reads

    def evaluate(self, profile, now_ms: int) -> bool:
        return bool(self.fn(profile, now_ms, _Held({s: True for s in profile.segments})))


def compile_condition(text: str, *, filename: str = "<condition>", document: str | None = None,
                      node: yaml.ScalarNode | None = None, known_segments=None) -> Condition:
    """Compile ``text``; errors are ``SegmentError`` with the position in ``document``
    (the YAML text ``node`` comes from) when given, else within ``text``."""
    known = _AnyId() if known_segments is None else tuple(known_segments)
    try:
        comp = _Compiler(text, known)
        comp.known_ids = known  # _AnyId must stay itself (the constructor makes a tuple)
        fn = comp.condition(sp.parse(text))
    except ExprError as exc:
        if node is not None and document is not None:
            line, col = _Loader(document, filename).position(node, exc.offset)
        elif node is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1 + exc.offset
        else:
            line, col = 1, exc.offset + 1
        raise SegmentError(filename, None, line, col, exc.message) from None
    return Condition(text, fn, tuple(comp.requirements))
