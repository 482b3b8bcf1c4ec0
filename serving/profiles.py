"""Profile (stored state) -> ``pulse.v1.Profile`` (wire form). Pure; no I/O.

Consent is reported per purpose as the decision that applies now: the user's latest
explicit choice, or the server's default regime (``Policy.default_consent``).

>>> p = Profile("u1", counts={"page_view": 3}, first_seen_ms=1_700_000_000_250,
...             last_seen_ms=1_700_000_060_000, categories={"tents": 4, "boots": 9, "hats": 4},
...             last_geo={"country": "FR", "city": "Lyon", "lat": None, "lon": None}, version=3)
>>> m = profile_to_proto(p)
>>> m.event_counts["page_view"], m.first_seen.ToMilliseconds(), m.version
(3, 1700000000250, 3)
>>> [(c.category, c.count) for c in m.top_categories]
[('boots', 9), ('hats', 4), ('tents', 4)]
>>> m.last_location.city, m.last_location.HasField("lat"), m.HasField("last_seen")
('Lyon', False, True)
>>> p.consent = {"marketing": [False, 1_700_000_000_000]}
>>> m = profile_to_proto(p, aliases=("user:u1", "anon:a1"), policy=Policy(default_consent=False))
>>> list(m.aliases), m.personalization_allowed
(['anon:a1', 'user:u1'], False)
>>> c = m.consent.marketing
>>> c.granted, c.explicit, c.decided_at.ToMilliseconds(), m.consent.analytics.explicit
(False, True, 1700000000000, False)
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from operators.events import CONSENT_PURPOSES
from operators.profile import DEFAULT_POLICY, Policy, Profile
from proto.pulse.v1 import pulse_pb2

TOP_CATEGORIES = 5
# Every purpose is a field of pulse.v1.Consent (tests/serving checks none is missing).
_CONSENT_FIELDS = tuple(p for p in CONSENT_PURPOSES if p in pulse_pb2.Consent.DESCRIPTOR.fields_by_name)


def _set_timestamp(target: Timestamp, ms: int) -> None:
    seconds, rem = divmod(ms, 1000)
    target.seconds = seconds
    target.nanos = rem * 1_000_000


def _write_consent(target: pulse_pb2.Consent, profile: Profile, policy: Policy) -> None:
    default = policy.default_consent
    target.default_regime = pulse_pb2.CONSENT_REGIME_OPT_OUT if default else pulse_pb2.CONSENT_REGIME_OPT_IN
    stored = profile.consent
    for purpose in _CONSENT_FIELDS:
        decision = getattr(target, purpose)
        got = stored.get(purpose)
        if got is None:
            decision.granted = default
        else:
            decision.granted = bool(got[0])
            decision.explicit = True
            _set_timestamp(decision.decided_at, got[1])


def write_profile(target: pulse_pb2.Profile, profile: Profile, *, aliases: tuple[str, ...] = (),
                  policy: Policy = DEFAULT_POLICY) -> pulse_pb2.Profile:
    """Fill the empty message ``target`` from ``profile`` in place and return it.

    ``aliases`` are the profile's linked aliases (reported sorted); ``policy`` gives the
    default consent regime for purposes the user never decided on.

    Building inside the response (``add()``, nested fields set directly) avoids the
    copies that passing sub-messages to constructors makes: ~18 µs instead of ~24 µs
    for a profile with a small cart, which matters on the request path.
    Unknown values stay unset: timestamps of 0, no location, no lat/lon.
    """
    target.profile_id = profile.profile_id
    target.event_counts.update(profile.counts)
    if profile.last_seen_ms:
        _set_timestamp(target.last_seen, profile.last_seen_ms)
    if profile.first_seen_ms:
        _set_timestamp(target.first_seen, profile.first_seen_ms)
    target.total_spend = profile.total_spend
    target.orders = profile.orders
    cart = profile.cart  # a view computed from the cart log: build it once
    if cart:
        add_line = target.cart.add
        for item_id, line in sorted(cart.items(), key=lambda kv: (kv[1]["added_ms"], kv[0])):
            added = add_line(item_id=item_id, quantity=line["qty"], unit_price=line["price"],
                             category=line.get("category") or "")
            _set_timestamp(added.added_at, line["added_ms"])
    add_category = target.top_categories.add
    for category, count in profile.top_categories(TOP_CATEGORIES):
        add_category(category=category, count=count)
    if profile.last_device:
        target.last_device = profile.last_device
    if profile.last_channel:
        target.last_channel = profile.last_channel
    geo = profile.last_geo
    if geo is not None:
        location = target.last_location
        location.SetInParent()  # present even if every part is empty
        location.country = geo.get("country") or ""
        location.city = geo.get("city") or ""
        if geo.get("lat") is not None and geo.get("lon") is not None:
            location.lat = geo["lat"]
            location.lon = geo["lon"]
    target.version = profile.version
    if aliases:
        target.aliases.extend(sorted(aliases))
    _write_consent(target.consent, profile, policy)
    target.personalization_allowed = profile.allows("personalization", policy)
    if profile.scores:
        target.scores.update(profile.scores)
    return target


def profile_to_proto(profile: Profile, *, aliases: tuple[str, ...] = (),
                     policy: Policy = DEFAULT_POLICY) -> pulse_pb2.Profile:
    """The wire form of ``profile``: cart oldest first, top 5 categories, unset when unknown."""
    return write_profile(pulse_pb2.Profile(), profile, aliases=aliases, policy=policy)
