"""The Pulse event model (schema version 1): parse raw bytes, validate, normalize.

An event is one JSON object (UTF-8). Fields:

==============  ========  ==========================================================
field           required  meaning
==============  ========  ==========================================================
event_id        yes       string, 1..128 chars, unique per event (dedupe key)
type            yes       one of ``EVENT_TYPES``
user_id         one of    string, 1..128 chars: the known customer id
anonymous_id    one of    string, 1..128 chars: cookie / app-install id
device_id       one of    string, 1..128 chars: a device identifier
email           one of    string: an email address (hashed at ingestion, never stored raw)
phone           no        string: a phone number (hashed at ingestion, never stored raw)
consent         see note  ``consent_update`` only: object purpose -> bool, purposes in
                          ``CONSENT_PURPOSES``
timestamp       yes       event time: ISO-8601 with a UTC offset, or epoch ms (int)
item_id         see note  string: the product the event is about
category        no        string: the product category, e.g. ``outdoor/tents``
brand           no        string: the product brand
price           see note  number >= 0: unit price
quantity        no        integer >= 1 (default 1)
items           no        purchases only: list of ``{item_id, category, brand, price, quantity}``
traits          no        ``login`` / ``identify`` / ``profile_update`` only: profile attributes
                          (e.g. ``age_band``, ``gender``, ``income_band``): at most
                          ``MAX_TRAITS`` keys (identifiers), values strings, numbers or bools
query           no        searches: the search string
context         no        object: ``device`` (string), ``channel`` (string),
                          ``geo`` (object: ``country``, ``city`` strings; ``lat``, ``lon``
                          numbers in range; ``urban`` bool)
==============  ========  ==========================================================

"one of": at least one of user_id, anonymous_id, device_id, email. Note:
``product_view``, ``add_to_cart`` and ``remove_from_cart`` need ``item_id``;
``purchase`` needs either ``items`` or ``item_id`` with ``price``. Unknown top-level
fields are ignored (never stored). A timestamp more than ``ParseOptions.max_future_skew_ms``
(default 5 min) in the future of the ingestion time is rejected.

>>> e = parse_event(b'{"event_id":"e1","type":"add_to_cart","user_id":"u1",'
...                 b'"timestamp":"2026-11-27T10:00:00Z","item_id":"sku-1","price":9.5}')
>>> e.profile_key, e.type, e.items[0].item_id, e.ts_ms
('user:u1', 'add_to_cart', 'sku-1', 1795773600000)
>>> e.aliases
('user:u1',)
>>> parse_event(b'{"event_id":"e1","type":"teleport","user_id":"u1","timestamp":0}')
InvalidEvent(reason='unknown_type', detail="type 'teleport' is not one of: ...")
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from operators.pii import hash_email, hash_phone

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "login",
    "identify",
    "profile_update",
    "consent_update",
)
_EVENT_TYPE_SET = frozenset(EVENT_TYPES)
_NEEDS_ITEM = frozenset(("product_view", "add_to_cart", "remove_from_cart"))
MAX_ID_LEN = 128
MAX_STR_LEN = 256
MAX_EVENT_BYTES = 64 * 1024
MAX_ITEMS = 200
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
CONSENT_PURPOSES = ("analytics", "personalization", "marketing")
# 2000-01-01T00:00:00Z: anything earlier is a unit mistake (seconds instead of ms).
MIN_TS_MS = 946_684_800_000
MAX_TRAITS = 32
_TRAIT_EVENTS = frozenset(("login", "identify", "profile_update"))


@dataclass(frozen=True, slots=True)
class LineItem:
    item_id: str
    category: str | None
    price: float
    quantity: int
    brand: str | None = None


@dataclass(frozen=True, slots=True)
class Geo:
    country: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    urban: bool | None = None


@dataclass(frozen=True, slots=True)
class Context:
    device: str | None = None
    channel: str | None = None
    geo: Geo | None = None


@dataclass(frozen=True)
class ParseOptions:
    """Ingestion settings: the PII hashing secret and the allowed clock skew."""

    pii_key: bytes = b""
    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS


DEFAULT_OPTIONS = ParseOptions()


@dataclass(frozen=True, slots=True)
class Event:
    """A validated, normalized event. PII fields hold keyed hashes, never raw values."""

    event_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    ts_ms: int
    items: tuple[LineItem, ...]
    query: str | None
    context: Context
    device_id: str | None = None
    email_hash: str | None = None
    phone_hash: str | None = None
    consent: tuple[tuple[str, bool], ...] = field(default=())
    traits: tuple[tuple[str, str | float | bool], ...] = field(default=())

    @property
    def aliases(self) -> tuple[str, ...]:
        """Typed identifiers of this event's person, strongest first (see ``operators.identity``)."""
        out = []
        if self.user_id is not None:
            out.append("user:" + self.user_id)
        if self.email_hash is not None:
            out.append("email:" + self.email_hash)
        if self.phone_hash is not None:
            out.append("phone:" + self.phone_hash)
        if self.device_id is not None:
            out.append("device:" + self.device_id)
        if self.anonymous_id is not None:
            out.append("anon:" + self.anonymous_id)
        return tuple(out)

    @property
    def profile_key(self) -> str:
        """The strongest alias; identity resolution maps it to the profile id."""
        return self.aliases[0]


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """Why a record is not an event. ``reason`` is a short stable code (a metric label)."""

    reason: str
    detail: str


EventOrError = Event | InvalidEvent

INVALID_REASONS = (
    "too_large",
    "bad_encoding",
    "not_json",
    "not_object",
    "missing_field",
    "bad_field",
    "unknown_type",
    "bad_timestamp",
    "too_late",  # assigned by the flow: older than its partition's watermark minus the lateness
)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_event(raw: bytes | None, now_ms: int | None = None, options: ParseOptions = DEFAULT_OPTIONS) -> EventOrError:
    """Parse and validate one raw record. Never raises for bad input."""
    if raw is None:
        return InvalidEvent("not_json", "empty record (no value)")
    if len(raw) > MAX_EVENT_BYTES:
        return InvalidEvent("too_large", f"record is {len(raw)} bytes, limit {MAX_EVENT_BYTES}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "utf-8" in str(exc).lower() or "surrogate" in str(exc).lower():
            return InvalidEvent("bad_encoding", f"record is not valid UTF-8: {exc}")
        return InvalidEvent("not_json", f"invalid JSON: {exc}")
    if not isinstance(doc, dict):
        return InvalidEvent("not_object", f"expected a JSON object, got {type(doc).__name__}")
    try:
        return _validate(doc, now_ms, options)
    except _Reject as rej:
        return InvalidEvent(rej.reason, rej.detail)
    except RecursionError:
        return InvalidEvent("bad_field", "document is nested too deeply")


def _pii(doc: dict[str, Any], field: str) -> str | None:
    value = doc.get(field)
    if value is None:
        return None
    # Never echo a PII value in an error message: it would reach the DLQ headers and logs.
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_STR_LEN:
        raise _Reject("bad_field", f"field {field!r} must be a non-empty string of at most {MAX_STR_LEN} chars")
    if field == "email" and "@" not in value:
        raise _Reject("bad_field", "field 'email' is not an email address")
    if field == "phone" and sum(ch.isdigit() for ch in value) < 4:
        raise _Reject("bad_field", "field 'phone' has too few digits")
    return value


def _consent(doc: dict[str, Any], etype: str) -> tuple[tuple[str, bool], ...]:
    raw = doc.get("consent")
    if raw is None:
        if etype == "consent_update":
            raise _Reject("missing_field", "consent_update needs 'consent': {purpose: true|false}")
        return ()
    if etype != "consent_update":
        raise _Reject("bad_field", "field 'consent' is only allowed on consent_update events")
    if not isinstance(raw, dict) or not raw:
        raise _Reject("bad_field", "field 'consent' must be a non-empty object of purpose: true|false")
    out = []
    for purpose, granted in raw.items():
        if purpose not in CONSENT_PURPOSES:
            raise _Reject("bad_field", f"consent purpose {purpose[:32]!r} is not one of: {', '.join(CONSENT_PURPOSES)}")
        if not isinstance(granted, bool):
            raise _Reject("bad_field", f"consent.{purpose} must be true or false")
        out.append((purpose, granted))
    return tuple(sorted(out))


def _validate(doc: dict[str, Any], now_ms: int | None, options: ParseOptions) -> Event:
    event_id = _id(doc, "event_id", required=True)
    etype = doc.get("type")
    if etype is None:
        raise _Reject("missing_field", "field 'type' is required")
    if not isinstance(etype, str) or etype not in _EVENT_TYPE_SET:  # a list/dict is unhashable
        shown = repr(etype[:64]) if isinstance(etype, str) else f"of JSON type {type(etype).__name__}"
        raise _Reject("unknown_type", f"type {shown} is not one of: {', '.join(EVENT_TYPES)}")
    user_id = _id(doc, "user_id")
    anonymous_id = _id(doc, "anonymous_id")
    device_id = _id(doc, "device_id")
    email = _pii(doc, "email")
    phone = _pii(doc, "phone")
    if user_id is None and anonymous_id is None and device_id is None and email is None:
        raise _Reject("missing_field", "one of 'user_id', 'anonymous_id', 'device_id' or 'email' is required")
    ts_ms = _timestamp(doc.get("timestamp"), now_ms, options.max_future_skew_ms)
    items = _items(doc, etype)
    query = _opt_str(doc, "query", doc.get("query"))
    consent = _consent(doc, etype)
    traits = _traits(doc, etype)
    key = options.pii_key
    return Event(event_id, etype, user_id, anonymous_id, ts_ms, items, query, _context(doc.get("context")),
                 device_id,
                 None if email is None else hash_email(email, key),
                 None if phone is None else hash_phone(phone, key),
                 consent, traits)


def _traits(doc: dict[str, Any], etype: str) -> tuple[tuple[str, str | float | bool], ...]:
    raw = doc.get("traits")
    if raw is None:
        return ()
    if etype not in _TRAIT_EVENTS:
        raise _Reject("bad_field", "field 'traits' is only allowed on login, identify and profile_update events")
    if not isinstance(raw, dict):
        raise _Reject("bad_field", "field 'traits' must be an object")
    if len(raw) > MAX_TRAITS:
        raise _Reject("bad_field", f"field 'traits' has more than {MAX_TRAITS} keys")
    out = []
    for name, value in raw.items():
        if not (name.isidentifier() and len(name) <= 64):
            raise _Reject("bad_field", f"trait name {name[:64]!r} must be an identifier of at most 64 chars")
        if name in ("email", "phone"):
            raise _Reject("bad_field", f"trait {name!r} is PII: send it as the top-level field instead")
        if isinstance(value, bool):
            out.append((name, value))
        elif isinstance(value, (int, float)):
            out.append((name, _number(f"traits.{name}", value, -1e15, 1e15)))
        elif isinstance(value, str):
            out.append((name, _opt_str(raw, f"traits.{name}", value) or ""))
        else:
            raise _Reject("bad_field", f"trait {name!r} must be a string, number or bool")
    return tuple(sorted(out))


def _id(doc: dict[str, Any], field: str, required: bool = False) -> str | None:
    value = doc.get(field)
    if value is None:
        if required:
            raise _Reject("missing_field", f"field {field!r} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _Reject("bad_field", f"field {field!r} must be a non-empty string")
    if len(value) > MAX_ID_LEN:
        raise _Reject("bad_field", f"field {field!r} is longer than {MAX_ID_LEN} chars")
    return value.strip()


def _opt_str(doc: dict[str, Any], field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject("bad_field", f"field {field!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_STR_LEN:
        raise _Reject("bad_field", f"field {field!r} is longer than {MAX_STR_LEN} chars")
    return value.strip() or None


def _number(field: str, value: Any, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Reject("bad_field", f"field {field!r} must be a number")
    if not (lo <= value <= hi):
        raise _Reject("bad_field", f"field {field!r} = {value} is outside [{lo}, {hi}]")
    return float(value)


def _timestamp(value: Any, now_ms: int | None, max_skew_ms: int = MAX_FUTURE_SKEW_MS) -> int:
    if value is None:
        raise _Reject("missing_field", "field 'timestamp' is required")
    if isinstance(value, bool):
        raise _Reject("bad_timestamp", "timestamp must be an ISO-8601 string or epoch milliseconds")
    if isinstance(value, int):
        ts_ms = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _Reject("bad_timestamp", f"timestamp {value[:64]!r} is not ISO-8601") from None
        if parsed.tzinfo is None:
            raise _Reject("bad_timestamp", f"timestamp {value[:64]!r} has no UTC offset")
        ts_ms = int(parsed.timestamp() * 1000)
    else:
        raise _Reject("bad_timestamp", "timestamp must be an ISO-8601 string or epoch milliseconds")
    if ts_ms < MIN_TS_MS:
        raise _Reject("bad_timestamp", f"timestamp {ts_ms} is before 2000-01-01 (seconds instead of ms?)")
    if now_ms is not None and ts_ms > now_ms + max_skew_ms:
        raise _Reject("bad_timestamp", f"timestamp {ts_ms} is more than {max_skew_ms} ms in the future of ingestion")
    return ts_ms


def _line(prefix: str, src: dict[str, Any], need_price: bool) -> LineItem:
    raw_id = src.get("item_id")
    if raw_id is None:
        raise _Reject("missing_field", f"field '{prefix}item_id' is required")
    if not isinstance(raw_id, str) or not raw_id.strip() or len(raw_id) > MAX_ID_LEN:
        raise _Reject("bad_field", f"field '{prefix}item_id' must be a string of 1..{MAX_ID_LEN} chars")
    item_id = raw_id.strip()
    category = _opt_str(src, f"{prefix}category", src.get("category"))
    brand = _opt_str(src, f"{prefix}brand", src.get("brand"))
    price_raw = src.get("price")
    if price_raw is None:
        if need_price:
            raise _Reject("missing_field", f"field '{prefix}price' is required")
        price = 0.0
    else:
        price = _number(f"{prefix}price", price_raw, 0.0, 1e9)
    qty_raw = src.get("quantity", 1)
    if isinstance(qty_raw, bool) or not isinstance(qty_raw, int) or not 1 <= qty_raw <= 10_000:
        raise _Reject("bad_field", f"field '{prefix}quantity' must be an integer in [1, 10000]")
    return LineItem(item_id, category, price, qty_raw, brand)


def _items(doc: dict[str, Any], etype: str) -> tuple[LineItem, ...]:
    lines = doc.get("items")
    if lines is not None:
        if etype != "purchase":
            raise _Reject("bad_field", "field 'items' is only allowed on purchase events")
        if not isinstance(lines, list) or not lines:
            raise _Reject("bad_field", "field 'items' must be a non-empty list")
        if len(lines) > MAX_ITEMS:
            raise _Reject("bad_field", f"field 'items' has more than {MAX_ITEMS} lines")
        out = []
        for i, line in enumerate(lines):
            if not isinstance(line, dict):
                raise _Reject("bad_field", f"items[{i}] must be an object")
            out.append(_line(f"items[{i}].", line, need_price=True))
        return tuple(out)
    if etype == "purchase":
        if doc.get("item_id") is None:
            raise _Reject("missing_field", "purchase needs 'items' or 'item_id' with 'price'")
        return (_line("", doc, need_price=True),)
    if etype in _NEEDS_ITEM or doc.get("item_id") is not None:
        return (_line("", doc, need_price=False),)
    return ()


_EMPTY_CONTEXT = Context()
_CONTEXT_CACHE: dict[tuple, Context] = {}
_CONTEXT_CACHE_MAX = 4096


def _context(ctx: Any) -> Context:
    """Validate a context. A user sends the same context again and again, so valid ones
    are kept (bounded) by their raw values and validated once."""
    if ctx is None:
        return _EMPTY_CONTEXT
    if not isinstance(ctx, dict):
        raise _Reject("bad_field", "field 'context' must be an object")
    geo_raw = ctx.get("geo")
    if type(geo_raw) is dict:
        lat, lon = geo_raw.get("lat"), geo_raw.get("lon")
        # The types too: True == 1 in a tuple, but only the number is a valid latitude.
        urban = geo_raw.get("urban")
        key: tuple = (ctx.get("device"), ctx.get("channel"), geo_raw.get("country"), geo_raw.get("city"),
                      lat, lon, type(lat), type(lon), urban, type(urban))
    else:
        key = (ctx.get("device"), ctx.get("channel"), geo_raw)
    try:
        hit = _CONTEXT_CACHE.get(key)
    except TypeError:  # an unhashable (hence invalid) value: the full check reports it
        hit = None
    if hit is not None:
        return hit
    result = _validate_context(ctx, geo_raw)
    if len(_CONTEXT_CACHE) >= _CONTEXT_CACHE_MAX:
        _CONTEXT_CACHE.clear()
    _CONTEXT_CACHE[key] = result
    return result


def _validate_context(ctx: dict[str, Any], geo_raw: Any) -> Context:
    geo = None
    if geo_raw is not None:
        if not isinstance(geo_raw, dict):
            raise _Reject("bad_field", "field 'context.geo' must be an object")
        lat = geo_raw.get("lat")
        lon = geo_raw.get("lon")
        if (lat is None) != (lon is None):
            raise _Reject("bad_field", "fields 'context.geo.lat' and 'context.geo.lon' go together")
        geo = Geo(
            country=_opt_str(geo_raw, "context.geo.country", geo_raw.get("country")),
            city=_opt_str(geo_raw, "context.geo.city", geo_raw.get("city")),
            lat=None if lat is None else _number("context.geo.lat", lat, -90.0, 90.0),
            lon=None if lon is None else _number("context.geo.lon", lon, -180.0, 180.0),
            urban=_opt_bool("context.geo.urban", geo_raw.get("urban")),
        )
    return Context(
        device=_opt_str(ctx, "context.device", ctx.get("device")),
        channel=_opt_str(ctx, "context.channel", ctx.get("channel")),
        geo=geo,
    )


def _opt_bool(field: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _Reject("bad_field", f"field {field!r} must be true or false")
