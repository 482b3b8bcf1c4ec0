"""Online learning for hybrid recommendations: latent factors learnt per interaction
(matrix factorization), item-to-item co-visitation, and the content affinities the
server ranks with. Pure: no I/O; the flow owns the state and persists what changed.

Per product interaction the flow (after ``Profile.apply``, which put the event's lines
into ``profile.recent``) calls ``MatrixFactorization.learn`` with negatives drawn from a
``NegativePool``, then ``co_visit``. Both change ``ItemStats`` records in place: the
positive item, the negatives and the neighbours all need writing back.

>>> from operators.items import ItemStats
>>> from operators.profile import Profile
>>> mf = MatrixFactorization(dim=4)
>>> user, tent = Profile("user:u1"), ItemStats("tent-1")
>>> others = [ItemStats("mug-1"), ItemStats("sock-1")]
>>> for _ in range(20):
...     mf.learn(user, tent, INTERACTION_WEIGHTS["purchase"], others)
>>> mf.score(user.factors, tent.factors) > max(mf.score(user.factors, o.factors) for o in others)
True
>>> mf.init("tent-1") == MatrixFactorization(dim=4).init("tent-1")   # the same in every process
True

Co-visitation: the current interaction (last in ``recent``) and the ones shortly before
it in the same session become each other's neighbours:

>>> items = {}
>>> get = lambda i: items.setdefault(i, ItemStats(i))
>>> recent = [[0, "tent-1", "product_view"], [60_000, "mat-1", "product_view"], [90_000, "tent-1", "add_to_cart"]]
>>> sorted(co_visit(recent, get))
['mat-1', 'tent-1']
>>> items["tent-1"].neighbors, items["mat-1"].neighbors
({'mat-1': 1.0}, {'tent-1': 1.0})

Costs (measured on one core, Python 3.11, dim 16, by an ad-hoc timing loop): ``learn``
with 2 negatives ~30 µs (plain lists: numpy's per-call overhead made it ~75 µs at this
size), ``co_visit`` over a full ``recent`` (10 entries, window 5) ~8 µs, ~12 µs when
the neighbour maps are full and evict; ``NegativePool.sample(2, ...)`` ~1.6 µs, ``add``
~0.15 µs. Memory: ``dim`` floats per profile and per item (16 floats: ~570 bytes in
memory, ~320 bytes of JSON); per item at most ``MAX_NEIGHBORS`` neighbour weights
(30 with 20-character ids: ~3.6 KB in memory, ~830 bytes of JSON); the pool holds
``size`` references to id strings (~16 KB of list at 2000, the strings are shared).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable
from operator import mul
from typing import TYPE_CHECKING

import numpy as np

from operators.items import ItemStats
from operators.profile import PRICE_TASTE_SCALE

if TYPE_CHECKING:
    from operators.profile import Profile

INTERACTION_WEIGHTS = {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
# Co-visitation: a pair weighs as its weaker interaction; two purchases in one session
# ("bought together") weigh more than anything else.
CO_VISIT_WEIGHTS = {"product_view": 1.0, "add_to_cart": 2.0, "purchase": 3.0}
BOUGHT_TOGETHER_WEIGHT = 6.0
MAX_WEIGHT = 10.0  # interaction weights above this are clipped
MAX_GRAD = 5.0  # per-vector gradient norm bound
MAX_NORM = 5.0  # factor vectors are scaled back into this ball after each step
_U32 = struct.Struct(">16I")
_TWO32 = float(2**32)


class MatrixFactorization:
    """Implicit-feedback matrix factorization learnt one interaction at a time.

    Objective: BPR (Bayesian personalized ranking), pairwise. For a user ``u`` who
    interacted with item ``i`` and a sampled item ``j`` they did not, one SGD step on
    ``weight * -log(sigmoid(u . (v_i - v_j))) + regularization/2 * |params|^2``.
    Chosen over pointwise (target 1 / 0) because (a) only the order of scores matters to
    ranking, and the pairwise loss needs no calibration of unobserved items as "0"
    (many are merely unseen); (b) its gradient factor ``sigmoid(-x)`` lies in (0, 1), so
    a step is never larger than ``learning_rate * weight * |v|``: with the bounds below
    it cannot run away, whatever the data.

    Numerics: weights that are not finite or not positive are ignored, others clipped
    to ``MAX_WEIGHT``; each gradient's norm is clipped to ``MAX_GRAD``; every vector is
    scaled back to norm ``MAX_NORM`` if it grows past it; a stored vector that is not
    finite or not of length ``dim`` is re-initialised. A step whose result is not finite
    is dropped. NaN is never stored.

    Vectors are plain lists (``Profile.factors``, ``ItemStats.factors``), initialised by
    ``init(id)``: uniform in ``±init_scale*sqrt(3)`` (std ``init_scale``) from a BLAKE2b
    hash of the id, so every process starts an id from the same vector.
    """

    def __init__(self, dim: int = 16, learning_rate: float = 0.05, regularization: float = 0.01, negatives: int = 2,
                 init_scale: float = 0.1) -> None:
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
        if not (regularization >= 0 and math.isfinite(regularization)):
            raise ValueError(f"regularization must be a non-negative number, got {regularization}")
        if negatives < 1:
            raise ValueError(f"negatives must be at least 1, got {negatives}")
        if not (init_scale > 0 and math.isfinite(init_scale)):
            raise ValueError(f"init_scale must be a positive number, got {init_scale}")
        self.dim = dim
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.negatives = negatives  # how many the caller should sample per interaction
        self.init_scale = init_scale
        self._half_width = init_scale * math.sqrt(3.0)

    def init(self, id_: str) -> list[float]:
        """The starting vector of ``id_`` (user or item): deterministic, process independent."""
        out: list[float] = []
        block = 0
        raw = id_.encode("utf-8")
        scale = 2.0 * self._half_width / _TWO32
        while len(out) < self.dim:
            digest = hashlib.blake2b(raw, digest_size=64, salt=block.to_bytes(16, "big")).digest()
            out.extend(x * scale - self._half_width for x in _U32.unpack(digest))
            block += 1
        return out[: self.dim]

    def _vector(self, stored: list[float], id_: str) -> list[float]:
        if len(stored) == self.dim and math.isfinite(sum(map(mul, stored, stored))):
            return stored
        return self.init(id_)

    def learn(self, profile: Profile, item: ItemStats, weight: float, negatives: list[ItemStats]) -> None:
        """One step for "``profile`` interacted with ``item`` (``weight``), not with
        ``negatives``". Replaces ``profile.factors`` and the items' ``factors`` with new
        lists. Negatives equal to ``item`` are skipped; with no negative nothing changes."""
        if not (math.isfinite(weight) and weight > 0):
            return
        negs = [n for n in negatives if n.item_id != item.item_id]
        if not negs:
            return
        w = min(weight, MAX_WEIGHT)
        lr, reg = self.learning_rate, self.regularization
        # Plain lists: at dim 16 numpy's per-call overhead makes it ~3x slower than this.
        u = self._vector(profile.factors, profile.profile_id)
        p = self._vector(item.factors, item.item_id)
        grad_u = [-reg * a for a in u]
        g_sum = 0.0
        new_negs = []
        for n in negs:
            v = self._vector(n.factors, n.item_id)
            diff = [a - b for a, b in zip(p, v)]
            x = sum(map(mul, diff, u))
            x = -40.0 if x < -40.0 else 40.0 if x > 40.0 else x
            g = w / (1.0 + math.exp(x))  # weight * sigmoid(-x), in (0, w)
            g_sum += g
            grad_u = [a + g * d for a, d in zip(grad_u, diff)]
            grad_v = _bound([-g * a - reg * b for a, b in zip(u, v)], MAX_GRAD)
            new_negs.append(_bound([b + lr * c for b, c in zip(v, grad_v)], MAX_NORM))
        grad_p = _bound([g_sum * a - reg * b for a, b in zip(u, p)], MAX_GRAD)
        grad_u = _bound(grad_u, MAX_GRAD)
        new_u = _bound([a + lr * c for a, c in zip(u, grad_u)], MAX_NORM)
        new_p = _bound([a + lr * c for a, c in zip(p, grad_p)], MAX_NORM)
        if not all(math.isfinite(sum(map(mul, vec, vec))) for vec in (new_u, new_p, *new_negs)):
            return  # cannot happen with the bounds above; never store a NaN if it does
        profile.factors = new_u
        item.factors = new_p
        for n, vec in zip(negs, new_negs):
            n.factors = vec

    def score(self, user_factors: list[float], item_factors: list[float]) -> float:
        """Dot product; 0.0 when either vector is missing (not learnt) or of another length."""
        if not user_factors or len(user_factors) != len(item_factors):
            return 0.0
        return sum(map(mul, user_factors, item_factors))


def _bound(vec: list[float], bound: float) -> list[float]:
    """``vec`` scaled down to norm ``bound`` if longer (a NaN norm passes through, and is
    caught by the finiteness check)."""
    norm2 = sum(map(mul, vec, vec))
    if norm2 > bound * bound:
        scale = bound / math.sqrt(norm2)
        return [a * scale for a in vec]
    return vec


class NegativePool:
    """The ids of recently interacted items (a ring of ``size``): negatives for
    ``MatrixFactorization.learn`` drawn from it are popularity-weighted, as an item
    appears once per interaction.

    In memory and per worker: after a restart it refills from the new interactions, so a
    replay may draw other negatives than the first run did (the model is approximate
    anyway; nothing else depends on them).

    >>> pool = NegativePool(size=3)
    >>> for i in ["a", "b", "c", "d"]:
    ...     pool.add(i)
    >>> sorted(pool.items())   # "a" was overwritten
    ['b', 'c', 'd']
    >>> s = pool.sample(2, key="event-1", exclude="c")
    >>> s == pool.sample(2, key="event-1", exclude="c") and "c" not in s and len(set(s)) == 2
    True
    """

    def __init__(self, size: int = 2000) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._ring: list[str] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self._ring)

    def items(self) -> list[str]:
        return list(self._ring)

    def add(self, item_id: str) -> None:
        ring = self._ring
        if len(ring) < self.size:
            ring.append(item_id)
        else:
            ring[self._next] = item_id
            self._next = (self._next + 1) % self.size

    def sample(self, n: int, key: str, exclude: str) -> list[str]:
        """Up to ``n`` distinct ids other than ``exclude``, chosen by a hash of ``key``
        (e.g. the event id): the same key and pool content give the same sample. Fewer
        than ``n`` when the pool holds fewer distinct other ids (or after ``4n + 8``
        draws hit only those)."""
        ring = self._ring
        if n <= 0 or not ring:
            return []
        out: list[str] = []
        taken = {exclude}
        limit = 4 * n + 8
        draws = 0
        block = 0
        raw = key.encode("utf-8")
        size = len(ring)
        while draws < limit:
            digest = hashlib.blake2b(raw, digest_size=64, salt=block.to_bytes(16, "big")).digest()
            block += 1
            for x in _U32.unpack(digest):
                item_id = ring[x % size]
                draws += 1
                if item_id not in taken:
                    taken.add(item_id)
                    out.append(item_id)
                    if len(out) == n:
                        return out
                if draws >= limit:
                    break
        return out


def co_visit(recent: list[list], items_get: Callable[[str], ItemStats], session_gap_ms: int = 30 * 60_000,
             window: int = 5, *, current: list | None = None) -> set[str]:
    """Record the current interaction's co-visitation with earlier ones of the session.

    ``recent`` is ``Profile.recent`` ([[event time, item id, event type], ...] sorted);
    the current interaction is its last entry, or ``current`` if given (then the entries
    sorted before it are the earlier ones: a purchase of several items passes each line
    in turn, and lines of one order pair up once each). Walking back from it, each of up
    to ``window`` entries that is about another item and at most ``session_gap_ms``
    older adds a weight to both items' ``neighbors``: ``CO_VISIT_WEIGHTS`` of the weaker
    of the two interactions, ``BOUGHT_TOGETHER_WEIGHT`` if both are purchases. An item
    met more than once in the window counts once, with its strongest pair weight.
    Returns the ids of the items whose stats changed (empty if none did, or if
    ``current`` is not in ``recent``).

    Call it once per interaction, when the event is applied: calling it twice adds twice.
    """
    if not recent:
        return set()
    if current is None:
        idx = len(recent) - 1
    else:
        try:
            idx = len(recent) - 1 - recent[::-1].index(list(current))
        except ValueError:
            return set()
    ts, item_id, etype = recent[idx]
    cur_weight = CO_VISIT_WEIGHTS.get(etype)
    if cur_weight is None:
        return set()
    pairs: dict[str, float] = {}
    counted = 0
    for prev_ts, prev_id, prev_type in reversed(recent[:idx]):
        if counted >= window or ts - prev_ts > session_gap_ms:
            break
        if prev_id == item_id:
            continue
        counted += 1
        prev_weight = CO_VISIT_WEIGHTS.get(prev_type)
        if prev_weight is None:
            continue
        if etype == "purchase" and prev_type == "purchase":
            w = BOUGHT_TOGETHER_WEIGHT
        else:
            w = min(cur_weight, prev_weight)
        if w > pairs.get(prev_id, 0.0):
            pairs[prev_id] = w
    if not pairs:
        return set()
    stats = items_get(item_id)
    for other, w in sorted(pairs.items()):
        stats.add_neighbor(other, w)
        items_get(other).add_neighbor(item_id, w)
    return {item_id, *pairs}


# -- ranking helpers (the server) ------------------------------------------------------
def content_affinity(profile: Profile) -> tuple[dict[str, float], dict[str, float], float | None]:
    """(category -> share, brand -> share, preferred log-price or None) of a profile.

    A share is the category's (brand's) part of the profile's counted interactions, so
    each map sums to 1 (empty when nothing was counted). The preferred log-price is the
    mean natural log of the prices of the products interacted with (``price_taste``);
    None before any priced interaction. Read-only.

    >>> from operators.profile import Profile
    >>> p = Profile("u1", categories={"tents": 3, "mugs": 1}, brands={"MSR": 2},
    ...             price_taste=[round(2e6 * math.log(100.0)), 2])   # ln(price) in millionths
    >>> cats, brands, log_price = content_affinity(p)
    >>> cats, brands, round(math.exp(log_price), 3)
    ({'tents': 0.75, 'mugs': 0.25}, {'MSR': 1.0}, 100.0)
    """
    return _shares(profile.categories), _shares(profile.brands), _mean_log_price(profile.price_taste)


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(v for v in counts.values() if v > 0)
    if total <= 0:
        return {}
    return {k: v / total for k, v in counts.items() if v > 0}


def _mean_log_price(taste: list[int]) -> float | None:
    if not taste or len(taste) < 2 or taste[1] <= 0:
        return None
    mean = taste[0] / PRICE_TASTE_SCALE / taste[1]
    return mean if math.isfinite(mean) else None


def factor_scores(user_factors: list[float], item_factors: np.ndarray) -> np.ndarray:
    """``MatrixFactorization.score`` for every row of an (items x dim) matrix at once;
    zeros when the user has no factors (or another dim).

    >>> factor_scores([1.0, 2.0], np.array([[1.0, 0.0], [0.5, 0.5]])).tolist()
    [1.0, 1.5]
    """
    n = item_factors.shape[0]
    if not user_factors or item_factors.ndim != 2 or item_factors.shape[1] != len(user_factors):
        return np.zeros(n)
    return item_factors @ np.asarray(user_factors, dtype=np.float64)


def price_fit(prices: np.ndarray, preferred_log_price: float | None, width: float = 0.7) -> np.ndarray:
    """How well each price suits a preferred log-price: ``exp(-d**2 / 2)`` with ``d`` the
    log-price distance in units of ``width`` (0.7: about a factor 2 either way drops the
    fit to ~0.6). Unknown prices (<= 0) get 0.5; all ones when there is no preference.

    >>> price_fit(np.array([100.0, 200.0, 0.0]), math.log(100.0)).round(2).tolist()
    [1.0, 0.61, 0.5]
    """
    prices = np.asarray(prices, dtype=np.float64)
    if preferred_log_price is None:
        return np.ones(prices.shape)
    known = prices > 0
    d = (np.log(np.where(known, prices, 1.0)) - preferred_log_price) / width
    return np.where(known, np.exp(-0.5 * d * d), 0.5)
