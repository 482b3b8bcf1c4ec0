"""Compiling one segment condition: the language's names and types, the type checks
behind its load errors, and the functions a compiled condition calls on ``Facts``.

The language itself (grammar, functions, null rules) is described in ``operators.segments``;
``SegmentSet`` there compiles every condition of a file with ``_Compiler``.
"""

from __future__ import annotations

import difflib
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from operators import segment_parser as sp
from operators.events import EVENT_TYPES
from operators.features import MAX_WINDOW_MS, SeriesSpec, WindowedCounters, read_key, resolution_ms
from operators.segment_parser import ExprError

NUM, STR, BOOL, DUR, SINCE, ANY = "number", "string", "bool", "duration", "since", "value"
ATTRIBUTES = {
    "orders": NUM, "total_spend": NUM, "aov": NUM, "cart_items": NUM, "cart_value": NUM, "events": NUM,
    "lat": NUM, "lon": NUM, "country": STR, "city": STR, "device": STR, "channel": STR, "urban": BOOL,
}
FUNCTIONS = ("count", "sum", "distinct", "since", "inactive", "within_km", "segment", "score", "trait")
SCORES = ("propensity", "churn")
SERIES_TYPES = (*EVENT_TYPES, "any")
# keyword -> (SeriesSpec field, value kind)
FILTERS = {"category": ("category", "str"), "brand": ("brand", "str"), "item": ("item_id", "str"),
           "channel": ("channel", "str"), "device": ("device", "str"),
           "min_price": ("min_price", "num"), "max_price": ("max_price", "num")}
DISTINCT_ATTRS = ("item_id", "category", "brand")
EARTH_RADIUS_KM = 6371.0088
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_TYPE_WORDS = {NUM: "a number", STR: "a string", BOOL: "true/false", DUR: "a duration", SINCE: "since(..)",
               ANY: "a trait value"}

Fn = Callable[[Any, int, dict], Any]  # (facts, now_ms, memo) -> value


class Facts(Protocol):
    """What conditions read; ``operators.profile.Profile`` implements it."""

    counters: WindowedCounters

    def attribute(self, name: str) -> float | str | bool | None: ...
    def trait(self, name: str) -> str | float | bool | None: ...
    def score(self, name: str) -> float | None: ...
    def location(self) -> tuple[float, float] | None: ...


class DictFacts:
    """Facts from plain dicts (tests, examples, the CLI's what-if)."""

    def __init__(self, attributes: dict | None = None, traits: dict | None = None, scores: dict | None = None,
                 location: tuple[float, float] | None = None, counters: WindowedCounters | None = None) -> None:
        self.attributes, self.traits, self.scores = attributes or {}, traits or {}, scores or {}
        self._location = location
        self.counters = WindowedCounters() if counters is None else counters

    def attribute(self, name: str) -> float | str | bool | None:
        return self.attributes.get(name)

    def trait(self, name: str) -> str | float | bool | None:
        return self.traits.get(name)

    def score(self, name: str) -> float | None:
        return self.scores.get(name)

    def location(self) -> tuple[float, float] | None:
        return self._location


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# -- compiling one condition ---------------------------------------------------------------
@dataclass(slots=True)
class _Expr:
    type: str
    fn: Fn
    nullable: bool = True
    const: Any = None
    is_const: bool = False
    window: tuple[str, str, int] | None = None  # a count()/sum() read: (name, series key, window)


def _const(value: Any, type_: str) -> _Expr:
    return _Expr(type_, lambda f, n, m: value, value is None, value, True)


def _kind(v: Any) -> str | None:
    if v is None:
        return None
    if v is True or v is False:
        return BOOL
    return NUM if isinstance(v, (int, float)) else STR if isinstance(v, str) else None


class _Compiler:
    """Type-checks one condition and turns it into closures ``fn(facts, now, memo)``."""

    def __init__(self, text: str, known_ids: Iterable[str]) -> None:
        self.text = text
        self.known_ids = tuple(known_ids)
        self.requirements: list[tuple[SeriesSpec, int | None, str | None]] = []
        self.windows: list[tuple[str, int]] = []  # (series key, window) whose value time changes
        # count()/sum() compared with a number: (name, series key, window, op, number). Time
        # changes such a comparison only when the value crosses the number, not at every
        # bucket leaving the window (``WindowedCounters.flip_at``).
        self.thresholds: list[tuple[str, str, int, str, float]] = []
        self.sinces: list[tuple[str, int]] = []  # (series key, offset after last when it may flip)
        self.deps: dict[str, int] = {}  # segment id -> offset of its segment() call
        self.terms: dict[str, Fn] = {}  # source text -> value closure, in source order
        # What the value reads, so an event re-evaluates only conditions whose inputs it
        # changed: "k:<series key>" for a series' buckets (count, sum, distinct), "s:<series
        # key>" for its last time (since, inactive), attribute names, "trait", "location",
        # "score".
        self.touches: set[str] = set()

    def src(self, node: sp.Node) -> str:
        return self.text[node.pos:node.end]

    def condition(self, node: sp.Node) -> Fn:
        expr = self.expr(node)
        if expr.type not in (BOOL, ANY):
            raise self.not_bool(node, expr, "a condition")
        return self.truth(expr)

    def not_bool(self, node: sp.Node, expr: _Expr, what: str) -> ExprError:
        if expr.type == SINCE:
            return self.since_alone(node)
        hint = ": compare it, e.g. count(purchase, 30d) >= 1" if expr.type == NUM else ""
        return ExprError(node.pos, f"type mismatch: {what} must be true/false, got {_TYPE_WORDS[expr.type]} "
                                   f"({self.src(node)}){hint}")

    def since_alone(self, node: sp.Node) -> ExprError:
        return ExprError(node.pos, f"{self.src(node)} must be compared directly with a duration literal, "
                                   "e.g. since(purchase) >= 14d")

    @staticmethod
    def truth(expr: _Expr) -> Fn:
        """A closure returning exactly True/False (null and non-bool values are false)."""
        g = expr.fn
        if expr.type == BOOL and not expr.nullable:
            return g
        return lambda f, n, m: g(f, n, m) is True

    def expr(self, node: sp.Node) -> _Expr:
        method = getattr(self, "x_" + type(node).__name__.lower())
        return method(node)

    def x_lit(self, node: sp.Lit) -> _Expr:
        return _const(node.value, {"num": NUM, "str": STR, "bool": BOOL, "dur": DUR}[node.kind])

    def x_name(self, node: sp.Name) -> _Expr:
        name = node.name
        type_ = ATTRIBUTES.get(name)
        if type_ is None:
            if name in SERIES_TYPES:
                raise ExprError(node.pos, f"{name!r} is an event type: use it in a function, e.g. count({name}, 30d)")
            if name in FUNCTIONS:
                raise ExprError(node.pos, f"{name!r} is a function: call it, e.g. {name}(...)")
            raise ExprError(node.pos, f"unknown attribute {name!r}{_suggest(name, ATTRIBUTES)}")
        mk = "@" + name
        self.touches.add(name)

        def fn(f, n, m):  # read once per evaluation: some attributes are computed (cart_value)
            v = m.get(mk, m)
            if v is m:
                v = m[mk] = f.attribute(name)
            return v
        self.terms.setdefault(name, fn)
        return _Expr(type_, fn)

    def x_neg(self, node: sp.Neg) -> _Expr:
        g = self.number(node.operand, "'-'")
        return _Expr(NUM, lambda f, n, m: None if (v := g(f, n, m)) is None else -v)

    def number(self, node: sp.Node, what: str) -> Fn:
        expr = self.expr(node)
        if expr.type == SINCE:
            raise self.since_alone(node)
        if expr.type not in (NUM, ANY):
            raise ExprError(node.pos, f"type mismatch: {what} needs numbers, got {_TYPE_WORDS[expr.type]} "
                                      f"({self.src(node)})")
        if expr.type == ANY:
            g = expr.fn
            return lambda f, n, m: v if _kind(v := g(f, n, m)) == NUM else None
        return expr.fn

    def x_arith(self, node: sp.Arith) -> _Expr:
        a = self.number(node.left, f"{node.op!r}")
        b = self.number(node.right, f"{node.op!r}")
        if node.op == "/":
            def fn(f, n, m):
                x, y = a(f, n, m), b(f, n, m)
                return None if x is None or not y else x / y
        else:
            op = _ARITH[node.op]

            def fn(f, n, m):
                x, y = a(f, n, m), b(f, n, m)
                return None if x is None or y is None else op(x, y)
        return _Expr(NUM, fn)

    def boolean(self, node: sp.Node, what: str) -> _Expr:
        expr = self.expr(node)
        if expr.type not in (BOOL, ANY):
            raise self.not_bool(node, expr, what)
        return expr

    def x_not(self, node: sp.Not) -> _Expr:
        expr = self.boolean(node.operand, "the operand of 'not'")
        g = expr.fn
        if expr.type == BOOL and not expr.nullable:
            return _Expr(BOOL, lambda f, n, m: not g(f, n, m), False)
        return _Expr(BOOL, lambda f, n, m: g(f, n, m) is False, False)

    def x_bool(self, node: sp.Bool) -> _Expr:
        """A chain ``a and b and ..`` (or ``or``): operands are true/false with no side
        effects, so they run cheapest first (attributes before counter reads)."""
        parts, todo = [], [node]
        while todo:  # flatten the chain, keeping source order (explain lists terms in it)
            n = todo.pop()
            if isinstance(n, sp.Bool) and n.op == node.op:
                todo += (n.right, n.left)
            else:
                parts.append(n)
        what = f"both sides of {node.op!r}"
        fns = [self.truth(self.boolean(p, what)) for p in parts]
        fns = [fn for _, _, fn in sorted(zip(map(_cost, parts), range(len(fns)), fns))]
        if len(fns) == 2:
            a, b = fns
            if node.op == "and":
                return _Expr(BOOL, lambda f, n, m: a(f, n, m) and b(f, n, m), False)
            return _Expr(BOOL, lambda f, n, m: a(f, n, m) or b(f, n, m), False)
        chain = tuple(fns)
        if node.op == "and":
            def all_of(f, n, m):
                for g in chain:
                    if not g(f, n, m):
                        return False
                return True
            return _Expr(BOOL, all_of, False)

        def any_of(f, n, m):
            for g in chain:
                if g(f, n, m):
                    return True
            return False
        return _Expr(BOOL, any_of, False)

    def x_compare(self, node: sp.Compare) -> _Expr:
        left, right = self.expr(node.left), self.expr(node.right)
        op = node.op
        if SINCE in (left.type, right.type):
            return self.since_compare(node, left, right)
        lt, rt = left.type, right.type
        if DUR in (lt, rt):
            raise ExprError(node.op_pos, f"type mismatch: cannot compare {_TYPE_WORDS[lt]} with {_TYPE_WORDS[rt]} "
                                         "(durations are windows or compared with since(..))")
        if lt != rt and ANY not in (lt, rt):
            raise ExprError(node.op_pos, f"type mismatch: cannot compare {_TYPE_WORDS[lt]} with {_TYPE_WORDS[rt]} "
                                         f"({self.src(node)})")
        if BOOL in (lt, rt) and op not in ("==", "!="):
            raise ExprError(node.op_pos, f"type mismatch: {op!r} cannot order true/false values")
        if left.is_const and not right.is_const:
            left, right, op = right, left, _FLIP[op]
        if left.window is not None and right.is_const and right.type == NUM and _kind(right.const) == NUM:
            name, key, w = left.window
            self.windows.remove((key, w))  # the one its call added: the threshold replaces it
            self.thresholds.append((name, key, w, op, right.const))
        return _Expr(BOOL, _comparison(left, right, _OPS[op]), False)

    def since_compare(self, node: sp.Compare, left: _Expr, right: _Expr) -> _Expr:
        op, since_node, other_node = node.op, node.left, node.right
        if right.type == SINCE:
            left, right, op, since_node, other_node = right, left, _FLIP[op], node.right, node.left
        if right.type == SINCE:
            raise ExprError(node.op_pos, "type mismatch: compare since(..) with a duration literal, not with since(..)")
        if not isinstance(since_node, sp.Call):
            raise self.since_alone(since_node)
        if right.type != DUR:
            raise ExprError(other_node.pos, f"type mismatch: {self.src(since_node)} is a duration: compare it with a "
                                            f"duration literal such as 14d, not {_TYPE_WORDS[right.type]}")
        key = left.const  # since() carries its series key as its const
        return _Expr(BOOL, self.since_fn(key, op, right.const), False)

    def since_fn(self, key: str, op: str, d: int) -> Fn:
        offsets = {">=": (d,), "<": (d,), ">": (d + 1,), "<=": (d + 1,)}.get(op, (d, d + 1))
        self.sinces.extend((key, off) for off in offsets)
        cmp, never = _OPS[op], op in (">", ">=")

        def fn(f, n, m):
            last = f.counters.last(key)
            return never if last is None else cmp(n - last, d)
        return fn

    def x_in(self, node: sp.In) -> _Expr:
        left = self.expr(node.left)
        kinds = {it.kind for it in node.items}
        want = {NUM: "num", STR: "str", BOOL: "bool"}.get(left.type)
        if left.type == SINCE:
            raise self.since_alone(node.left)
        if len(kinds) > 1 or "dur" in kinds:
            raise ExprError(node.op_pos, "the list after 'in' must hold numbers, strings or true/false, not a mix")
        if left.type != ANY and kinds != {want}:
            plural = {"num": "numbers", "str": "strings", "bool": "true/false values"}[next(iter(kinds))]
            raise ExprError(node.op_pos, f"type mismatch: {_TYPE_WORDS[left.type]} ({self.src(node.left)}) "
                                         f"cannot be in a list of {plural}")
        values = frozenset(it.value for it in node.items)
        list_kind = _type_of(next(iter(kinds)))
        g, negate = left.fn, node.negate
        if left.type == ANY:
            return _Expr(BOOL, lambda f, n, m: _kind(v := g(f, n, m)) == list_kind and (v in values) != negate, False)
        if negate:
            return _Expr(BOOL, lambda f, n, m: (v := g(f, n, m)) is not None and v not in values, False)
        return _Expr(BOOL, lambda f, n, m: g(f, n, m) in values, False)

    # -- functions -------------------------------------------------------------------------
    def x_call(self, node: sp.Call) -> _Expr:
        name = node.name
        if name not in FUNCTIONS:
            if name in ATTRIBUTES:
                raise ExprError(node.pos, f"{name!r} is an attribute, not a function: write {name} without ()")
            hint = _suggest(name, FUNCTIONS) or f"; functions: {', '.join(FUNCTIONS)}"
            raise ExprError(node.pos, f"unknown function {name!r}{hint}")
        expr = getattr(self, "f_" + name)(node)
        self.terms.setdefault(self.src(node), expr.fn)
        return expr

    def arity(self, node: sp.Call, n: int, usage: str) -> None:
        if node.kwargs:
            raise ExprError(node.kwargs[0].pos, f"{node.name}() takes no keyword arguments: {usage}")
        if len(node.args) != n:
            raise ExprError(node.pos, f"wrong number of arguments: {node.name}() takes {n}, got {len(node.args)}: "
                                      f"{usage}")

    def series(self, node: sp.Call, type_arg: sp.Node) -> SeriesSpec:
        if not isinstance(type_arg, sp.Name):
            raise ExprError(type_arg.pos, f"{node.name}() needs an event type name first, "
                                          f"e.g. {node.name}(purchase, ...), got {self.src(type_arg)}")
        etype = type_arg.name
        if etype not in SERIES_TYPES:
            hint = _suggest(etype, SERIES_TYPES) or f": one of {', '.join(SERIES_TYPES)}"
            raise ExprError(type_arg.pos, f"unknown event type {etype!r}{hint}")
        fields: dict[str, Any] = {}
        for kw in node.kwargs:
            if kw.name not in FILTERS:
                hint = _suggest(kw.name, FILTERS) or f"; filters: {', '.join(FILTERS)}"
                raise ExprError(kw.pos, f"unknown filter {kw.name!r} for {node.name}(){hint}")
            field_name, kind = FILTERS[kw.name]
            if field_name in fields:
                raise ExprError(kw.pos, f"filter {kw.name!r} given twice")
            v = kw.value
            if not isinstance(v, sp.Lit) or v.kind != kind:
                example = '"outdoor/tents"' if kind == "str" else "100"
                raise ExprError(v.pos, f"filter {kw.name}= needs a {'string' if kind == 'str' else 'number'} "
                                       f"literal, e.g. {kw.name}={example}")
            if kind == "num" and v.value < 0:
                raise ExprError(v.pos, f"filter {kw.name}= must not be negative")
            fields[field_name] = v.value
        try:
            spec = SeriesSpec(etype, **fields)
            # since() reads only the series' last time ("s:"), the others its buckets ("k:").
            self.touches.add(("s:" if node.name == "since" else "k:") + spec.key)
            return spec
        except ValueError as exc:
            raise ExprError(node.kwargs[-1].pos if node.kwargs else node.pos, str(exc)) from None

    def window(self, node: sp.Node) -> int:
        if not (isinstance(node, sp.Lit) and node.kind == "dur"):
            raise ExprError(node.pos, f"a window must be a duration literal such as 30d, got {self.src(node)}")
        w = node.value
        if w > MAX_WINDOW_MS:
            raise ExprError(node.pos, f"window {self.src(node)} is unbounded: it exceeds the 90d limit")
        try:
            resolution_ms(w)
        except ValueError:
            raise ExprError(node.pos, f"window {self.src(node)} is shorter than 1s") from None
        return w

    def windowed(self, node: sp.Call, n: int, usage: str) -> tuple[SeriesSpec, int, sp.Node | None]:
        args = node.args
        if len(args) == n - 1 and not (n == 3 and isinstance(args[-1], sp.Lit) and args[-1].kind == "dur"):
            raise ExprError(node.pos, f"unbounded window: {node.name}() needs a window, e.g. {usage}")
        if len(args) != n:
            raise ExprError(node.pos, f"wrong number of arguments: {node.name}() takes {n} plus filters, "
                                      f"got {len(args)}: e.g. {usage}")
        spec = self.series(node, args[0])
        w = self.window(args[-1])
        return spec, w, args[1] if n == 3 else None

    def f_count(self, node: sp.Call) -> _Expr:
        spec, w, _ = self.windowed(node, 2, f"{node.name}(purchase, 30d)")
        self.requirements.append((spec, w, None))
        self.windows.append((spec.key, w))
        bkey, mk = read_key(spec.key, w), f"#{node.name}|{spec.key}|{w}"

        def count(f, n, m):
            v = m.get(mk)
            if v is None:
                v = m[mk] = f.counters.count_at(bkey, w, n)
            return v

        def total(f, n, m):
            v = m.get(mk)
            if v is None:
                v = m[mk] = f.counters.total_at(bkey, w, n)
            return v
        return _Expr(NUM, count if node.name == "count" else total, False, window=(node.name, spec.key, w))

    f_sum = f_count

    def f_distinct(self, node: sp.Call) -> _Expr:
        spec, w, attr_node = self.windowed(node, 3, "distinct(product_view, category, 30d)")
        attr = attr_node.name if isinstance(attr_node, sp.Name) else None
        if attr not in DISTINCT_ATTRS:
            raise ExprError(attr_node.pos, f"distinct() counts one of {', '.join(DISTINCT_ATTRS)}, "
                                           f"got {self.src(attr_node)}{_suggest(self.src(attr_node), DISTINCT_ATTRS)}")
        self.requirements.append((spec, w, attr))
        self.windows.append((spec.key, w))
        dkey, mk = (*read_key(spec.key, w), attr), f"#distinct|{spec.key}|{attr}|{w}"

        def fn(f, n, m):
            v = m.get(mk)
            if v is None:
                v = m[mk] = f.counters.distinct_at(dkey, w, n)
            return v
        return _Expr(NUM, fn, False)

    def f_since(self, node: sp.Call) -> _Expr:
        if len(node.args) != 1:
            raise ExprError(node.pos, f"wrong number of arguments: since() takes 1 plus filters, got {len(node.args)}:"
                                      " e.g. since(purchase) >= 14d")
        spec = self.series(node, node.args[0])
        self.requirements.append((spec, None, None))
        key = spec.key

        def fn(f, n, m):
            last = f.counters.last(key)
            return None if last is None else n - last
        return _Expr(SINCE, fn, True, key)

    def f_inactive(self, node: sp.Call) -> _Expr:
        self.arity(node, 1, "inactive(14d)")
        arg = node.args[0]
        if not (isinstance(arg, sp.Lit) and arg.kind == "dur"):
            raise ExprError(arg.pos, f"inactive() needs a duration literal such as 14d, got {self.src(arg)}")
        spec = SeriesSpec("any")
        self.touches.add("s:" + spec.key)
        self.requirements.append((spec, None, None))
        return _Expr(BOOL, self.since_fn(spec.key, ">=", arg.value), False)

    def f_within_km(self, node: sp.Call) -> _Expr:
        self.touches.add("location")
        self.arity(node, 3, "within_km(40.71, -74.0, 10)")
        vals = []
        bounds = (("latitude", -90, 90), ("longitude", -180, 180), ("distance", 0, 20_100))
        for arg, (what, lo, hi) in zip(node.args, bounds):
            if not (isinstance(arg, sp.Lit) and arg.kind == "num") or not lo <= arg.value <= hi:
                raise ExprError(arg.pos, f"within_km() needs a {what} number in [{lo}, {hi}], got {self.src(arg)}")
            vals.append(float(arg.value))
        lat0, lon0 = math.radians(vals[0]), math.radians(vals[1])
        cos0 = math.cos(lat0)
        # haversine: d <= km  <=>  a <= sin^2(km / 2R)
        limit = math.sin(min(vals[2] / (2 * EARTH_RADIUS_KM), math.pi / 2)) ** 2
        sin, cos, rad = math.sin, math.cos, math.radians

        def fn(f, n, m):
            loc = f.location()
            if loc is None:
                return False
            lat = rad(loc[0])
            a = sin((lat - lat0) / 2) ** 2 + cos0 * cos(lat) * sin((rad(loc[1]) - lon0) / 2) ** 2
            return a <= limit
        return _Expr(BOOL, fn, False)

    def name_arg(self, node: sp.Call, usage: str) -> str:
        self.arity(node, 1, usage)
        arg = node.args[0]
        if not (isinstance(arg, sp.Lit) and arg.kind == "str"):
            raise ExprError(arg.pos, f"{node.name}() needs a quoted name, e.g. {usage}, got {self.src(arg)}")
        return arg.value

    def f_segment(self, node: sp.Call) -> _Expr:
        sid = self.name_arg(node, 'segment("vip")')
        if sid not in self.known_ids:
            hint = _suggest(sid, self.known_ids) or " in this file"
            raise ExprError(node.args[0].pos, f"segment() refers to an unknown segment {sid!r}{hint}")
        self.deps.setdefault(sid, node.pos)
        return _Expr(BOOL, lambda f, n, m: m[sid], False)

    def f_score(self, node: sp.Call) -> _Expr:
        self.touches.add("score")
        name = self.name_arg(node, 'score("propensity")')
        if name not in SCORES:
            raise ExprError(node.args[0].pos, f"unknown score {name!r}{_suggest(name, SCORES)}; "
                                              f"scores: {', '.join(SCORES)}")
        return _Expr(NUM, lambda f, n, m: f.score(name))

    def f_trait(self, node: sp.Call) -> _Expr:
        self.touches.add("trait")
        name = self.name_arg(node, 'trait("age_band")')
        if not name.isidentifier():
            raise ExprError(node.args[0].pos, f"trait name {name!r} must be an identifier")
        return _Expr(ANY, lambda f, n, m: f.trait(name))


_CALL_COSTS = {"count": 20, "sum": 20, "distinct": 25, "since": 3, "inactive": 3, "within_km": 2}
# Attributes computed from a log on each read (``Profile.cart`` walks every cart line's
# operations): on a busy profile they cost more than a counter read, so they go last.
_NAME_COSTS = {"cart_items": 30, "cart_value": 30, "events": 2}


def _cost(node: sp.Node) -> int:
    """A rough cost of evaluating ``node``: counter reads dominate."""
    if isinstance(node, sp.Lit):
        return 0
    if isinstance(node, sp.Call):
        return _CALL_COSTS.get(node.name, 1)
    if isinstance(node, sp.Name):
        return _NAME_COSTS.get(node.name, 1)
    if isinstance(node, (sp.Not, sp.Neg)):
        return _cost(node.operand)
    if isinstance(node, sp.In):
        return _cost(node.left)
    return _cost(node.left) + _cost(node.right)


def _type_of(kind: str) -> str:
    return {"num": NUM, "str": STR, "bool": BOOL, "dur": DUR}[kind]


def _comparison(left: _Expr, right: _Expr, op: Callable[[Any, Any], bool]) -> Fn:
    """``left op right`` as a closure: false when a side is null or kinds differ."""
    g = left.fn
    if right.is_const:
        c = right.const
        if left.type == ANY:
            ck = _kind(c)
            return lambda f, n, m: _kind(v := g(f, n, m)) == ck and op(v, c)
        if left.nullable:
            return lambda f, n, m: (v := g(f, n, m)) is not None and op(v, c)
        return lambda f, n, m: op(g(f, n, m), c)
    h = right.fn
    if ANY in (left.type, right.type):
        def fn(f, n, m):
            a, b = g(f, n, m), h(f, n, m)
            return a is not None and _kind(a) == _kind(b) and op(a, b)
        return fn

    def fn2(f, n, m):
        a, b = g(f, n, m), h(f, n, m)
        return a is not None and b is not None and op(a, b)
    return fn2
