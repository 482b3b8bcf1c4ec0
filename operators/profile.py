"""Per-profile state: what Pulse knows about one person, and how an event changes it.

Memory per profile is bounded: at most ``MAX_CATEGORIES`` category counters,
``MAX_CART_LINES`` cart lines, ``Policy.dedupe_max`` remembered event ids (8-byte keyed
digests, kept for ``Policy.dedupe_horizon_ms`` of event time; up to a quarter more between
prunes, which run when that is exceeded, so not on every write); counts are one integer
per event type.

Consent: per purpose (``analytics``, ``personalization``, ``marketing``) the latest
``consent_update`` by event time wins; purposes never set follow ``Policy.default_consent``.
Without ``analytics`` nothing but the consent record is kept: behaviour is not applied,
and withdrawing it clears the behaviour already stored.

>>> from operators.events import parse_event
>>> p = Profile("u1")
>>> ev = parse_event(b'{"event_id":"e1","type":"add_to_cart","user_id":"u1",'
...                  b'"timestamp":1796205600000,"item_id":"sku-1","category":"tents","price":120}')
>>> p.apply(ev, "pulse.events/0", 41)
'applied'
>>> p.apply(ev, "pulse.events/0", 41)   # the same event at the same offset: a replay
'replayed'
>>> p.apply(ev, "pulse.events/1", 7)    # the same event_id again elsewhere: a duplicate
'duplicate'
>>> p.counts, p.cart["sku-1"]["qty"], p.top_categories(1)
({'add_to_cart': 1}, 1, [('tents', 1)])
>>> Profile.from_record(p.to_record()) == p
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from operators.events import Event
from operators.buckets import MICRO, exact_bytes
from operators.cart import CartView
from operators.features import FeaturePlan, WindowedCounters

RECORD_VERSION = 4
READABLE_VERSIONS = (3, 4)  # v3 lacks the model fields below; they start empty
MAX_CATEGORIES = 50
MAX_CART_LINES = 100
MAX_CART_OPS = 20
MAX_MERGED_FROM = 50
MAX_PURCHASED = 200
MAX_BRANDS = 50
MAX_RECENT = 20
KEEP_JSON = 1024  # see Profile._seen_json
PRICE_TASTE_SCALE = 1_000_000  # price_taste keeps ln(price) in millionths

_PRODUCT_TYPES = frozenset(("product_view", "add_to_cart", "purchase"))

# Outcomes of Profile.apply (metric label values).
APPLIED = "applied"
DUPLICATE = "duplicate"  # the same event_id again (producer retry, client resend)
REPLAYED = "replayed"  # re-read after a restart: an offset of its source already handled
SUPPRESSED = "suppressed"  # no analytics consent: behaviour is not stored
OUTCOMES = (APPLIED, DUPLICATE, REPLAYED, SUPPRESSED)


@dataclass(frozen=True)
class Policy:
    default_consent: bool = True  # True: opt-out regime; False: opt-in regime
    dedupe_horizon_ms: int = 24 * 3600 * 1000
    dedupe_max: int = 1000
    plan: FeaturePlan | None = None  # the windowed counters segments need (None: none kept)


DEFAULT_POLICY = Policy()


def event_digest(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


class ProfileRecordError(ValueError):
    """A stored profile record does not have the expected shape."""


@dataclass(eq=True)
class Profile:
    profile_id: str
    counts: dict[str, int] = field(default_factory=dict)
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    total_spend: float = 0.0
    orders: int = 0
    # item -> {"ops": [[event time, +/-qty], ...] since the item was last bought,
    #          "since": time of that purchase, "price", "price_ms", "category"}.
    # A log rather than a running quantity, so the cart is the same whatever order the
    # events (and merged profiles) arrive in; ``cart`` is the view.
    cart_log: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    last_device: str | None = None
    last_channel: str | None = None
    last_geo: dict[str, Any] | None = None
    # source ("topic/partition") -> last applied offset: tells replays from duplicates.
    positions: dict[str, int] = field(default_factory=dict)
    version: int = 0  # incremented on every change
    seen: dict[str, int] = field(default_factory=dict)  # event_id digest -> event time
    consent: dict[str, list] = field(default_factory=dict)  # purpose -> [granted, event time]
    merged_from: list[str] = field(default_factory=list)  # profile ids absorbed by stitching
    purchased: dict[str, int] = field(default_factory=dict)  # item -> last purchase time (newest kept)
    traits: dict[str, list] = field(default_factory=dict)  # name -> [value, event time] (identify traits)
    counters: WindowedCounters = field(default_factory=WindowedCounters)
    # Segments: id -> [entered at (ms), segment version]; the segment clock (event time the
    # memberships are true at) and the next instant time alone may change one (or None).
    segments: dict[str, list] = field(default_factory=dict)
    clock_ms: int = 0
    next_check_ms: int | None = None
    scores: dict[str, float] = field(default_factory=dict)  # model name -> latest score
    # Experiments (operators.attribution): id -> [variant, first exposure ms, converted,
    # revenue, engaged]; the last orders [ms, amount] and engagement time, for late exposures.
    experiments: dict[str, list] = field(default_factory=dict)
    recent_orders: list[list] = field(default_factory=list)
    last_engaged_ms: int = 0
    # Models (operators.models, operators.reco): pending delayed-label examples, model name ->
    # [created ms, deadline ms, score given then, features]; the user's latent factors
    # (empty until learnt); brand interaction counts; the last product interactions
    # [[event time, item id, event type], ...] oldest first; price taste [sum log price, n].
    labels: dict[str, list] = field(default_factory=dict)
    factors: list[float] = field(default_factory=list)
    brands: dict[str, int] = field(default_factory=dict)
    recent: list[list] = field(default_factory=list)
    # [sum of round(1e6 * ln price), n]: integers, so merged and replayed profiles sum to
    # exactly the same value whatever the order (a float sum differs in the last bit).
    price_taste: list[int] = field(default_factory=lambda: [0, 0])
    # The cart view (``operators.cart``), from the first read on: kept up to date line by line.
    _cart: CartView | None = field(default=None, init=False, repr=False, compare=False)
    # What the last applied event changed, for segment evaluation: attribute names, and
    # "trait"/"location" (not stored).
    changed: set = field(default_factory=set, init=False, repr=False, compare=False)
    # Encoded JSON of the largest parts, reused by ``encoded()`` while unchanged: the id
    # memory as (the dict, entries encoded, bytes) - it only grows between replacements -
    # and the cart log (None after a cart change). Kept from ``KEEP_JSON`` bytes on.
    _seen_json: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _cart_json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def is_applied(self, source: str, offset: int) -> bool:
        last = self.positions.get(source)
        return last is not None and offset <= last

    def allows(self, purpose: str, policy: Policy = DEFAULT_POLICY) -> bool:
        got = self.consent.get(purpose)
        return policy.default_consent if got is None else bool(got[0])

    def apply(self, event: Event, source: str, offset: int, policy: Policy = DEFAULT_POLICY) -> str:
        """Apply ``event`` read at ``offset`` of ``source``; returns one of ``OUTCOMES``."""
        # A record at or before this profile's last position in its source was read before
        # a restart: partitions are read in order, so it was already handled, whatever the
        # (bounded) id memory still holds. Only ids tell a re-sent event from a new one.
        if self.is_applied(source, offset):
            return REPLAYED
        digest = event_digest(event.event_id)
        if digest in self.seen:
            return DUPLICATE
        if event.type == "consent_update":
            self._set_consent(event, policy)
        elif not self.allows("analytics", policy):
            # Remember the position so a replay after consent is granted later cannot
            # store what was suppressed when it happened.
            self.positions[source] = offset
            return SUPPRESSED
        if self.allows("analytics", policy):
            self._remember(digest, event.ts_ms, policy)
        if offset > self.positions.get(source, -1):
            self.positions[source] = offset
        self.version += 1
        if event.type == "consent_update":
            return APPLIED
        self._apply_behaviour(event)
        if policy.plan is not None:
            self.counters.observe(event, policy.plan)
        return APPLIED

    def _remember(self, digest: str, ts: int, policy: Policy) -> None:
        self.seen[digest] = ts
        if len(self.seen) > policy.dedupe_max * 5 // 4:
            self._prune_seen(policy)

    def _prune_seen(self, policy: Policy) -> None:
        """Keep the newest ``dedupe_max`` ids within the horizon of the newest one. The
        kept set depends only on the ids seen, not on when pruning ran."""
        newest = max(self.seen.values())
        kept = sorted(((t, d) for d, t in self.seen.items() if t > newest - policy.dedupe_horizon_ms), reverse=True)
        self.seen = {d: t for t, d in kept[: policy.dedupe_max]}

    def _set_consent(self, event: Event, policy: Policy) -> None:
        had_analytics = self.allows("analytics", policy)
        for purpose, granted in event.consent:
            current = self.consent.get(purpose)
            if current is None or event.ts_ms >= current[1]:
                self.consent[purpose] = [granted, event.ts_ms]
        if had_analytics and not self.allows("analytics", policy):
            self.clear_behaviour()

    def clear_behaviour(self) -> None:
        """Forget everything learnt from behaviour; consent and offsets stay."""
        self.counts = {}
        self.first_seen_ms = self.last_seen_ms = 0
        self.total_spend = 0.0
        self.orders = 0
        self.cart_log = {}
        self._cart = self._cart_json = None
        self.categories = {}
        self.purchased = {}
        self.last_device = self.last_channel = None
        self.last_geo = None
        self.seen = {}
        self.traits = {}
        self.counters = WindowedCounters()
        self.recent_orders = []
        self.last_engaged_ms = 0
        self.labels = {}
        self.factors = []
        self.brands = {}
        self.recent = []
        self.price_taste = [0, 0]
        self.scores = {}

    def _apply_behaviour(self, event: Event) -> None:
        etype = event.type
        self.counts[etype] = self.counts.get(etype, 0) + 1
        ts = event.ts_ms
        changed = self.changed = {"events"}
        if self.first_seen_ms == 0 or ts < self.first_seen_ms:
            self.first_seen_ms = ts
        newest = ts >= self.last_seen_ms
        if newest:
            self.last_seen_ms = ts
            ctx = event.context
            if ctx.device is not None and ctx.device != self.last_device:
                self.last_device = ctx.device
                changed.add("device")
            if ctx.channel is not None and ctx.channel != self.last_channel:
                self.last_channel = ctx.channel
                changed.add("channel")
            if ctx.geo is not None:
                g = ctx.geo
                geo = {"country": g.country, "city": g.city, "lat": g.lat, "lon": g.lon, "urban": g.urban}
                if geo != self.last_geo:
                    changed.update(name for name in geo if self.last_geo is None or geo[name] != self.last_geo.get(name))
                    changed.add("location")
                    self.last_geo = geo
        for name, value in event.traits:
            current = self.traits.get(name)
            if current is None or ts >= current[1]:
                self.traits[name] = [value, ts]
                changed.add("trait")
        product = etype in _PRODUCT_TYPES
        for line in event.items:
            if line.category is not None:
                self._count_category(line.category, line.quantity if etype == "purchase" else 1)
            if product:
                if line.brand is not None:
                    self._count_brand(line.brand, 1)
                if line.price > 0:
                    self.price_taste = [self.price_taste[0] + round(PRICE_TASTE_SCALE * math.log(line.price)),
                                        self.price_taste[1] + 1]
                self._recent(ts, line.item_id, etype)
        if etype in ("add_to_cart", "remove_from_cart", "purchase"):
            changed.update(("cart_items", "cart_value"))
        if etype == "purchase":
            changed.update(("orders", "total_spend", "aov"))
        if etype == "add_to_cart":
            for line in event.items:
                self._cart_op(line.item_id, ts, line.quantity, line.price, line.category)
        elif etype == "remove_from_cart":
            for line in event.items:
                self._cart_op(line.item_id, ts, -line.quantity, None, line.category)
        elif etype == "purchase":
            self.orders += 1
            for line in event.items:
                self.total_spend += line.price * line.quantity
                self._cart_bought(line.item_id, ts, line.price, line.category)
                self._bought(line.item_id, ts)
            self.total_spend = round(self.total_spend, 2)

    def absorb(self, other: Profile, policy: Policy = DEFAULT_POLICY) -> bool:
        """Merge ``other`` (the same person, stitched) into this profile.

        Commutative and associative over disjoint histories: counts and spend add up,
        first/last seen take min/max, carts and categories combine, remembered event ids
        and offsets unite, and per consent purpose the later decision wins. Absorbing a
        profile id twice changes nothing (``merged_from``).
        """
        if other.profile_id in self.merged_from or other.profile_id == self.profile_id:
            return False
        for etype, n in other.counts.items():
            self.counts[etype] = self.counts.get(etype, 0) + n
        if other.first_seen_ms and (not self.first_seen_ms or other.first_seen_ms < self.first_seen_ms):
            self.first_seen_ms = other.first_seen_ms
        if other.last_seen_ms > self.last_seen_ms:
            self.last_seen_ms = other.last_seen_ms
            self.last_device = other.last_device or self.last_device
            self.last_channel = other.last_channel or self.last_channel
            self.last_geo = other.last_geo or self.last_geo
        self.total_spend = round(self.total_spend + other.total_spend, 2)
        self.orders += other.orders
        for item_id, line in other.cart_log.items():
            self._cart_bought(item_id, line["since"])
            self._cart_op(item_id, line["price_ms"], 0, line["price"], None)
            self._cart_op(item_id, line.get("category_ms", 0), 0, None, line["category"])
            for ts, delta in line["ops"]:
                self._cart_op(item_id, ts, delta, None, None)
        for category, n in other.categories.items():
            self._count_category(category, n)
        for brand, n in other.brands.items():
            self._count_brand(brand, n)
        for ts, item_id, etype in other.recent:
            self._recent(ts, item_id, etype)
        self.price_taste = [self.price_taste[0] + other.price_taste[0], self.price_taste[1] + other.price_taste[1]]
        if not self.factors:
            self.factors = list(other.factors)
        for item_id, ts in other.purchased.items():
            self._bought(item_id, ts)
        for digest, ts in other.seen.items():
            self.seen.setdefault(digest, ts)
        if len(self.seen) > policy.dedupe_max * 5 // 4:
            self._prune_seen(policy)
        for source, offset in other.positions.items():
            if offset > self.positions.get(source, -1):
                self.positions[source] = offset
        for name, (value, ts) in other.traits.items():
            current = self.traits.get(name)
            if current is None or ts > current[1]:
                self.traits[name] = [value, ts]
        self.counters.absorb(other.counters)
        self.clock_ms = max(self.clock_ms, other.clock_ms)
        for exp_id, entry in other.experiments.items():
            mine = self.experiments.get(exp_id)
            if mine is None or (entry[1], entry[0]) < (mine[1], mine[0]):
                self.experiments[exp_id] = list(entry)
        self.recent_orders = sorted(set(map(tuple, self.recent_orders + other.recent_orders)))[-20:]
        self.recent_orders = [list(o) for o in self.recent_orders]
        self.last_engaged_ms = max(self.last_engaged_ms, other.last_engaged_ms)
        for purpose, (granted, ts) in other.consent.items():
            current = self.consent.get(purpose)
            if current is None or ts > current[1]:
                self.consent[purpose] = [granted, ts]
        if not self.allows("analytics", policy):
            self.clear_behaviour()
        merged = {other.profile_id, *other.merged_from, *self.merged_from}
        self.merged_from = sorted(merged)[:MAX_MERGED_FROM]
        self.version += other.version + 1
        return True

    def _count_brand(self, brand: str, weight: int) -> None:
        brands = self.brands
        if brand not in brands and len(brands) >= MAX_BRANDS:
            del brands[min(brands.items(), key=lambda kv: (kv[1], kv[0]))[0]]
        brands[brand] = brands.get(brand, 0) + weight

    def _recent(self, ts: int, item_id: str, etype: str) -> None:
        """Keep the ``MAX_RECENT`` newest product interactions, by event time (ties by item
        and type): the same list whatever order the events arrive in."""
        entry = [ts, item_id, etype]
        recent = self.recent
        if len(recent) >= MAX_RECENT and entry <= recent[0]:
            return
        recent.append(entry)
        recent.sort()
        if len(recent) > MAX_RECENT:
            del recent[0]

    def mean_log_price(self) -> float | None:
        """The mean natural log of the prices of the products interacted with (None: none)."""
        total, n = self.price_taste
        return total / PRICE_TASTE_SCALE / n if n else None

    def interactions(self) -> int:
        """Product interactions so far (views, cart additions, purchases): how much
        recommendation models know about this user."""
        c = self.counts
        return c.get("product_view", 0) + c.get("add_to_cart", 0) + c.get("purchase", 0)

    def top_categories(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.categories.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def _count_category(self, category: str, weight: int) -> None:
        cats = self.categories
        if category not in cats and len(cats) >= MAX_CATEGORIES:
            # Evict the weakest category (ties: alphabetical) so the map stays bounded.
            weakest = min(cats.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del cats[weakest]
        cats[category] = cats.get(category, 0) + weight

    @property
    def cart(self) -> dict[str, dict[str, Any]]:
        """The current cart: item -> qty, price, category, added_ms (first add still in it).
        Read-only: the same dict is returned until the cart changes."""
        return self._cart_view().view(self.cart_log)

    def cart_totals(self) -> tuple[int, int]:
        """The cart's quantity and value in millionths (``operators.cart``)."""
        return self._cart_view().totals(self.cart_log)

    def _cart_view(self) -> CartView:
        view = self._cart
        if view is None:
            view = self._cart = CartView()
        return view

    def _cart_line(self, item_id: str) -> dict[str, Any]:
        self._cart_json = None  # every cart change goes through here
        view = self._cart
        line = self.cart_log.get(item_id)
        if line is None:
            if len(self.cart_log) >= MAX_CART_LINES:
                # Drop the line with the oldest activity (ties: by id).
                def last_activity(kv):
                    return (max([ts for ts, _ in kv[1]["ops"]] + [kv[1]["since"]]), kv[0])
                oldest = min(self.cart_log.items(), key=last_activity)[0]
                del self.cart_log[oldest]
                if view is not None:
                    view.dropped(oldest)
            line = self.cart_log[item_id] = {"ops": [], "since": 0, "price": 0.0, "price_ms": 0,
                                             "category": None, "category_ms": 0}
            if view is not None:
                view.changed(item_id, new=True)
        elif view is not None:
            view.changed(item_id, new=False)
        return line

    def _cart_op(self, item_id: str, ts: int, delta: int, price: float | None, category: str | None,
                 attr_ms: int | None = None) -> None:
        line = self._cart_line(item_id)
        # Price and category: the latest by event time wins (ties: the larger value), so
        # they do not depend on arrival order either.
        at = ts if attr_ms is None else attr_ms
        if price and (at, price) > (line["price_ms"], line["price"]):
            line["price"], line["price_ms"] = price, at
        if category is not None and (at, category) > (line.get("category_ms", 0), line["category"] or ""):
            line["category"], line["category_ms"] = category, at
        if delta == 0 or ts <= line["since"]:
            return  # no quantity change, or older than the last purchase of this item
        line["ops"].append([ts, delta])
        line["ops"].sort()
        if len(line["ops"]) > MAX_CART_OPS:
            # Fold the two oldest operations into one (keeps the sum).
            (_t1, d1), (t2, d2) = line["ops"][:2]
            line["ops"][:2] = [[t2, d1 + d2]]

    def _bought(self, item_id: str, ts: int) -> None:
        if ts > self.purchased.get(item_id, -1):
            self.purchased[item_id] = ts
        if len(self.purchased) > MAX_PURCHASED:
            oldest = min(self.purchased.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del self.purchased[oldest]

    def _cart_bought(self, item_id: str, ts: int, price: float | None = None, category: str | None = None) -> None:
        line = self._cart_line(item_id)
        self._cart_op(item_id, ts, 0, price, category)
        if ts > line["since"]:
            line["since"] = ts
            line["ops"] = [op for op in line["ops"] if op[0] > ts]

    # -- stored form ---------------------------------------------------------------
    def compact(self, policy: Policy = DEFAULT_POLICY) -> None:
        """Bring bounded parts to their bounds before storing (deterministic). The id
        memory is not pruned here but where it grows (``_remember``, ``absorb``): pruning
        it to the exact bound before each write re-sorted a heavy profile's thousand ids
        on every batch (7% of the processor's time in the soak), and a prune whose timing
        followed batch boundaries would make the kept ids depend on them."""
        if policy.plan is not None:
            self.counters.prune(policy.plan, max(self.clock_ms, self.last_seen_ms))

    # -- facts read by segment conditions (operators.segments.Facts) -----------------
    def attribute(self, name: str) -> float | str | bool | None:
        getter = _ATTRIBUTES.get(name)
        return None if getter is None else getter(self)

    def trait(self, name: str) -> str | float | bool | None:
        got = self.traits.get(name)
        return None if got is None else got[0]

    def score(self, name: str) -> float | None:
        return self.scores.get(name)

    def location(self) -> tuple[float, float] | None:
        geo = self.last_geo
        if geo is None or geo.get("lat") is None:
            return None
        return geo["lat"], geo["lon"]

    def to_record(self) -> dict[str, Any]:
        return self._record(False)

    def _record(self, encoded: bool) -> dict[str, Any]:
        rec: dict[str, Any] = {"v": RECORD_VERSION, "id": self.profile_id}
        for name in _STORED:  # in field order: the stored bytes keep one key order
            rec[name] = getattr(self, name)
        rec["counters"] = self.counters.to_record(encoded)
        return rec

    def encoded(self) -> bytes:
        """``orjson.dumps(self.to_record())``, reusing the encoding of the id memory, the
        cart log and the counters' series where they did not change since the previous
        call: a heavy profile (a thousand ids, a hundred cart lines, 60 KB) is re-encoded
        on every event it gets, and those parts were two thirds of its encoding time."""
        rec = self._record(True)
        rec["seen"] = orjson.Fragment(self._encoded_seen())
        cart = self._cart_json
        if cart is None:
            cart = orjson.dumps(self.cart_log)
            if len(cart) >= KEEP_JSON:
                self._cart_json = cart = exact_bytes(cart)
        rec["cart_log"] = orjson.Fragment(cart)
        return orjson.dumps(rec)

    def _encoded_seen(self) -> bytes:
        # ``seen`` changes only by new ids appended at its end (``_remember``, ``absorb``)
        # or by being replaced (prune, clear, load): the ids after the ones encoded last
        # time are encoded and spliced into the same JSON object.
        seen = self.seen
        cached = self._seen_json
        if cached is not None and cached[0] is seen and cached[1] <= len(seen):
            _, n, raw = cached
            if n == len(seen):
                return raw
            tail = orjson.dumps(dict(islice(seen.items(), n, None)))
            raw = tail if n == 0 else raw[:-1] + b"," + tail[1:]  # bytes of their own size
        else:
            raw = orjson.dumps(seen)
            if len(raw) < KEEP_JSON:
                return raw
            raw = exact_bytes(raw)
        self._seen_json = (seen, len(seen), raw)
        return raw

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Profile:
        if rec.get("v") not in READABLE_VERSIONS:
            raise ProfileRecordError(f"profile record version {rec.get('v')!r}, expected one of {READABLE_VERSIONS}")
        try:
            profile_id = rec["id"]
            fields = {name: rec[name] for name in _REQUIRED}
        except KeyError as exc:
            raise ProfileRecordError(f"profile record lacks field {exc.args[0]!r}") from exc
        for name, empty in _ADDED_IN_V4.items():
            fields[name] = rec[name] if name in rec else empty()
        fields["counters"] = WindowedCounters.from_record(fields["counters"])
        return cls(profile_id=profile_id, **fields)


def _geo(name: str):
    return lambda p: None if p.last_geo is None else p.last_geo.get(name)


_ATTRIBUTES = {
    "orders": lambda p: p.orders,
    "total_spend": lambda p: p.total_spend,
    "aov": lambda p: round(p.total_spend / p.orders, 2) if p.orders else None,
    "cart_items": lambda p: p.cart_totals()[0],
    "cart_value": lambda p: round(p.cart_totals()[1] / MICRO, 2),
    "events": lambda p: sum(p.counts.values()),
    "lat": _geo("lat"),
    "lon": _geo("lon"),
    "country": _geo("country"),
    "city": _geo("city"),
    "urban": _geo("urban"),
    "device": lambda p: p.last_device,
    "channel": lambda p: p.last_channel,
}


# The stored fields (all but ``profile_id``, stored as "id") in field order, and those a v3
# record lacks, with their empty values.
_STORED = tuple(f.name for f in dataclasses.fields(Profile) if f.init and f.name != "profile_id")
_ADDED_IN_V4 = {"labels": dict, "factors": list, "brands": dict, "recent": list, "price_taste": lambda: [0, 0]}
_REQUIRED = tuple(name for name in _STORED if name not in _ADDED_IN_V4)
