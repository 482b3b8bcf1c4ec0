"""Per-item statistics learnt from behaviour: popularity with time decay, for cold start
and non-personal answers.

Popularity is an exponentially decayed sum of interaction weights by *event time*:
``score(T) = sum(w_i * 2 ** (-(T - t_i) / half_life))``. It is kept as a score at a
reference time; adding an event older or newer than the reference rescales as needed, so
the result does not depend on the order events arrive in.

>>> s = ItemStats("tent-1")
>>> s.observe("purchase", 0, category="outdoor/tents", price=199.0)
>>> s.observe("product_view", HALF_LIFE_MS)
>>> round(s.popularity(HALF_LIFE_MS), 3)   # 5 halved once, plus 1
3.5
>>> t = ItemStats("tent-1")
>>> t.observe("product_view", HALF_LIFE_MS); t.observe("purchase", 0, category="outdoor/tents", price=199.0)
>>> round(t.popularity(HALF_LIFE_MS), 3) == round(s.popularity(HALF_LIFE_MS), 3)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HALF_LIFE_MS = 24 * 3600 * 1000
WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
RECORD_VERSION = 1


@dataclass
class ItemStats:
    item_id: str
    category: str | None = None
    category_ms: int = 0
    price: float = 0.0
    price_ms: int = 0
    score: float = 0.0  # decayed popularity at ref_ms
    ref_ms: int = 0
    views: int = 0
    carts: int = 0
    purchases: int = 0

    def observe(self, event_type: str, ts: int, *, quantity: int = 1, category: str | None = None,
                price: float | None = None) -> None:
        weight = WEIGHTS.get(event_type)
        if weight is None:
            return
        if event_type == "product_view":
            self.views += 1
        elif event_type == "add_to_cart":
            self.carts += 1
        else:
            self.purchases += quantity
        self._add(weight * (quantity if event_type == "purchase" else 1), ts)
        if category is not None and (ts, category) > (self.category_ms, self.category or ""):
            self.category, self.category_ms = category, ts
        if price and (ts, price) > (self.price_ms, self.price):
            self.price, self.price_ms = price, ts

    def _add(self, weight: float, ts: int) -> None:
        if self.score == 0.0 or ts > self.ref_ms:
            # Move the reference forward to the newer event time.
            self.score = self.score * 2.0 ** (-(ts - self.ref_ms) / HALF_LIFE_MS) if self.score else 0.0
            self.ref_ms = max(ts, self.ref_ms)
        self.score += weight * 2.0 ** (-(self.ref_ms - ts) / HALF_LIFE_MS)

    def popularity(self, at_ms: int) -> float:
        """The decayed popularity at ``at_ms`` (never grows for times after the reference)."""
        return self.score * 2.0 ** (-max(0, at_ms - self.ref_ms) / HALF_LIFE_MS)

    def to_record(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "item_id": self.item_id, "category": self.category,
                "category_ms": self.category_ms, "price": self.price, "price_ms": self.price_ms,
                "score": self.score, "ref_ms": self.ref_ms, "views": self.views, "carts": self.carts,
                "purchases": self.purchases}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ItemStats:
        if rec.get("v") != RECORD_VERSION:
            raise ValueError(f"item record version {rec.get('v')!r}, expected {RECORD_VERSION}")
        return cls(**{k: v for k, v in rec.items() if k != "v"})
