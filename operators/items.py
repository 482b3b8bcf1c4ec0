"""Per-item statistics learnt from behaviour and from the catalog: popularity and trending
with time decay (cold start, non-personal answers), brand, latent factors and
co-visitation neighbours (``operators.reco``), stock.

Popularity is an exponentially decayed sum of interaction weights by *event time*:
``score(T) = sum(w_i * 2 ** (-(T - t_i) / half_life))``. It is kept as a score at a
reference time; adding an event older or newer than the reference rescales as needed, so
the result does not depend on the order events arrive in. Trending is the same sum with a
one-hour half-life (``trend`` at ``trend_ref_ms``): what is hot now rather than this week.

>>> s = ItemStats("tent-1")
>>> s.observe("purchase", 0, category="outdoor/tents", price=199.0, brand="MSR")
>>> s.observe("product_view", HALF_LIFE_MS)
>>> round(s.popularity(HALF_LIFE_MS), 3)   # 5 halved once, plus 1
3.5
>>> t = ItemStats("tent-1")
>>> t.observe("product_view", HALF_LIFE_MS); t.observe("purchase", 0, category="outdoor/tents", price=199.0)
>>> round(t.popularity(HALF_LIFE_MS), 3) == round(s.popularity(HALF_LIFE_MS), 3)
True
>>> round(s.trending(HALF_LIFE_MS + TREND_HALF_LIFE_MS), 3)   # the view halved once; the purchase is long gone
0.5

Scalar attributes (category, brand, price, stock) follow one rule whether they come from
events or from the catalog: the value with the latest time wins, ties go to the larger
value, so replays and merges in any order agree. A catalog record applied at a newer time
overrides what events said, and an event newer than the catalog overrides it in turn:

>>> s.apply_catalog({"item_id": "tent-1", "brand": "Vango", "in_stock": False}, at_ms=10)
>>> s.brand, s.in_stock
('Vango', False)
>>> s.apply_catalog({"item_id": "tent-1", "brand": "Hilleberg"}, at_ms=-5)   # older: ignored
>>> s.brand
'Vango'
>>> ItemStats.from_record(s.to_record()) == s
True

Memory per item: the v1 fields (~10 scalars), ``factors`` (``dim`` floats: ~570 bytes in
memory and ~320 bytes of JSON at dim 16) and at most ``MAX_NEIGHBORS`` neighbour weights
(when full, with 20-character ids: ~3.6 KB in memory, ~830 bytes of JSON).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HALF_LIFE_MS = 24 * 3600 * 1000
TREND_HALF_LIFE_MS = 3_600_000
WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
RECORD_VERSION = 2
READABLE_VERSIONS = (1, 2)  # v1 lacks brand, trend, factors, neighbors and stock: they start empty
MAX_NEIGHBORS = 60
CATALOG_KEYS = ("item_id", "category", "brand", "price", "in_stock")
MAX_ID_LEN = 128
MAX_STR_LEN = 256
_STOCK_ORDER = {None: -1, False: 0, True: 1}  # tie-break for equal times: True > False > unknown


class CatalogError(ValueError):
    """A catalog line is not a valid catalog record (the message names path:line)."""


@dataclass
class ItemStats:
    # The v1 fields first and in their v1 order: callers construct items positionally.
    item_id: str
    category: str | None = None
    category_ms: int = 0
    price: float = 0.0  # 0.0: unknown
    price_ms: int = 0
    score: float = 0.0  # decayed popularity at ref_ms
    ref_ms: int = 0
    views: int = 0
    carts: int = 0
    purchases: int = 0
    # v2
    brand: str | None = None
    brand_ms: int = 0
    trend: float = 0.0  # decayed popularity with TREND_HALF_LIFE_MS, at trend_ref_ms
    trend_ref_ms: int = 0
    factors: list[float] = field(default_factory=list)  # latent vector (operators.reco); empty until learnt
    neighbors: dict[str, float] = field(default_factory=dict)  # item id -> co-visitation weight
    in_stock: bool | None = None  # None: the catalog never said
    stock_ms: int = 0  # time of the in_stock value
    catalog_ms: int = 0  # time of the newest catalog record applied (0: none)
    # Not stored: the weakest neighbour as ``(neighbors, weight, id)`` (None: not known),
    # so a full list is not searched again for every newcomer (``add_neighbor``).
    _floor: tuple[dict[str, float], float, str] | None = field(default=None, init=False, repr=False, compare=False)

    def observe(self, event_type: str, ts: int, *, quantity: int = 1, category: str | None = None,
                price: float | None = None, brand: str | None = None) -> None:
        weight = WEIGHTS.get(event_type)
        if weight is None:
            return
        if event_type == "product_view":
            self.views += 1
        elif event_type == "add_to_cart":
            self.carts += 1
        else:
            self.purchases += quantity
        weight *= quantity if event_type == "purchase" else 1
        self.score, self.ref_ms = _decayed_add(self.score, self.ref_ms, weight, ts, HALF_LIFE_MS)
        self.trend, self.trend_ref_ms = _decayed_add(self.trend, self.trend_ref_ms, weight, ts, TREND_HALF_LIFE_MS)
        self._set_attributes(ts, category, brand, price)

    def _set_attributes(self, ts: int, category: str | None, brand: str | None, price: float | None) -> None:
        """Latest time wins, ties to the larger value (order independent)."""
        if category is not None and (ts, category) > (self.category_ms, self.category or ""):
            self.category, self.category_ms = category, ts
        if brand is not None and (ts, brand) > (self.brand_ms, self.brand or ""):
            self.brand, self.brand_ms = brand, ts
        if price and (ts, price) > (self.price_ms, self.price):
            self.price, self.price_ms = price, ts

    def apply_catalog(self, record: dict[str, Any], at_ms: int) -> None:
        """Apply a catalog record (as ``parse_catalog_line`` returns) valid from ``at_ms``.

        Each attribute it carries replaces the current one if ``at_ms`` is newer than the
        time that one was set (by an event or an earlier catalog record). A price of 0 is
        "unknown" here, as in events, and changes nothing. Behaviour counters are untouched.
        """
        if record.get("item_id") != self.item_id:
            raise ValueError(f"catalog record for {record.get('item_id')!r} applied to item {self.item_id!r}")
        self._set_attributes(at_ms, record.get("category"), record.get("brand"), record.get("price"))
        stock = record.get("in_stock")
        if stock is not None and (at_ms, _STOCK_ORDER[stock]) > (self.stock_ms, _STOCK_ORDER[self.in_stock]):
            self.in_stock, self.stock_ms = stock, at_ms
        self.catalog_ms = max(self.catalog_ms, at_ms)

    def add_neighbor(self, item_id: str, weight: float) -> None:
        """Add ``weight`` to the co-visitation weight towards ``item_id``. Past
        ``MAX_NEIGHBORS`` the smallest weight is dropped (ties: the smallest id), which
        may be the one just added: a newcomer has to beat the weakest neighbour.

        The weakest is remembered until it changes: weights only grow (an existing
        neighbour's growth changes the weakest only if it was the weakest), so most
        newcomers to a full list are compared with it and dropped without a search."""
        neighbors = self.neighbors
        old = neighbors.get(item_id)
        floor = self._floor
        if floor is not None and floor[0] is not neighbors:
            floor = self._floor = None  # the dict was replaced
        if old is not None and len(neighbors) <= MAX_NEIGHBORS:
            neighbors[item_id] = old + weight
            if floor is not None and (floor[2] == item_id or not weight >= 0):
                self._floor = None
            return
        self._floor = None
        if len(neighbors) < MAX_NEIGHBORS:
            neighbors[item_id] = weight
            return
        if old is not None:  # more than the cap (an older record): the plain rule
            neighbors[item_id] = old + weight
            del neighbors[_weakest(neighbors)[1]]
            return
        if floor is None:
            floor = (neighbors, *_weakest(neighbors))
        if (weight, item_id) < floor[1:]:
            self._floor = floor  # the newcomer is the weakest: nothing changes
            return
        del neighbors[floor[2]]
        neighbors[item_id] = weight

    def popularity(self, at_ms: int) -> float:
        """The decayed popularity at ``at_ms`` (never grows for times after the reference)."""
        return self.score * 2.0 ** (-max(0, at_ms - self.ref_ms) / HALF_LIFE_MS)

    def trending(self, at_ms: int) -> float:
        """Like ``popularity`` with the one-hour half-life."""
        return self.trend * 2.0 ** (-max(0, at_ms - self.trend_ref_ms) / TREND_HALF_LIFE_MS)

    def to_record(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "item_id": self.item_id, "category": self.category,
                "category_ms": self.category_ms, "price": self.price, "price_ms": self.price_ms,
                "score": self.score, "ref_ms": self.ref_ms, "views": self.views, "carts": self.carts,
                "purchases": self.purchases, "brand": self.brand, "brand_ms": self.brand_ms, "trend": self.trend,
                "trend_ref_ms": self.trend_ref_ms, "factors": self.factors, "neighbors": self.neighbors,
                "in_stock": self.in_stock, "stock_ms": self.stock_ms, "catalog_ms": self.catalog_ms}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ItemStats:
        if rec.get("v") not in READABLE_VERSIONS:
            raise ValueError(f"item record version {rec.get('v')!r}, expected one of {READABLE_VERSIONS}")
        return cls(**{k: v for k, v in rec.items() if k != "v"})


def _weakest(neighbors: dict[str, float]) -> tuple[float, str]:
    """The smallest ``(weight, id)`` of ``neighbors`` (not empty), in two C-speed passes
    instead of a key function per entry."""
    weakest = min(neighbors.values())
    return weakest, min(k for k, v in neighbors.items() if v == weakest)


def _decayed_add(score: float, ref_ms: int, weight: float, ts: int, half_life_ms: int) -> tuple[float, int]:
    """Add ``weight`` at ``ts`` to a decayed ``score`` kept at ``ref_ms``; returns the new
    (score, reference). The reference moves forward to the newest event time."""
    if score == 0.0 or ts > ref_ms:
        score = score * 2.0 ** (-(ts - ref_ms) / half_life_ms) if score else 0.0
        ref_ms = max(ts, ref_ms)
    return score + weight * 2.0 ** (-(ref_ms - ts) / half_life_ms), ref_ms


# -- catalog files -------------------------------------------------------------------
def parse_catalog_line(line: bytes, lineno: int, path: str) -> dict[str, Any]:
    """One JSONL catalog line -> a record with ``item_id`` and the attributes given.

    >>> parse_catalog_line(b'{"item_id": " tent-1 ", "price": 199, "in_stock": true}', 3, "cat.jsonl")
    {'item_id': 'tent-1', 'price': 199.0, 'in_stock': True}
    >>> parse_catalog_line(b'{"item_id": "tent-1", "colour": "red"}', 4, "cat.jsonl")
    Traceback (most recent call last):
    ...
    operators.items.CatalogError: cat.jsonl:4: unknown key 'colour' (allowed: item_id, category, brand, price, in_stock)
    """
    where = f"{path}:{lineno}"
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CatalogError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CatalogError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    for key in doc:
        if key not in CATALOG_KEYS:
            raise CatalogError(f"{where}: unknown key {key[:64]!r} (allowed: {', '.join(CATALOG_KEYS)})")
    raw_id = doc.get("item_id")
    if raw_id is None:
        raise CatalogError(f"{where}: missing 'item_id'")
    if not isinstance(raw_id, str) or not raw_id.strip() or len(raw_id) > MAX_ID_LEN:
        raise CatalogError(f"{where}: 'item_id' must be a non-empty string of at most {MAX_ID_LEN} chars")
    out: dict[str, Any] = {"item_id": raw_id.strip()}
    for key in ("category", "brand"):
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_STR_LEN:
            raise CatalogError(f"{where}: {key!r} must be a non-empty string of at most {MAX_STR_LEN} chars")
        out[key] = value.strip()
    price = doc.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price):
            raise CatalogError(f"{where}: 'price' must be a number, got {orjson.dumps(price).decode()[:64]}")
        if price < 0:
            raise CatalogError(f"{where}: 'price' must not be negative, got {price}")
        out["price"] = float(price)
    stock = doc.get("in_stock")
    if stock is not None:
        if not isinstance(stock, bool):
            raise CatalogError(f"{where}: 'in_stock' must be true or false, got {orjson.dumps(stock).decode()[:64]}")
        out["in_stock"] = stock
    return out


def load_catalog(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL catalog file (blank lines skipped). Raises ``CatalogError``
    at the first bad line, or when an item id appears twice (a catalog lists an item once)."""
    name = str(path)
    records: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rec = parse_catalog_line(line, lineno, name)
            seen = first_line.setdefault(rec["item_id"], lineno)
            if seen != lineno:
                raise CatalogError(f"{name}:{lineno}: item {rec['item_id']!r} already listed on line {seen}")
            records.append(rec)
    return records
