"""A deterministic synthetic retail clickstream (for the demo, benchmarks and tests).

Users have a home city, a preferred device and channel, and favourite categories;
activity is skewed (a few users are very active). Each user moves through sessions:
land on a page, search, view products mostly in favourite categories, add some to the
cart, sometimes remove one, sometimes buy. About ``invalid_rate`` of the records are
deliberately malformed, so the dead-letter path is exercised too.

>>> gen = ClickstreamGenerator(seed=7, users=50)
>>> a = [gen.next_record(1796205600000 + i) for i in range(3)]
>>> again = ClickstreamGenerator(seed=7, users=50)
>>> a == [again.next_record(1796205600000 + i) for i in range(3)]
True
>>> ClickstreamGenerator(seed=8, users=50).next_record(1796205600000) == a[0]
False
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

# category -> (price low, price high)
CATEGORIES: dict[str, tuple[float, float]] = {
    "outdoor/tents": (80, 600),
    "outdoor/hiking-boots": (60, 250),
    "outdoor/backpacks": (40, 300),
    "apparel/jackets": (50, 400),
    "apparel/t-shirts": (10, 40),
    "electronics/headphones": (20, 350),
    "electronics/phones": (150, 1200),
    "home/kitchen": (10, 200),
    "home/furniture": (80, 1500),
    "beauty/skincare": (8, 90),
    "grocery/coffee": (5, 30),
    "toys/lego": (15, 250),
}
# (city, country, lat, lon, urban)
CITIES = (
    ("Berlin", "DE", 52.52, 13.405, True),
    ("Munich", "DE", 48.137, 11.575, True),
    ("Lyon", "FR", 45.764, 4.835, True),
    ("Paris", "FR", 48.857, 2.352, True),
    ("Chamonix", "FR", 45.924, 6.869, False),
    ("Amsterdam", "NL", 52.37, 4.895, True),
    ("Hallstatt", "AT", 47.562, 13.649, False),
    ("Madrid", "ES", 40.417, -3.704, True),
    ("Bergen", "NO", 60.391, 5.322, True),
    ("Aviemore", "GB", 57.195, -3.826, False),
)
DEVICES = ("mobile", "desktop", "tablet")
CHANNELS = ("web", "app", "email", "chatbot")
SEARCHES = ("tent 2 person", "waterproof boots", "noise cancelling", "coffee beans", "lego castle", "rain jacket")
ITEMS_PER_CATEGORY = 40
# Brands per top-level category; an item's brand follows from its index (no randomness).
BRANDS = {
    "outdoor": ("Fjallraven", "Salomon", "Deuter", "MSR"),
    "apparel": ("Patagonia", "Uniqlo", "Levi's"),
    "electronics": ("Sony", "Bose", "Samsung", "Apple"),
    "home": ("IKEA", "Muji", "Le Creuset"),
    "beauty": ("Nivea", "CeraVe"),
    "grocery": ("Lavazza", "Illy"),
    "toys": ("LEGO",),
}
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
INCOME_BANDS = ("low", "middle", "high")


@dataclass
class _User:
    user_id: str
    anonymous_id: str
    known: bool  # has logged in (sends user_id) or is still anonymous
    city: tuple
    device: str
    channel: str
    favourites: tuple[str, ...]
    step: int = 0  # position in the current session
    category: str = ""


class ClickstreamGenerator:
    def __init__(self, seed: int = 7, users: int = 1000, invalid_rate: float = 0.005) -> None:
        self._rng = random.Random(seed)
        self._invalid_rate = invalid_rate
        self._seq = 0
        self._seed = seed
        cats = list(CATEGORIES)
        rng = self._rng
        self._users = [
            _User(
                user_id=f"u{i:06d}",
                anonymous_id=f"anon-{seed}-{i:06d}",
                known=rng.random() < 0.6,
                city=rng.choice(CITIES),
                device=rng.choices(DEVICES, (6, 3, 1))[0],
                channel=rng.choices(CHANNELS, (6, 3, 1, 1))[0],
                favourites=tuple(rng.sample(cats, 3)),
            )
            for i in range(users)
        ]
        # Skewed activity: weight 1/(rank+1)^0.8.
        self._weights = [1.0 / (i + 1) ** 0.8 for i in range(users)]
        self._cum = []
        total = 0.0
        for w in self._weights:
            total += w
            self._cum.append(total)

    def next_record(self, now_ms: int) -> tuple[bytes, bytes]:
        """The next record as (key, value) bytes; value is usually a valid event."""
        rng = self._rng
        self._seq += 1
        user = self._users[self._pick_user()]
        event = self._next_event(user, now_ms)
        key = (event.get("user_id") or event.get("anonymous_id")).encode()
        if rng.random() < self._invalid_rate:
            return key, self._corrupt(event)
        return key, orjson.dumps(event)

    def _pick_user(self) -> int:
        x = self._rng.random() * self._cum[-1]
        lo, hi = 0, len(self._cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._cum[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _next_event(self, user: _User, now_ms: int) -> dict:
        rng = self._rng
        base = {
            "event_id": f"gen-{self._seed}-{self._seq}",
            "timestamp": now_ms,
            "context": {
                "device": user.device,
                "channel": user.channel,
                "geo": {"country": user.city[1], "city": user.city[0], "lat": user.city[2], "lon": user.city[3],
                        "urban": user.city[4]},
            },
        }
        if user.known:
            base["user_id"] = user.user_id
        else:
            base["anonymous_id"] = user.anonymous_id
        if user.step == 0:
            user.category = rng.choice(user.favourites) if rng.random() < 0.8 else rng.choice(list(CATEGORIES))
            user.step = 1
            if not user.known and rng.random() < 0.1:
                user.known = True
                return {**base, "type": "login", "user_id": user.user_id, "anonymous_id": user.anonymous_id,
                        "traits": _traits(user)}
            if rng.random() < 0.3:
                return {**base, "type": "search", "query": rng.choice(SEARCHES)}
            return {**base, "type": "page_view"}
        user.step += 1
        item, price = self._item(user.category)
        roll = rng.random()
        if roll < 0.62:
            return {**base, "type": "product_view", "item_id": item, "category": user.category, "price": price,
                    "brand": brand_of(item)}
        if roll < 0.82:
            return {**base, "type": "add_to_cart", "item_id": item, "category": user.category, "price": price,
                    "quantity": rng.choices((1, 2, 3), (8, 2, 1))[0], "brand": brand_of(item)}
        if roll < 0.86:
            return {**base, "type": "remove_from_cart", "item_id": item, "category": user.category}
        user.step = 0  # the session ends: with a purchase or by leaving
        if roll < 0.93:
            lines = [{"item_id": item, "category": user.category, "price": price, "quantity": 1,
                      "brand": brand_of(item)}]
            if rng.random() < 0.3:
                other, other_price = self._item(rng.choice(user.favourites))
                lines.append({"item_id": other, "price": other_price, "quantity": 1,
                              "category": other.split(":")[0], "brand": brand_of(other)})
            return {**base, "type": "purchase", "items": lines}
        return {**base, "type": "page_view"}

    def _item(self, category: str) -> tuple[str, float]:
        lo, hi = CATEGORIES[category]
        n = self._rng.randrange(ITEMS_PER_CATEGORY)
        # Each item has a stable price derived from its index.
        price = round(lo + (hi - lo) * ((n * 7919) % ITEMS_PER_CATEGORY) / ITEMS_PER_CATEGORY, 2)
        return f"{category}:{n:03d}", price

    def _corrupt(self, event: dict) -> bytes:
        kind = self._rng.randrange(4)
        if kind == 0:
            return orjson.dumps(event)[:-7]  # truncated JSON
        if kind == 1:
            return orjson.dumps({**event, "type": "teleport"})
        if kind == 2:
            return orjson.dumps({**event, "timestamp": "yesterday"})
        bad = dict(event)
        bad.pop("event_id")
        return orjson.dumps(bad)


def brand_of(item_id: str) -> str:
    """The synthetic brand of an item id (``<category>:<n>``)."""
    category, _, n = item_id.partition(":")
    brands = BRANDS[category.split("/", 1)[0]]
    return brands[int(n) % len(brands)]


def _traits(user: _User) -> dict:
    """Profile attributes a login sends, fixed per user (derived from the id, not drawn)."""
    n = int(user.user_id[1:])
    return {"age_band": AGE_BANDS[n * 7 % len(AGE_BANDS)], "gender": ("f", "m", "x")[n * 11 % 3],
            "income_band": INCOME_BANDS[n * 13 % len(INCOME_BANDS)]}
