"""Content decisions: a catalog of modules per slot, hard constraints, targeting, priority.

The catalog (YAML, ``content.path``) lists the slots a page or a conversation has and the
modules (banners, offers, message blocks) that may fill them:

```yaml
slots:
  hero: {description: the homepage hero banner}
modules:
  - id: hero_outdoor
    slot: hero
    priority: 80                     # higher wins among eligible modules
    payload: {title: Gear up for the trail, image: /img/trail.jpg, url: /c/outdoor}
    target:                          # all given parts must match; no target: a fallback
      segments: [high_value_outdoor_urban, bought_hiking_boots_30d]   # any of them
      channels: [web, app]
      page_types: [home]
      when: score("propensity") >= 0.5 or orders >= 3    # the segment language
    constraints:                     # hard: every one must hold, whatever else says
      - trait("age") >= 21
```

``Catalog.decide`` picks, for a slot, the eligible module with the highest priority
(ties: the id). Eligible = every constraint holds and the target matches. Constraints are
never overridden: not by priority, not by an experiment forcing a module, not by a
model score. Conditions use the segment language (``operators.segments``) over the
profile, with ``segment("id")`` meaning the profile's current membership; an anonymous
visitor is an empty profile (``orders == 0`` is true, every trait and segment unknown),
so "a discount only to new visitors" is ``constraints: [orders == 0]``.

>>> cat = parse_catalog('''
... slots: {offer: {}}
... modules:
...   - {id: wine_offer, slot: offer, priority: 50, payload: {title: Wine}, constraints: ['trait("age") >= 21']}
...   - {id: welcome_discount, slot: offer, priority: 40, constraints: [orders == 0]}
...   - {id: newsletter, slot: offer, priority: 0}
... ''')
>>> from operators.profile import Profile
>>> adult = Profile("user:a", traits={"age": [30, 1]}, orders=2)
>>> [cat.decide("offer", p, now_ms=0).module.id for p in (adult, Profile("user:b", orders=1), Profile("anon"))]
['wine_offer', 'newsletter', 'welcome_discount']
>>> cat.decide("offer", Profile("user:b", orders=1), now_ms=0).reason
'fallback (priority 0)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from operators.conditions import compile_condition
from operators.segments import SegmentError

_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MODULE_KEYS = {"id", "slot", "priority", "description", "payload", "target", "constraints"}
_TARGET_KEYS = {"segments", "channels", "page_types", "when"}
MAX_SLOTS_PER_REQUEST = 20


class ContentError(ValueError):
    """A bad catalog: ``file:line:column: module 'id': what is wrong``."""

    def __init__(self, file: str, module_id: str | None, line: int, column: int, message: str) -> None:
        self.file, self.module_id, self.line, self.column, self.message = file, module_id, line, column, message
        who = f"module {module_id!r}: " if module_id else ""
        super().__init__(f"{file}:{line}:{column}: {who}{message}")


@dataclass(frozen=True)
class Context:
    page_type: str = ""
    channel: str = ""
    category: str = ""


@dataclass(frozen=True)
class Module:
    id: str
    slot: str
    priority: int
    payload_json: str
    description: str = ""
    segments: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    page_types: tuple[str, ...] = ()
    when: Any = None  # a compiled condition, or None
    when_text: str = ""
    constraints: tuple = ()  # compiled conditions
    constraint_texts: tuple[str, ...] = ()

    @property
    def targeted(self) -> bool:
        return bool(self.segments or self.channels or self.page_types or self.when is not None)

    def allowed(self, profile, now_ms: int) -> tuple[bool, str]:
        for cond, text in zip(self.constraints, self.constraint_texts):
            if not cond.evaluate(profile, now_ms):
                return False, f"constraint {text} does not hold"
        return True, ""

    def matches(self, profile, now_ms: int, ctx: Context) -> tuple[bool, str]:
        if self.channels and ctx.channel not in self.channels:
            return False, "channel"
        if self.page_types and ctx.page_type not in self.page_types:
            return False, "page type"
        why = []
        if self.segments:
            held = [s for s in self.segments if s in profile.segments]
            if not held:
                return False, "segments"
            why.append(f"segment {held[0]}")
        if self.when is not None:
            if not self.when.evaluate(profile, now_ms):
                return False, "condition"
            why.append(f"condition {self.when_text}")
        if self.channels:
            why.append(f"channel {ctx.channel}")
        if self.page_types:
            why.append(f"page {ctx.page_type}")
        return True, "targets " + ", ".join(why)


@dataclass(frozen=True)
class Decision:
    slot: str
    module: Module | None
    reason: str


@dataclass(frozen=True)
class Catalog:
    slots: dict[str, str] = field(default_factory=dict)  # slot -> description
    modules: tuple[Module, ...] = ()
    requirements: tuple = ()  # windowed counters the conditions read (for the flow's plan)

    def by_slot(self, slot: str) -> list[Module]:
        return sorted((m for m in self.modules if m.slot == slot), key=lambda m: (-m.priority, m.id))

    @property
    def module_ids(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {s: set() for s in self.slots}
        for m in self.modules:
            out[m.slot].add(m.id)
        return out

    def decide(self, slot: str, profile, now_ms: int, ctx: Context = Context(), *,
               force: str | None = None) -> Decision:
        """The module for ``slot``. ``force``: a module an experiment variant asks for;
        it is used only if its constraints hold (targeting is the experiment's)."""
        candidates = self.by_slot(slot)
        if force is not None:
            forced = next((m for m in candidates if m.id == force), None)
            if forced is not None:
                ok, why = forced.allowed(profile, now_ms)
                if ok:
                    return Decision(slot, forced, f"experiment variant (priority {forced.priority})")
        for module in candidates:
            ok, _why = module.allowed(profile, now_ms)
            if not ok:
                continue
            if not module.targeted:
                return Decision(slot, module, f"fallback (priority {module.priority})")
            ok, why = module.matches(profile, now_ms, ctx)
            if ok:
                return Decision(slot, module, f"{why} (priority {module.priority})")
        return Decision(slot, None, "no eligible module")


def parse_catalog(text: str, filename: str = "<content>", *, segments=None) -> Catalog:
    """Parse and validate a catalog; ``segments``: the known segment ids (None: unchecked)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ContentError(filename, None, line, col, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return _Parser(filename, segments, text).catalog(root)


def load_catalog(path, *, segments=None) -> Catalog:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContentError(str(path), None, 1, 1, f"cannot read the file: {exc}") from None
    return parse_catalog(text, str(path), segments=segments)


def _plain(node) -> Any:
    """A YAML node as plain data (for payloads)."""
    if isinstance(node, yaml.MappingNode):
        return {_plain(k): _plain(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value


class _Parser:
    def __init__(self, filename: str, segments, text: str) -> None:
        self.file = filename
        self.text = text
        self.segments = None if segments is None else set(segments)

    def fail(self, node, module_id, message):
        raise ContentError(self.file, module_id, node.start_mark.line + 1, node.start_mark.column + 1, message)

    def mapping(self, node, module_id, what) -> dict[str, tuple[Any, Any]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, module_id, f"{what} must be a mapping")
        out = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.fail(k, module_id, "keys must be plain names")
            if k.value in out:
                self.fail(k, module_id, f"duplicate key {k.value!r} in {what}")
            out[k.value] = (k, v)
        return out

    def scalar(self, node, module_id, what) -> str:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, module_id, f"{what} must be a single value")
        return node.value

    def names(self, node, module_id, what) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.fail(node, module_id, f"{what} must be a non-empty list")
        return tuple(self.scalar(n, module_id, what) for n in node.value)

    def catalog(self, root) -> Catalog:
        if root is None:
            raise ContentError(self.file, None, 1, 1, "empty file: expected 'slots' and 'modules'")
        top = self.mapping(root, None, "the file")
        for key in top:
            if key not in ("slots", "modules"):
                self.fail(top[key][0], None, f"unexpected top-level key {key!r}: the keys are 'slots' and 'modules'")
        if "slots" not in top or "modules" not in top:
            self.fail(root, None, "the catalog needs 'slots' and 'modules'")
        slots: dict[str, str] = {}
        for name, (knode, vnode) in self.mapping(top["slots"][1], None, "'slots'").items():
            if not _ID.fullmatch(name):
                self.fail(knode, None, f"slot name {name!r} must match [a-z][a-z0-9_]*")
            desc = ""
            if isinstance(vnode, yaml.MappingNode):
                fields = self.mapping(vnode, None, f"slot {name!r}")
                desc = self.scalar(fields["description"][1], None, "a description") if "description" in fields else ""
            slots[name] = desc
        seq = top["modules"][1]
        if not isinstance(seq, yaml.SequenceNode):
            self.fail(seq, None, "'modules' must be a list")
        modules: list[Module] = []
        requirements: list = []
        first: dict[str, int] = {}
        for node in seq.value:
            module, reqs = self.module(node, slots)
            if module.id in first:
                self.fail(node, module.id, f"duplicate module id {module.id!r} (first defined on line {first[module.id]})")
            first[module.id] = node.start_mark.line + 1
            modules.append(module)
            requirements.extend(reqs)
        for slot in slots:
            if not any(m.slot == slot for m in modules):
                self.fail(top["slots"][1], None, f"slot {slot!r} has no module")
        return Catalog(slots, tuple(modules), tuple(requirements))

    def condition(self, node, module_id, what):
        text = self.scalar(node, module_id, what)
        try:
            return compile_condition(text, filename=self.file, document=self.text, node=node,
                                     known_segments=self.segments), text
        except SegmentError as exc:
            raise ContentError(self.file, module_id, exc.line, exc.column, f"{what}: {exc.message}") from None

    def module(self, node, slots) -> tuple[Module, list]:
        raw = self.mapping(node, None, "a module")
        if "id" not in raw:
            self.fail(node, None, "a module has no 'id'")
        mid = self.scalar(raw["id"][1], None, "'id'")
        if not _ID.fullmatch(mid):
            self.fail(raw["id"][1], None, f"module id {mid!r} must match [a-z][a-z0-9_]* (at most 64 chars)")
        for key in raw:
            if key not in _MODULE_KEYS:
                self.fail(raw[key][0], mid, f"unknown key {key!r}; keys: {', '.join(sorted(_MODULE_KEYS))}")
        if "slot" not in raw:
            self.fail(node, mid, "missing 'slot'")
        slot = self.scalar(raw["slot"][1], mid, "'slot'")
        if slot not in slots:
            self.fail(raw["slot"][1], mid, f"unknown slot {slot!r}; slots: {', '.join(sorted(slots))}")
        priority = 0
        if "priority" in raw:
            text = self.scalar(raw["priority"][1], mid, "'priority'")
            if not re.fullmatch(r"-?\d{1,6}", text):
                self.fail(raw["priority"][1], mid, f"priority {text!r} must be an integer")
            priority = int(text)
        payload: Any = {}
        if "payload" in raw:
            if not isinstance(raw["payload"][1], yaml.MappingNode):
                self.fail(raw["payload"][1], mid, "'payload' must be a mapping (it is returned as a JSON object)")
            payload = _plain(raw["payload"][1])
        try:
            payload_json = orjson.dumps(payload).decode()
        except TypeError as exc:
            self.fail(raw["payload"][1], mid, f"'payload' cannot be JSON: {exc}")
        requirements: list = []
        segs: tuple[str, ...] = ()
        channels: tuple[str, ...] = ()
        page_types: tuple[str, ...] = ()
        when = None
        when_text = ""
        if "target" in raw:
            target = self.mapping(raw["target"][1], mid, "'target'")
            for key in target:
                if key not in _TARGET_KEYS:
                    self.fail(target[key][0], mid, f"unknown target {key!r}; targets: {', '.join(sorted(_TARGET_KEYS))}")
            if not target:
                self.fail(raw["target"][1], mid, "'target' is empty: leave it out for a fallback module")
            if "segments" in target:
                segs = self.names(target["segments"][1], mid, "'target.segments'")
                for n, seg in zip(target["segments"][1].value, segs):
                    if self.segments is not None and seg not in self.segments:
                        self.fail(n, mid, f"unknown segment {seg!r}")
            if "channels" in target:
                channels = self.names(target["channels"][1], mid, "'target.channels'")
            if "page_types" in target:
                page_types = self.names(target["page_types"][1], mid, "'target.page_types'")
            if "when" in target:
                when, when_text = self.condition(target["when"][1], mid, "target.when")
                requirements.extend(when.requirements)
        constraints, texts = [], []
        if "constraints" in raw:
            seq = raw["constraints"][1]
            if not isinstance(seq, yaml.SequenceNode) or not seq.value:
                self.fail(seq, mid, "'constraints' must be a non-empty list of conditions")
            for n in seq.value:
                cond, text = self.condition(n, mid, "constraint")
                constraints.append(cond)
                texts.append(text)
                requirements.extend(cond.requirements)
        description = self.scalar(raw["description"][1], mid, "'description'") if "description" in raw else ""
        return Module(mid, slot, priority, payload_json, description, segs, channels, page_types, when, when_text,
                      tuple(constraints), tuple(texts)), requirements
