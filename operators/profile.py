"""Per-profile state: what Pulse knows about one person, and how an event changes it.

Memory per profile is bounded: at most ``MAX_CATEGORIES`` category counters and
``MAX_CART_LINES`` cart lines; counts are one integer per event type.

>>> from operators.events import parse_event
>>> p = Profile("u1")
>>> ev = parse_event(b'{"event_id":"e1","type":"add_to_cart","user_id":"u1",'
...                  b'"timestamp":1796205600000,"item_id":"sku-1","category":"tents","price":120}')
>>> p.apply(ev, "pulse.events/0", 41)
True
>>> p.apply(ev, "pulse.events/0", 41)   # the same offset again: a replay, skipped
False
>>> p.counts, p.cart["sku-1"]["qty"], p.top_categories(1)
({'add_to_cart': 1}, 1, [('tents', 1)])
>>> Profile.from_record(p.to_record()) == p
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from operators.events import Event

RECORD_VERSION = 1
MAX_CATEGORIES = 50
MAX_CART_LINES = 100


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
    cart: dict[str, dict[str, Any]] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    last_device: str | None = None
    last_channel: str | None = None
    last_geo: dict[str, Any] | None = None
    # source ("topic/partition") -> last applied offset: replays after a crash are skipped.
    positions: dict[str, int] = field(default_factory=dict)
    version: int = 0  # incremented on every applied event

    def is_applied(self, source: str, offset: int) -> bool:
        last = self.positions.get(source)
        return last is not None and offset <= last

    def apply(self, event: Event, source: str, offset: int) -> bool:
        """Apply ``event`` read at ``offset`` of ``source``; False if already applied."""
        if self.is_applied(source, offset):
            return False
        self.positions[source] = offset
        self.version += 1
        etype = event.type
        self.counts[etype] = self.counts.get(etype, 0) + 1
        ts = event.ts_ms
        if self.first_seen_ms == 0 or ts < self.first_seen_ms:
            self.first_seen_ms = ts
        newest = ts >= self.last_seen_ms
        if newest:
            self.last_seen_ms = ts
            ctx = event.context
            if ctx.device is not None:
                self.last_device = ctx.device
            if ctx.channel is not None:
                self.last_channel = ctx.channel
            if ctx.geo is not None:
                g = ctx.geo
                self.last_geo = {"country": g.country, "city": g.city, "lat": g.lat, "lon": g.lon}
        for line in event.items:
            if line.category is not None:
                self._count_category(line.category, line.quantity if etype == "purchase" else 1)
        if etype == "add_to_cart":
            for line in event.items:
                self._add_to_cart(line.item_id, line.quantity, line.price, line.category, ts)
        elif etype == "remove_from_cart":
            for line in event.items:
                self._remove_from_cart(line.item_id, line.quantity)
        elif etype == "purchase":
            self.orders += 1
            for line in event.items:
                self.total_spend += line.price * line.quantity
                self.cart.pop(line.item_id, None)
            self.total_spend = round(self.total_spend, 2)
        return True

    def top_categories(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.categories.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def _count_category(self, category: str, weight: int) -> None:
        cats = self.categories
        if category not in cats and len(cats) >= MAX_CATEGORIES:
            # Evict the weakest category (ties: alphabetical) so the map stays bounded.
            weakest = min(cats.items(), key=lambda kv: (kv[1], kv[0]))[0]
            del cats[weakest]
        cats[category] = cats.get(category, 0) + weight

    def _add_to_cart(self, item_id: str, qty: int, price: float, category: str | None, ts: int) -> None:
        line = self.cart.get(item_id)
        if line is None:
            if len(self.cart) >= MAX_CART_LINES:
                oldest = min(self.cart.items(), key=lambda kv: kv[1]["added_ms"])[0]
                del self.cart[oldest]
            self.cart[item_id] = {"qty": qty, "price": price, "category": category, "added_ms": ts}
        else:
            line["qty"] += qty
            line["price"] = price or line["price"]

    def _remove_from_cart(self, item_id: str, qty: int) -> None:
        line = self.cart.get(item_id)
        if line is None:
            return
        line["qty"] -= qty
        if line["qty"] <= 0:
            del self.cart[item_id]

    # -- stored form ---------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "id": self.profile_id,
            "counts": self.counts,
            "first_seen_ms": self.first_seen_ms,
            "last_seen_ms": self.last_seen_ms,
            "total_spend": self.total_spend,
            "orders": self.orders,
            "cart": self.cart,
            "categories": self.categories,
            "last_device": self.last_device,
            "last_channel": self.last_channel,
            "last_geo": self.last_geo,
            "positions": self.positions,
            "version": self.version,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Profile:
        if rec.get("v") != RECORD_VERSION:
            raise ProfileRecordError(f"profile record version {rec.get('v')!r}, expected {RECORD_VERSION}")
        try:
            return cls(
                profile_id=rec["id"],
                counts=rec["counts"],
                first_seen_ms=rec["first_seen_ms"],
                last_seen_ms=rec["last_seen_ms"],
                total_spend=rec["total_spend"],
                orders=rec["orders"],
                cart=rec["cart"],
                categories=rec["categories"],
                last_device=rec["last_device"],
                last_channel=rec["last_channel"],
                last_geo=rec["last_geo"],
                positions=rec["positions"],
                version=rec["version"],
            )
        except KeyError as exc:
            raise ProfileRecordError(f"profile record lacks field {exc.args[0]!r}") from exc
