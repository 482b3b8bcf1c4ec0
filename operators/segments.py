"""Segments: named true/false conditions over a profile's facts, loaded from YAML.

File format::

    segments:
      - id: cart_abandoner            # [a-z][a-z0-9_]{0,63}, unique in the file
        description: Added to cart in the last 10 minutes and has not purchased
        condition: count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0
        marketing: true               # optional, default true

``marketing: true`` segments need the profile's personalization consent (the caller
checks it). Only the key ``segments`` is allowed at the top, and only ``id``,
``description``, ``condition`` and ``marketing`` in an entry.

Conditions (full EBNF in ``operators.segment_parser``): ``or``, ``and``, ``not``,
parentheses, comparisons ``== != < <= > >=``, ``x in [..]`` / ``x not in [..]``, ``+ - * /``
on numbers; literals: numbers, strings ('..' or ".."), ``true``/``false`` and durations
(``30s 10m 2h 7d 1w``: a type of its own, in ms). Comparisons cannot be chained.

Functions (TYPE is an event type of ``operators.events.EVENT_TYPES`` or ``any``; WINDOW a
duration literal in [1s, 90d]; filters are keyword arguments ``category="outdoor"``
(that category or a sub-category such as ``outdoor/tents``), ``brand="..."``, ``item="sku"``,
``channel="app"``, ``device="mobile"``, ``min_price=100``, ``max_price=500``):

==============================  =========  ==========================================
``count(TYPE, WINDOW, ..)``     number     matching events in the window
``sum(TYPE, WINDOW, ..)``       number     sum of price * quantity of matching lines
``distinct(TYPE, A, WINDOW,..)``number     distinct A (``item_id|category|brand``)
``since(TYPE, ..)``             duration   time since the last matching event; only as
                                           ``since(..) CMP <duration literal>``
``inactive(D)``                 bool       sugar for ``since(any) >= D``
``within_km(LAT, LON, KM)``     bool       latest location within KM (haversine, R =
                                           6371.0088 km); false if unknown
``segment("id")``               bool       another segment of the file (evaluated first)
``score("propensity")``         number     a model score (``propensity``, ``churn``) or null
``trait("age_band")``           value      an identify trait (string/number/bool) or null
==============================  =========  ==========================================

Windows follow ``operators.features``: exact to the second up to 1 h, to the minute up to
60 h, to the hour beyond. Attributes (bare names, all may be null): numbers ``orders``,
``total_spend``, ``aov`` (null without orders), ``cart_items``, ``cart_value`` (each line's
quantity × price in millionths, summed, then rounded to cents: the same in any order),
``events``, ``lat``, ``lon``; strings ``country``, ``city``, ``device``, ``channel``; bool
``urban``.

Null: a comparison (or ``in``) involving null is false, arithmetic with null (or a
division by zero) gives null, ``and``/``or`` treat null as false, and ``not null`` is
false too, so an unknown ``urban`` satisfies neither ``urban`` nor ``not urban``. A
profile that never had a matching event makes ``since(..) > D`` and ``since(..) >= D``
true and every other comparison of it false. Values of ``trait()`` compare only with
values of the same kind (``trait("vip") == 1`` is false for ``true``).

>>> from operators.events import parse_event
>>> segs = parse_segments('''
... segments:
...   - id: cart_abandoner
...     condition: count(add_to_cart, 10m) >= 1 and count(purchase, 10m) == 0
...   - id: big_spender
...     condition: sum(purchase, 30d) > 100 or distinct(product_view, category, 7d) >= 3
...   - id: lapsed
...     condition: since(purchase, category="outdoor") >= 14d or inactive(30d)
...   - id: local_fan
...     condition: within_km(52.52, 13.405, 10) and trait("age_band") in ["25-34", "35-44"]
...   - id: keen
...     condition: segment("local_fan") and (score("propensity") > 0.7 or orders * 2 >= 4)
...     marketing: false
... ''')
>>> [s.id for s in segs.segments], segs.by_id["keen"].depends_on, len(segs.by_id["keen"].version)
(['cart_abandoner', 'big_spender', 'lapsed', 'local_fan', 'keen'], ('local_fan',), 12)
>>> t0 = 1795773600000
>>> facts = DictFacts({"orders": 2}, traits={"age_band": "25-34"}, location=(52.5, 13.4))
>>> facts.counters.observe(parse_event(b'{"event_id":"e1","type":"add_to_cart","user_id":"u",'
...     b'"timestamp":1795773600000,"item_id":"outdoor/tents:001","price":120}'), segs.plan)
True
>>> segs.evaluate(facts, t0 + 1000)
{'cart_abandoner': True, 'big_spender': False, 'lapsed': True, 'local_fan': True, 'keen': True}
>>> segs.next_change(facts, t0 + 1000)      # the add_to_cart leaves the 10 min window
1795774200000
>>> segs.explain("lapsed", facts, t0 + 1000)
[('since(purchase, category="outdoor")', None), ('inactive(30d)', False), ('result', True)]
>>> segs.values("keen", facts, t0)
{'segment("local_fan")': True, 'score("propensity")': None, 'orders': 2}
>>> parse_segments("segments:\\n  - id: x\\n    condition: count(purchse, 7d) > 1", "f.yaml")
Traceback (most recent call last):
...
operators.segments.SegmentError: f.yaml:3:22: segment 'x': unknown event type 'purchse' (did you mean 'purchase'?)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from operators import segment_parser as sp
from operators.features import FeaturePlan, WindowedCounters, read_key
from operators.segment_compiler import DictFacts, Facts, Fn, _Compiler, _suggest
from operators.segment_parser import ExprError

__all__ = ["DictFacts", "Facts", "Segment", "SegmentError", "SegmentSet", "empty", "load_segments", "parse_segments"]
ID_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
ENTRY_KEYS = ("id", "description", "condition", "marketing")
_NEVER = 1 << 62  # a threshold instant that never comes (later than any event time)


class SegmentError(ValueError):
    """A problem in a segments file, with its position (1-based line and column)."""

    def __init__(self, file: str, segment_id: str | None, line: int, column: int, message: str) -> None:
        self.file, self.segment_id, self.line, self.column, self.message = file, segment_id, line, column, message
        where = "" if segment_id is None else f"segment {segment_id!r}: "
        super().__init__(f"{file}:{line}:{column}: {where}{message}")


@dataclass(frozen=True)
class Segment:
    id: str
    description: str
    condition: str
    version: str  # 12 hex chars of sha256 of the canonical condition and the marketing flag
    marketing: bool = True
    depends_on: tuple[str, ...] = ()


# -- the set --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Compiled:
    fn: Fn
    terms: tuple[tuple[str, Fn], ...]
    needs: tuple[tuple[str, Fn], ...]  # transitive dependencies (id, fn), in evaluation order


class SegmentSet:
    """Compiled segments in dependency order; evaluation reads ``Facts`` only."""

    def __init__(self, segments: Iterable[Segment], compiled: dict[str, tuple[Fn, dict[str, Fn]]],
                 requirements: Iterable, windows: Iterable[tuple[str, int]],
                 sinces: Iterable[tuple[str, int]], touches: dict[str, set[str]] | None = None,
                 thresholds: Iterable[tuple[str, str, int, str, float]] = ()) -> None:
        thresholds = tuple(dict.fromkeys(thresholds))
        self.segments: tuple[Segment, ...] = tuple(segments)
        self.by_id: dict[str, Segment] = {s.id: s for s in self.segments}
        self.plan = FeaturePlan(requirements)
        self._order = tuple((s.id, compiled[s.id][0]) for s in self.segments)
        self._compiled: dict[str, _Compiled] = {}
        needed: dict[str, set[str]] = {}
        for s in self.segments:
            needed[s.id] = set(s.depends_on).union(*(needed[d] for d in s.depends_on))
            needs = tuple((sid, fn) for sid, fn in self._order if sid in needed[s.id])
            self._compiled[s.id] = _Compiled(compiled[s.id][0], tuple(compiled[s.id][1].items()), needs)
        self._windows = tuple(dict.fromkeys(windows))
        reads: dict[tuple[str, int], list[int]] = {}
        for key, w in self._windows:
            reads.setdefault(read_key(key, w), []).append(w)
        self._reads = tuple((bkey, tuple(ws)) for bkey, ws in reads.items())
        every: dict[tuple[str, int], set[int]] = {}  # every window read, thresholds' too
        for key, w in (*self._windows, *((key, w) for _n, key, w, _o, _c in thresholds)):
            every.setdefault(read_key(key, w), set()).add(w)
        self._every_read = tuple((bkey, tuple(sorted(ws))) for bkey, ws in every.items())
        by_key: dict[str, list] = {}
        for bkey, ws in self._reads:
            by_key.setdefault(bkey[0], []).append((bkey, ws))
        self._reads_by_key = {key: tuple(rs) for key, rs in by_key.items()}
        # What ``next_change`` remembers on a profile's counters is marked as this set's.
        self._token = object()
        # (series key, is a sum, bucket key, window, operator, number), each read once.
        self._thresholds = tuple((key, name == "sum", read_key(key, w), w, op, c)
                                 for name, key, w, op, c in thresholds)
        by_key_th: dict[str, list[int]] = {}
        for i, th in enumerate(self._thresholds):
            by_key_th.setdefault(th[0], []).append(i)
        self._thresholds_by_key = {key: tuple(ix) for key, ix in by_key_th.items()}
        offsets: dict[str, set[int]] = {}
        for key, off in sinces:
            offsets.setdefault(key, set()).add(off)
        self._sinces = tuple((key, tuple(sorted(offs))) for key, offs in offsets.items())
        # A since() comparison changes only at its offsets after the last event: an event
        # moving the last time can change one only if the time since the previous one had
        # reached the smallest offset (``changed_inputs``).
        self.since_first_offset = {key: offs[0] for key, offs in self._sinces}
        # Input -> the segments reading it, and segment -> those depending on it, so that
        # an event re-evaluates only what its changes can reach.
        self._readers: dict[str, set[str]] = {}
        for sid, reads in (touches or {}).items():
            for token in reads:
                self._readers.setdefault(token, set()).add(sid)
        self._dependents: dict[str, set[str]] = {s.id: set() for s in self.segments}
        for seg in self.segments:
            for dep in needed[seg.id]:
                self._dependents[dep].add(seg.id)
        self._needed = needed
        self._known_tokens = touches is not None
        self._plans: dict[frozenset, tuple[tuple[str, Fn], ...]] = {}

    def changed_inputs(self, changed: Iterable[str], counters: WindowedCounters, now_ms: int) -> list[str]:
        """The inputs an event changed, for ``evaluate_changed``: ``changed`` (attribute
        names, ``"trait"``, ...), ``"k:<key>"`` for every series the event was counted in
        (``counters.touched``) and ``"s:<key>"`` for those whose since() comparisons it may
        change. Those read ``now - last`` against offsets d (``since(..) >= d`` flips at
        last + d): with the previous event less than the smallest offset before ``now``,
        every comparison of the series had the value it has with the time since this event
        (between 0 and that): nothing read from the series' last time changed. Only valid
        when no time change is due at or before ``now`` (``next_change``)."""
        out = list(changed)
        first = self.since_first_offset
        for key, old in zip(counters.touched, counters.touched_last):
            out.append("k:" + key)
            d = first.get(key)
            if d is not None and (old is None or now_ms - old >= d):
                out.append("s:" + key)
        return out

    def time_inputs(self, counters: WindowedCounters, at_ms: int) -> list[str]:
        """The inputs time changes at ``at_ms``, for ``evaluate_changed`` at a visit there:
        ``"k:<key>"`` where a bucket of the series leaves one of the windows read (a
        bucket ``b`` leaves window ``w`` at ``b + w``), ``"s:<key>"`` where a since()
        offset after its last event is ``at_ms``, and ``"score"`` (the models may have
        changed scores since the last evaluation). Only valid when ``at_ms`` is the
        profile's next change (``next_change``) and the memberships were evaluated at an
        earlier instant with nothing changed in between."""
        out = ["score"]
        out += ["k:" + key for key in counters.leaving(self._every_read, at_ms)]
        lasts = counters.lasts()
        for key, offsets in self._sinces:
            last = lasts.get(key)
            if last is not None and at_ms - last in offsets:
                out.append("s:" + key)
        return out

    def evaluate_changed(self, changed: Iterable[str], facts: Facts, now_ms: int,
                         memo: dict[str, Any] | None = None) -> dict[str, bool]:
        """Like ``evaluate`` for the segments whose inputs are in ``changed`` (a series'
        buckets as ``"k:<key>"``, its last time as ``"s:<key>"``, attribute names,
        ``"trait"``, ``"location"``, ``"score"``), those depending on them, and what they
        need; the others keep the value they had (only time changes them, through
        ``next_change``)."""
        if not self._known_tokens:
            return self.evaluate(facts, now_ms, memo)
        key = frozenset(changed)
        plan = self._plans.get(key)
        if plan is None:
            hit: set[str] = set()
            for token in key:
                hit |= self._readers.get(token, set())
            hit |= set().union(*(self._dependents[sid] for sid in hit)) if hit else set()
            wanted = hit.union(*(self._needed[sid] for sid in hit)) if hit else set()
            plan = tuple((sid, fn) for sid, fn in self._order if sid in wanted)
            if len(self._plans) < 4096:
                self._plans[key] = plan
        if memo is None:
            memo = {}
        out: dict[str, bool] = {}
        for sid, fn in plan:
            out[sid] = memo[sid] = fn(facts, now_ms, memo)
        return out

    def __len__(self) -> int:
        return len(self.segments)

    def __repr__(self) -> str:
        return f"SegmentSet({[s.id for s in self.segments]})"

    def evaluate(self, facts: Facts, now_ms: int, memo: dict[str, Any] | None = None) -> dict[str, bool]:
        """Every segment's membership at ``now_ms``. ``memo`` (an empty dict) receives the
        values read on the way; pass it to ``values`` for the same facts and instant so
        that the triggers' values are not read again."""
        if memo is None:
            memo = {}
        out: dict[str, bool] = {}
        for sid, fn in self._order:
            out[sid] = memo[sid] = fn(facts, now_ms, memo)
        return out

    def next_change(self, facts: Facts, now_ms: int) -> int | None:
        """The smallest instant > ``now_ms`` at which time alone may change a membership.

        Three parts. A count() or sum() compared with a number changes only when the
        value crosses it (``WindowedCounters.flip_at``), not at every bucket leaving the
        window (a busy profile's one-second buckets leave an hour's window every second;
        in a replay this halved the evaluations caused by time). Other windowed reads
        (distinct(), arithmetic, comparisons between two reads) change at every bucket
        leaving one of their windows. And since() comparisons flip at fixed offsets after
        the last event.

        Both windowed parts are remembered on the counters with the keys observed since.
        The next call at a later instant recomputes the window changes only for those keys
        while the remembered one is still ahead (a bucket added can only bring a window's
        next change closer, and the other series' windows change at none of the instants
        before it), and a threshold's instant for those keys and where it has passed (its
        value at any instant before it is the one it was computed from). The ``since``
        part moves later with every event: it is recomputed each time."""
        counters = facts.counters
        memo = counters.window_memo
        valid = memo is not None and memo[0] is self._token and memo[1] <= now_ms
        if valid and (memo[2] is None or memo[2] > now_ms):
            windows = memo[2]
            by_key = self._reads_by_key
            for key in counters.pending:
                reads = by_key.get(key)
                if reads is not None:
                    t = counters.next_change_min(reads, now_ms)
                    if t is not None and (windows is None or t < windows):
                        windows = t
        else:
            windows = counters.next_change_min(self._reads, now_ms)  # always > now_ms: b > now - w
        best = windows
        thresholds = self._thresholds
        first = _NEVER
        if thresholds:
            # flips[i]: threshold i's instant, _NEVER for none; ``first``: the smallest.
            by_key = self._thresholds_by_key
            if valid:
                flips, first = memo[3], memo[4]
                redo = [i for key in counters.pending for i in by_key.get(key, ())]
                if first <= now_ms:
                    redo += [i for i, t in enumerate(flips) if t <= now_ms]
            else:  # only series with an event have buckets: the others never flip
                flips = [_NEVER] * len(thresholds)
                redo = [i for key in counters.series_keys() for i in by_key.get(key, ())]
            if redo:
                flip_at = counters.flip_at
                for i in redo:
                    _key, total, bkey, w, op, c = thresholds[i]
                    t = flip_at(bkey, w, op, c, now_ms, total)
                    flips[i] = _NEVER if t is None else t
                first = min(flips)
            if first != _NEVER and (best is None or first < best):
                best = first
        else:
            flips = None
        counters.window_memo = (self._token, now_ms, windows, flips, first)
        counters.pending.clear()
        lasts = counters.lasts()
        for key, offsets in self._sinces:
            last = lasts.get(key)
            if last is None:
                continue
            for off in offsets:
                t = last + off
                if t > now_ms:
                    if best is None or t < best:
                        best = t
                    break
        return best

    def last_change_before(self, counters: WindowedCounters, until_ms: int) -> int | None:
        """The latest instant < ``until_ms`` at which time changed a value the segments
        read: a bucket leaving one of the windows read (those compared with a number
        too), or a since() offset passing. None if there is none."""
        best = counters.last_change_before(self._every_read, until_ms)
        for key, offsets in self._sinces:
            last = counters.last(key)
            if last is None:
                continue
            for off in reversed(offsets):
                t = last + off
                if t < until_ms:
                    if best is None or t > best:
                        best = t
                    break
        return best

    def _memo(self, seg_id: str, facts: Facts, now_ms: int, memo: dict | None) -> tuple[_Compiled, dict]:
        compiled = self._compiled.get(seg_id)
        if compiled is None:
            raise KeyError(f"unknown segment {seg_id!r}")
        if memo is not None:
            return compiled, dict(memo)
        memo = {}
        for sid, fn in compiled.needs:
            memo[sid] = fn(facts, now_ms, memo)
        return compiled, memo

    def explain(self, seg_id: str, facts: Facts, now_ms: int) -> list[tuple[str, object]]:
        """``(term source text, value now)`` for each function call and attribute of the
        condition, in source order, then ``("result", membership)``."""
        compiled, memo = self._memo(seg_id, facts, now_ms, None)
        out: list[tuple[str, object]] = [(text, fn(facts, now_ms, memo)) for text, fn in compiled.terms]
        out.append(("result", compiled.fn(facts, now_ms, memo)))
        return out

    def values(self, seg_id: str, facts: Facts, now_ms: int, memo: dict[str, bool] | None = None) -> dict[str, object]:
        """The terms of ``explain`` as a dict (the feature values that decided it). Pass
        ``evaluate``'s result as ``memo`` to reuse the memberships of other segments, or
        the ``memo`` filled by ``evaluate`` at the same instant to reuse everything it read."""
        compiled, memo = self._memo(seg_id, facts, now_ms, memo)
        return {text: fn(facts, now_ms, memo) for text, fn in compiled.terms}


def empty() -> SegmentSet:
    """No segments (and an empty feature plan)."""
    return SegmentSet((), {}, (), (), ())


# -- YAML -----------------------------------------------------------------------------------
def load_segments(path: str | Path) -> SegmentSet:
    """Read and compile a segments file; errors name the file."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SegmentError(str(path), None, 1, 1, f"not UTF-8 text: {exc}") from None
    return parse_segments(text, str(path))


def parse_segments(text: str, filename: str = "<segments>") -> SegmentSet:
    """Compile a segments document; raises ``SegmentError`` naming file, line and column."""
    return _Loader(text, filename).load()


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader:
    def __init__(self, text: str, filename: str) -> None:
        self.text, self.file = text, filename

    def error(self, node: yaml.Node | None, message: str, seg_id: str | None = None) -> SegmentError:
        line, col = (1, 1) if node is None else _mark(node)
        return SegmentError(self.file, seg_id, line, col, message)

    def load(self) -> SegmentSet:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise SegmentError(self.file, None, line, col, f"invalid YAML: {exc.problem or exc.context}") from None
        except yaml.YAMLError as exc:
            raise SegmentError(self.file, None, 1, 1, f"invalid YAML: {exc}") from None
        entries = self.entries(root)
        known = [e["id"][0] for e in entries]
        compiled: dict[str, tuple[Fn, dict[str, Fn]]] = {}
        touches: dict[str, set[str]] = {}
        deps: dict[str, dict[str, int]] = {}
        requirements, windows, sinces, thresholds, segments = [], [], [], [], {}
        for e in entries:
            sid, cond_node = e["id"][0], e["condition"][1]
            cond = cond_node.value
            try:
                tokens = sp.tokenize(cond)
                comp = _Compiler(cond, known)
                fn = comp.condition(sp.parse(cond))
            except ExprError as exc:
                line, col = self.position(cond_node, exc.offset)
                raise SegmentError(self.file, sid, line, col, exc.message) from None
            marketing = e["marketing"][0]
            canonical = " ".join(cond[t.pos:t.end] for t in tokens[:-1]) + f"\nmarketing={marketing}"
            version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
            segments[sid] = Segment(sid, e["description"][0], cond, version, marketing, tuple(comp.deps))
            compiled[sid] = (fn, comp.terms)
            touches[sid] = comp.touches
            deps[sid] = comp.deps
            requirements += comp.requirements
            windows += comp.windows
            sinces += comp.sinces
            thresholds += comp.thresholds
        order = self.topological(deps, {e["id"][0]: e["condition"][1] for e in entries})
        return SegmentSet([segments[sid] for sid in order], compiled, requirements, windows, sinces, touches,
                          thresholds)

    def entries(self, root: yaml.Node | None) -> list[dict[str, tuple[Any, yaml.Node]]]:
        if root is None:
            raise self.error(None, "empty file: expected a mapping with a 'segments' list")
        if not isinstance(root, yaml.MappingNode):
            raise self.error(root, "expected a mapping with a 'segments' list at the top level")
        seq = None
        for key, value in root.value:
            if key.value != "segments":
                raise self.error(key, f"unexpected top-level key {key.value!r}{_suggest(key.value, ['segments'])}: "
                                      "the only key is 'segments'")
            if seq is not None:
                raise self.error(key, "duplicate key 'segments'")
            seq = value
        if seq is None:
            raise self.error(root, "missing the 'segments' list")
        if not isinstance(seq, yaml.SequenceNode):
            raise self.error(seq, "'segments' must be a list of segments")
        out, first_line = [], {}
        for n, item in enumerate(seq.value, 1):
            entry = self.entry(item, n)
            sid, id_node = entry["id"]
            if sid in first_line:
                raise self.error(id_node, f"duplicate segment id {sid!r} (first defined on line {first_line[sid]})")
            first_line[sid] = _mark(id_node)[0]
            out.append(entry)
        return out

    def entry(self, item: yaml.Node, n: int) -> dict[str, tuple[Any, yaml.Node]]:
        if not isinstance(item, yaml.MappingNode):
            raise self.error(item, f"segment #{n} must be a mapping with 'id' and 'condition'")
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in item.value:
            if key.value not in ENTRY_KEYS:
                hint = _suggest(str(key.value), ENTRY_KEYS) or f"; keys: {', '.join(ENTRY_KEYS)}"
                raise self.error(key, f"unknown key {key.value!r} in segment #{n}{hint}", self.peek_id(item))
            if key.value in found:
                raise self.error(key, f"duplicate key {key.value!r} in segment #{n}", self.peek_id(item))
            found[key.value] = (key, value)
        if "id" not in found:
            raise self.error(item, f"segment #{n} has no 'id'")
        id_node = found["id"][1]
        sid = id_node.value if isinstance(id_node, yaml.ScalarNode) else None
        if not isinstance(sid, str) or not ID_RE.fullmatch(sid):
            raise self.error(id_node, f"segment id {sid!r} must match [a-z][a-z0-9_]{{0,63}}")
        if "condition" not in found:
            raise self.error(item, "missing 'condition'", sid)
        entry: dict[str, tuple[Any, yaml.Node]] = {"id": (sid, id_node)}
        for name in ("condition", "description"):
            node = found.get(name, (None, None))[1]
            if node is not None and not isinstance(node, yaml.ScalarNode):
                raise self.error(node, f"{name!r} must be a string", sid)
            entry[name] = ("" if node is None else node.value, node)
        if not entry["condition"][0].strip():
            raise self.error(entry["condition"][1], "'condition' is empty", sid)
        node = found.get("marketing", (None, None))[1]
        marketing = True
        if node is not None:
            if not (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool"):
                raise self.error(node, "'marketing' must be true or false", sid)
            marketing = node.value.lower() in ("true", "yes", "on", "y")
        entry["marketing"] = (marketing, node)
        return entry

    @staticmethod
    def peek_id(item: yaml.MappingNode) -> str | None:
        for key, value in item.value:
            if key.value == "id" and isinstance(value, yaml.ScalarNode) and ID_RE.fullmatch(value.value):
                return value.value
        return None

    def position(self, node: yaml.ScalarNode, offset: int) -> tuple[int, int]:
        """Line and column (1-based) in the file of character ``offset`` of a scalar's value.

        The value is aligned with the raw text: quotes, escapes, indentation and folded
        line breaks are raw characters without a value character of their own."""
        value, text = node.value, self.text
        start, end = node.start_mark.index, node.end_mark.index
        j = start
        if node.style in ("|", ">"):
            j = text.find("\n", start, end) + 1 or start
        elif node.style in ("'", '"'):
            j += 1
        i = 0
        while i < offset and j < end:
            if value[i] == text[j]:
                i, j = i + 1, j + 1
            elif text[j] in " \t\r\n\\'\"":
                j += 1
            elif value[i] in " \n":
                i += 1
            else:
                break
        while j < end and offset < len(value) and text[j] != value[offset] and text[j] in " \t\r\n\\'\"":
            j += 1
        line = text.count("\n", 0, j) + 1
        return line, j - text.rfind("\n", 0, j)

    def topological(self, deps: dict[str, dict[str, int]], nodes: dict[str, yaml.ScalarNode]) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done
        stack: list[str] = []

        def visit(sid: str) -> None:
            state[sid] = 1
            stack.append(sid)
            for dep in deps[sid]:
                if state.get(dep) == 1:
                    cycle = stack[stack.index(dep):] + [dep]
                    first = cycle[0]
                    line, col = self.position(nodes[first], deps[first][cycle[1]])
                    raise SegmentError(self.file, first, line, col,
                                       f"cycle between segments: {' → '.join(cycle)}")
                if dep not in state:
                    visit(dep)
            stack.pop()
            state[sid] = 2
            order.append(sid)

        for sid in deps:
            if sid not in state:
                visit(sid)
        return order
