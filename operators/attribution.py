"""Experiment outcomes: exposures joined with later behaviour, per profile and per variant.

A profile's first exposure to an experiment (from ``pulse.exposures``) puts it in the
variant it was shown; from then, within the experiment's attribution window (event time,
``Experiment.window_ms``), its behaviour counts for that variant:

- ``conversion``: the unit purchased at least once (counted once per unit);
- ``revenue``: the sum of its purchases (per unit: the totals keep the sum and the sum of
  squares of per-unit revenue, for Welch's t-test);
- ``click_through``: the unit viewed a product or added one to the cart at least once.

Exposures can arrive after the purchases that followed them (two topics): a profile keeps
its last ``MAX_RECENT_ORDERS`` orders (time, amount) and its last engagement time so a late
exposure credits them. Totals are kept per experiment, variant and UTC day of the change,
so a report can accumulate them day by day (the sequential test looks at every day).

>>> t = Totals()
>>> t.add(Totals(units=1, converted=1, revenue=30.0, revenue_sq=900.0)); t.units, t.revenue
(1, 30.0)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MAX_RECENT_ORDERS = 20
MAX_EXPERIMENTS_PER_PROFILE = 50
DAY_MS = 86_400_000


@dataclass
class Totals:
    units: int = 0  # exposed units
    converted: int = 0  # units that purchased within the window
    engaged: int = 0  # units that viewed or carted a product within the window
    revenue: float = 0.0  # sum of purchases within the window
    revenue_sq: float = 0.0  # sum over units of (unit revenue)^2

    def add(self, other: Totals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_record(self) -> list:
        return [self.units, self.converted, self.engaged, round(self.revenue, 6), round(self.revenue_sq, 6)]

    @classmethod
    def from_record(cls, rec: list) -> Totals:
        return cls(int(rec[0]), int(rec[1]), int(rec[2]), float(rec[3]), float(rec[4]))

    def empty(self) -> bool:
        return not (self.units or self.converted or self.engaged or self.revenue or self.revenue_sq)


def day_of(ts_ms: int) -> int:
    return ts_ms // DAY_MS


Delta = tuple[str, str, int, Totals]  # (experiment id, variant id, day, change)


def on_exposure(profile, exp, variant_id: str, ts_ms: int) -> list[Delta]:
    """The profile was exposed; the first exposure enrols it (later ones change nothing)."""
    state = profile.experiments
    if exp.id in state or len(state) >= MAX_EXPERIMENTS_PER_PROFILE:
        return []
    entry = state[exp.id] = [variant_id, ts_ms, 0, 0.0, 0]  # variant, since, converted, revenue, engaged
    day = day_of(ts_ms)
    deltas = [(exp.id, variant_id, day, Totals(units=1))]
    end = ts_ms + exp.window_ms
    for ts, amount in profile.recent_orders:
        if ts_ms <= ts <= end:
            deltas.extend(_purchase(exp.id, entry, ts, amount))
    if profile.last_engaged_ms and ts_ms <= profile.last_engaged_ms <= end:
        deltas.extend(_engage(exp.id, entry, profile.last_engaged_ms))
    return deltas


def on_event(profile, event, experiments_by_id) -> list[Delta]:
    """An applied event: credit it to every experiment the profile is in, within windows."""
    etype = event.type
    if etype not in ("purchase", "product_view", "add_to_cart"):
        return []
    ts = event.ts_ms
    if etype == "purchase":
        amount = round(sum(line.price * line.quantity for line in event.items), 6)
        orders = profile.recent_orders
        orders.append([ts, amount])
        if len(orders) > MAX_RECENT_ORDERS:
            orders.sort()
            del orders[: len(orders) - MAX_RECENT_ORDERS]
    elif ts > profile.last_engaged_ms:
        profile.last_engaged_ms = ts
    deltas: list[Delta] = []
    for exp_id, entry in profile.experiments.items():
        exp = experiments_by_id.get(exp_id)
        if exp is None or not entry[1] <= ts <= entry[1] + exp.window_ms:
            continue
        deltas.extend(_purchase(exp_id, entry, ts, amount) if etype == "purchase" else _engage(exp_id, entry, ts))
    return deltas


def _purchase(exp_id: str, entry: list, ts: int, amount: float) -> list[Delta]:
    variant, _since, converted, revenue, _engaged = entry
    new_revenue = revenue + amount
    change = Totals(converted=0 if converted else 1, revenue=amount, revenue_sq=new_revenue ** 2 - revenue ** 2)
    entry[2], entry[3] = 1, new_revenue
    return [(exp_id, variant, day_of(ts), change)]


def _engage(exp_id: str, entry: list, ts: int) -> list[Delta]:
    if entry[4]:
        return []
    entry[4] = 1
    return [(exp_id, entry[0], day_of(ts), Totals(engaged=1))]
