"""Request-time recommendations: an immutable item index and pure ranking strategies.

``build_index(items)`` turns stored item statistics into numpy arrays, one row per item,
rows sorted by item id (so a lower row wins a tie). ``recommend(index, profile, params,
now_ms, policy)`` ranks them for one request. Nothing here does I/O or changes its
inputs: the server builds a new index when the store changed and swaps it in
(``serving.catalog``); a request ranks whichever index was current when it started.

Strategies. ``choose_strategy`` picks ``HYBRID`` (``serving.hybrid``: collaborative
filtering, co-occurrence, content and popularity, blended by how much is known about the
user) for a stored profile that allows personalization, or ``PERSONAL`` (popularity
times category affinity) when an experiment variant asks for it; everyone else gets
``POPULAR`` and the profile is dropped before any ranking, so a user who withdrew
consent gets exactly an anonymous visitor's answer. The rules in ``recommend`` apply to
every strategy: request exclusions and the current item, items the catalog marks out of
stock, filters, cart and purchases for personal strategies, at most ``max_per_category``
items of one category, top k, ties by item id.

Selection. ``POPULAR`` and ``PERSONAL`` score an item as its popularity times a factor of
its category (``Ranking.weights``); ``HYBRID`` scores every row (``Ranking.scores``). The index keeps every category's rows sorted by
popularity, and all rows in one popularity order, both built once per index; a request
reads a few of these lists (one per boosted category, plus the popularity order for
the categories at factor 1), each only until it gave ``k`` rows that pass the rules,
and keeps the best ``k`` of those: it looks at a few dozen rows instead of scoring all
of them. When the rules reject
too many rows (a narrow price filter, a long exclusion list of top items) or too many
categories need their own list, it falls back to scoring every row with numpy
(``recommend_exhaustive``), which gives the same answer.

Scores are popularity as of ``index.as_of_ms`` (the newest event time among the
items) times boosts. Decaying every item to the request time would multiply all
scores by the same factor and change no order, so ``now_ms`` is unused by the two
strategies here; keeping scores independent of it makes two calls against the same
index give identical answers.

>>> index = build_index([
...     ItemStats("tent-1", "outdoor/tents", price=199.0, score=9.0, ref_ms=1000),
...     ItemStats("tent-2", "outdoor/tents", price=99.0, score=4.0, ref_ms=1000),
...     ItemStats("mug-1", "kitchen", price=8.0, score=6.0, ref_ms=1000),
... ])
>>> [(r.item_id, r.score, r.reason) for r in recommend(index, None, RecommendParams(k=2), 0).items]
[('tent-1', 9.0, 'popular now'), ('mug-1', 6.0, 'popular now')]
>>> fan = Profile("user:u1", categories={"kitchen": 5})
>>> result = recommend(index, fan, RecommendParams(k=2), 0, strategy=PERSONAL)
>>> result.strategy, [(r.item_id, r.score, r.reason) for r in result.items]
('personal', [('mug-1', 12.0, 'popular in kitchen, a category you like'), ('tent-1', 9.0, 'popular now')])
>>> recommend(index, fan, RecommendParams(k=2), 0).strategy   # the default for consenting users
'hybrid'
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple, Protocol

import numpy as np

from operators.items import ItemStats  # noqa: F401  (the doctest above)
from operators.profile import DEFAULT_POLICY, Policy, Profile
from serving.hybrid import HybridStrategy, trending_or_popular
from serving.item_index import NO_CATEGORY, ItemIndex
from serving.item_index import build_index  # noqa: F401  (the doctest above)

DEFAULT_K = 10
DEFAULT_MAX_PER_CATEGORY = 3
# Items of the request's context category score (1 + CONTEXT_BOOST) times their popularity.
CONTEXT_BOOST = 1.0
POPULAR = "popular"
PERSONAL = "personal"
HYBRID = "hybrid"
STRATEGY_NAMES = (HYBRID, PERSONAL, POPULAR)

_NEG_INF = -np.inf


@dataclass(frozen=True)
class RecommendParams:
    """One request, validated (``serving.recommendations`` builds it from the proto)."""

    k: int = DEFAULT_K
    context_category: str = ""
    current_item_id: str = ""
    page_type: str = ""
    channel: str = ""
    exclude: frozenset[str] = frozenset()
    category_prefix: str = ""
    min_price: float | None = None
    max_price: float | None = None
    max_per_category: int = DEFAULT_MAX_PER_CATEGORY

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.max_per_category < 1:
            raise ValueError(f"max_per_category must be at least 1, got {self.max_per_category}")


class Recommended(NamedTuple):
    item_id: str
    score: float
    reason: str
    category: str
    price: float


class Recommendations(NamedTuple):
    items: tuple[Recommended, ...]
    strategy: str
    personalized: bool
    stage: str = ""


class Ranking(NamedTuple):
    """A strategy's answer, and ``reason(row, category_code)``: why a picked row is recommended.

    Either ``weights`` (with ``scores`` None): a row scores its popularity times its
    category's factor, ``weights.get(code, 1.0)``. Factors must be positive and finite, so
    that a category's rows keep their popularity order: ``recommend`` then reads the
    index's sorted lists. Or ``scores``: a fresh score per row (the caller may change it;
    -inf removes the row), for a strategy that scores otherwise; every row is then ranked.
    """

    scores: np.ndarray | None
    reason: Callable[[int, int], str]
    weights: Mapping[int, float] | None = None
    stage: str = ""  # the hybrid strategy's stage (``serving.hybrid``); "" for the others
    # ``reason`` for all the picked rows at once (rows, category codes), when a strategy
    # can share work between them
    reasons: Callable[[list[int], list[int]], list[str]] | None = None
    # With ``scores``: when given, ``scores`` are upper bounds and ``exact(rows)`` gives the
    # exact scores of those rows (sorted, each bound finite; each exact score at most its
    # bound). Only the rows whose bound can reach the answer are scored (``top_rows_refined``).
    exact: Callable[[np.ndarray], np.ndarray] | None = None


class Strategy(Protocol):
    name: str
    personalized: bool  # True: uses the profile (and gets the personal business rules)

    def rank(self, index: ItemIndex, profile: Profile | None, params: RecommendParams,
             now_ms: int) -> Ranking: ...


_CACHE_LIMIT = 1024  # entries of ``ItemIndex.cache`` (cleared when full)
_CACHED_KEY_CHARS = 256  # longer request strings are looked up without caching


def _cached(index: ItemIndex, key: tuple, make: Callable[[], object]) -> object:
    """``make()``, memoized in the index (request strings are keys: the memo is bounded)."""
    cache = index.cache
    value = cache.get(key)
    if value is None:
        value = make()
        if len(key[1]) <= _CACHED_KEY_CHARS:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = value
    return value


def _under(index: ItemIndex, category: str) -> np.ndarray:
    """Per category code: is it ``category`` or a subcategory (``category/...``)?"""
    base = category.rstrip("/") or category  # "outdoor/" means "outdoor"
    return (index.names == base) | np.strings.startswith(index.names, base + "/")


def _codes_under(index: ItemIndex, category: str) -> tuple[int, ...]:
    """The codes of ``category`` and its subcategories."""
    return _cached(index, ("under", category), lambda: tuple(np.flatnonzero(_under(index, category)).tolist()))


def _reason_texts(index: ItemIndex) -> tuple[list[str], list[str]]:
    """Per category code: "popular in <category>" and "..., a category you like"."""
    def make():
        popular_in = [f"popular in {name}" for name in index.category_names]
        return popular_in, [f"{text}, a category you like" for text in popular_in]
    return _cached(index, ("reasons", ""), make)


def context_category(index: ItemIndex, params: RecommendParams) -> str:
    """The category the request context favours: its own, else the current item's."""
    if params.context_category:
        return params.context_category
    if params.current_item_id:
        return index.category_of(params.current_item_id) or ""
    return ""


def _context_codes(index: ItemIndex, params: RecommendParams) -> tuple[int, ...]:
    """The codes the context boosts by 1 + CONTEXT_BOOST (none without a context category)."""
    category = context_category(index, params)
    return _codes_under(index, category) if category else ()


def _popular_now(index: ItemIndex) -> Callable[[int, int], str]:
    models = index.models
    return lambda row, code: trending_or_popular(models, row)


class PopularStrategy:
    """Non-personal: popularity, boosted for the request context's category."""

    name = POPULAR
    personalized = False

    def rank(self, index: ItemIndex, profile: Profile | None, params: RecommendParams, now_ms: int) -> Ranking:
        context = _context_codes(index, params)
        factor = 1.0 + CONTEXT_BOOST
        if not context or factor == 1.0:
            return Ranking(None, _popular_now(index))
        boosted = frozenset(context) if factor > 1.0 else frozenset()
        popular_in = _reason_texts(index)[0]
        models = index.models

        def reason(row: int, code: int) -> str:
            return popular_in[code] if code in boosted else trending_or_popular(models, row)

        return Ranking(None, reason, dict.fromkeys(context, factor))


class PersonalStrategy:
    """Popularity times (1 + the user's affinity to the item's category), affinity being
    the category's interaction count over the user's largest one (0..1); the context
    boost applies as for ``PopularStrategy``."""

    name = PERSONAL
    personalized = True

    def rank(self, index: ItemIndex, profile: Profile | None, params: RecommendParams, now_ms: int) -> Ranking:
        if profile is None:
            raise ValueError("the personal strategy needs a profile")
        context = _context_codes(index, params)
        factor = 1.0 + CONTEXT_BOOST
        weights = dict.fromkeys(context, factor) if factor != 1.0 else {}
        boosted = frozenset(context) if factor > 1.0 else frozenset()
        liked: set[int] = set()
        counts = profile.categories
        top = max(counts.values(), default=0)
        if top > 0:
            codes = index.codes
            for category, count in counts.items():
                code = codes.get(category)
                if code is not None and count > 0:
                    weights[code] = weights.get(code, 1.0) * (1.0 + count / top)
                    liked.add(code)
        popular_in, you_like = _reason_texts(index)
        models = index.models

        def reason(row: int, code: int) -> str:
            if code in liked:
                return you_like[code]
            return popular_in[code] if code in boosted else trending_or_popular(models, row)

        return Ranking(None, reason, weights)


POPULAR_STRATEGY = PopularStrategy()
PERSONAL_STRATEGY = PersonalStrategy()
HYBRID_STRATEGY = HybridStrategy()
_BY_NAME = {HYBRID: HYBRID_STRATEGY, PERSONAL: PERSONAL_STRATEGY, POPULAR: POPULAR_STRATEGY}


def choose_strategy(profile: Profile | None, policy: Policy = DEFAULT_POLICY, preferred: str | None = None) -> Strategy:
    """For a profile that allows personalization, ``preferred`` (an experiment variant's
    strategy) or HYBRID; POPULAR for anyone else, whatever is preferred."""
    if profile is not None and profile.allows("personalization", policy):
        if preferred is not None and preferred not in _BY_NAME:
            raise ValueError(f"unknown strategy {preferred!r}; strategies: {', '.join(STRATEGY_NAMES)}")
        return _BY_NAME[preferred or HYBRID]
    return POPULAR_STRATEGY


def _remove(index: ItemIndex, scores: np.ndarray, item_ids: Iterable[str]) -> None:
    rows = [row for row in map(index.rows.get, item_ids) if row is not None]
    if rows:
        scores[rows] = _NEG_INF


def apply_rules(index: ItemIndex, scores: np.ndarray, params: RecommendParams,
                profile: Profile | None) -> np.ndarray:
    """``scores`` with every row the request may not return at -inf (``scores`` may be
    changed and returned).

    ``profile`` is given only for personal strategies: its cart and purchases go.
    Filters build one mask and apply it with ``np.where``: assigning through a boolean
    mask costs ~4x as much over 10,000 rows.
    """
    _remove(index, scores, params.exclude)
    models = index.models
    if models is not None and not models.in_stock.all():
        scores = np.where(models.in_stock, scores, _NEG_INF)
    if params.current_item_id:
        _remove(index, scores, (params.current_item_id,))
    if profile is not None:
        _remove(index, scores, profile.cart)
        _remove(index, scores, profile.purchased)
    ok = None
    if params.category_prefix:
        ok = np.strings.startswith(index.names, params.category_prefix)[index.category_codes]
    if params.min_price is not None or params.max_price is not None:
        prices = index.prices
        in_range = prices > 0.0  # unknown prices never pass a price filter
        if params.min_price is not None:
            in_range &= prices >= params.min_price
        if params.max_price is not None:
            in_range &= prices <= params.max_price
        ok = in_range if ok is None else ok & in_range
    return scores if ok is None else np.where(ok, scores, _NEG_INF)


def top_rows(scores: np.ndarray, codes: np.ndarray, k: int, max_per_category: int,
             exempt_code: int | None = None) -> list[int]:
    """The best ``k`` rows by score (ties: lower row first), skipping -inf rows and any row
    whose category already has ``max_per_category`` better rows picked (``exempt_code``
    is never capped).

    Only a prefix of the order is sorted: the rows scoring at least the m-th best score,
    all ties included, so the prefix is exact; m grows when the cap leaves fewer than
    ``k`` picks in it. The m-th best score comes from ``np.partition`` (the selection
    ``argpartition`` does, without the indices: 15 instead of 21 µs over 10,000 rows).
    """
    n = len(scores)
    m = min(n, max(4 * k, 64))
    while True:
        if m >= n:
            candidates = np.flatnonzero(scores > _NEG_INF)
            complete = True
        else:
            threshold = np.partition(scores, n - m)[n - m]
            complete = threshold == _NEG_INF
            candidates = np.flatnonzero(scores > _NEG_INF) if complete else np.flatnonzero(scores >= threshold)
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        picked: list[int] = []
        per_category: dict[int, int] = {}
        for row, code in zip(order.tolist(), codes[order].tolist()):
            if code != exempt_code:
                seen = per_category.get(code, 0)
                if seen >= max_per_category:
                    continue
                per_category[code] = seen + 1
            picked.append(row)
            if len(picked) == k:
                return picked
        if complete:
            return picked
        m *= 4


def top_rows_refined(bounds: np.ndarray, exact: Callable[[np.ndarray], np.ndarray], codes: np.ndarray, k: int,
                     max_per_category: int, exempt_code: int | None = None,
                     everything: bool = False) -> tuple[list[int], list[float]]:
    """``top_rows`` over exact scores that only some rows get: ``bounds`` are upper bounds
    per row (-inf: removed), ``exact(rows)`` the exact scores of ``rows``; returns the
    rows picked and their exact scores.

    The m rows with the best bounds are scored exactly and picked from. That is the
    answer when ``k`` rows were picked and the last one's score beats every bound left
    out (strictly: a tie would go to the lower row, which may be one left out), since
    every row the full ranking would look at before its k-th pick is then among them;
    else m grows. ``everything``: score every row (the reference the others must equal).
    """
    n = len(bounds)
    m = n if everything else min(n, max(8 * k, 128))
    while True:
        rest = _NEG_INF  # the best bound of the rows left out
        if m < n:
            values = np.partition(bounds, n - m)
            threshold = values[n - m]
            rest = values[:n - m].max()  # (ties with the threshold are taken: rest may be one of them)
        if m >= n or threshold == _NEG_INF:
            rows = np.flatnonzero(bounds > _NEG_INF)
            rest = _NEG_INF
        else:
            rows = np.flatnonzero(bounds >= threshold)
        scores = exact(rows)
        picked = top_rows(scores, codes[rows], k, max_per_category, exempt_code)
        if rest == _NEG_INF or (len(picked) == k and scores[picked[-1]] > rest):
            return rows[picked].tolist(), scores[picked].tolist()
        m *= 4


def row_scores(index: ItemIndex, ranking: Ranking) -> np.ndarray:
    """A fresh score per row for ``ranking`` (its ``scores``, or popularity times ``weights``)."""
    if ranking.scores is not None:
        return ranking.scores
    weights = ranking.weights
    if not weights:
        return index.popularity.copy()
    factors = np.ones(len(index.category_names))
    factors[list(weights)] = list(weights.values())
    return index.popularity * factors[index.category_codes]


# The categories at factor 1 (most of them) are read in the popularity order, at most
# WALK_LIMIT rows of it (~0.2 ms); the others from their own lists, at most MAX_LISTS
# lists and MERGE_BUDGET + 4 k + (items the request excludes) rows in all. Past a limit
# the request is ranked exhaustively instead.
WALK_LIMIT = 2048
MERGE_BUDGET = 256
MAX_LISTS = 64
# The categories at factor 1 are read from their own lists, not from the popularity
# order, when the prefix filter leaves them under 1/SPARSE_SHARE of the rows.
SPARSE_SHARE = 8


def _allowed(index: ItemIndex, prefix: str) -> tuple[list[bool], int]:
    """Per code, does its category start with ``prefix``; and the number of rows allowed."""
    if not prefix:
        return _cached(index, ("prefix", ""), lambda: ([True] * len(index.category_names), len(index)))

    def make():
        ok = np.strings.startswith(index.names, prefix).tolist()
        return ok, sum(size for size, yes in zip(index.category_sizes, ok) if yes)
    return _cached(index, ("prefix", prefix), make)


def _blocked(params: RecommendParams, profile: Profile | None) -> tuple[Container[str], int]:
    """The item ids the request may not return (exclusions, the current item, and for a
    personal strategy the cart and purchases), as one container; and how many."""
    parts = [part for part in (params.exclude, *((profile.cart, profile.purchased) if profile else ())) if part]
    if params.current_item_id:
        parts.append((params.current_item_id,))
    if not parts:
        return (), 0
    if len(parts) == 1:
        return parts[0], len(parts[0])
    blocked = set().union(*parts)
    return blocked, len(blocked)


_new_tuple = tuple.__new__  # builds a Recommended in half the time its constructor takes


def _select(index: ItemIndex, ranking: Ranking, params: RecommendParams,
            profile: Profile | None) -> list[Recommended] | None:
    """The answer's items, as ``apply_rules`` + ``top_rows`` pick them, from the sorted
    lists of the index; None when that would read too many rows.

    A category's rows are read from one list only: its own (when its factor is not 1,
    or when the prefix filter leaves few rows) or the popularity order (the categories
    at factor 1). The diversity cap is per category, so whether a row passes the rules
    depends on the earlier rows of its own list only: each list gives its first k rows
    that pass (products of a factor that round to one score are all read, and ordered by
    row), and the best k of the union, by (-score, row), are the answer.
    """
    weights = ranking.weights or {}
    ok, allowed = _allowed(index, params.category_prefix)
    base = ok.copy()  # per code: read from the popularity order (factor 1)
    sizes, by_category = index.category_sizes, index.by_category
    lists: list[tuple[list[int], float, int]] = []  # (rows, factor, code)
    for code, factor in weights.items():
        if factor != 1.0 and ok[code]:
            base[code] = False
            allowed -= sizes[code]
            if sizes[code]:
                lists.append((by_category[code], factor, code))
    walk = allowed * SPARSE_SHARE >= len(index)
    if allowed and not walk:
        lists.extend((by_category[code], 1.0, code) for code, yes in enumerate(base) if yes and sizes[code])
    if len(lists) > MAX_LISTS:
        return None
    blocked, n_blocked = _blocked(params, profile)
    low, high = params.min_price, params.max_price
    priced = low is not None or high is not None
    if low is None:
        low = -np.inf
    if high is None:
        high = np.inf
    ids, codes, prices, popularity = index.id_list, index.code_list, index.price_list, index.popularity_list
    stock = index.models.in_stock_list if index.models is not None else None
    if stock is not None and all(stock):
        stock = None
    k, cap, exempt = params.k, params.max_per_category, index.codes.get(NO_CATEGORY)
    found: list[tuple[float, int]] = []  # (-score, row)
    if allowed and walk:
        order = index.order
        per_category = [0] * len(base)
        if exempt is not None:
            per_category[exempt] = -len(index)  # never reaches the cap
        for row in islice(order, WALK_LIMIT):
            code = codes[row]
            if not base[code] or ids[row] in blocked or (stock is not None and not stock[row]):
                continue
            if priced and not (low <= prices[row] <= high and prices[row] > 0.0):
                continue
            seen = per_category[code]
            if seen >= cap:
                continue
            per_category[code] = seen + 1
            found.append((-popularity[row], row))
            if len(found) == k:
                break
        else:
            if len(order) > WALK_LIMIT:
                return None
    budget = MERGE_BUDGET + 4 * k + n_blocked
    for rows, factor, code in lists:
        need = k if code == exempt else min(k, cap)
        got: list[tuple[float, int]] = []
        for row in rows:
            budget -= 1
            if budget < 0:
                return None
            if ids[row] in blocked or (stock is not None and not stock[row]):
                continue
            if priced and not (low <= prices[row] <= high and prices[row] > 0.0):
                continue
            neg = -(popularity[row] * factor)
            if len(got) >= need and neg != got[-1][0]:
                break  # scores only go down from here
            got.append((neg, row))
        if len(got) > need:  # ties at the end: the lower rows
            got.sort()
            del got[need:]
        found += got
    if lists:
        found.sort()
    names, reason = index.category_names, ranking.reason
    items = []
    for neg, row in found[:k]:
        code = codes[row]
        items.append(_new_tuple(Recommended, (ids[row], -neg, reason(row, code), names[code], prices[row])))
    return items


def recommend(index: ItemIndex, profile: Profile | None, params: RecommendParams, now_ms: int,
              policy: Policy = DEFAULT_POLICY, strategy: str | None = None) -> Recommendations:
    """Rank ``index`` for one request; ``profile`` is the user's (None: anonymous or unknown).

    Without personalization consent the profile is not used at all: the answer equals
    the one for ``profile=None``.
    """
    return _recommend(index, profile, params, now_ms, policy, exhaustive=False, preferred=strategy)


def recommend_exhaustive(index: ItemIndex, profile: Profile | None, params: RecommendParams, now_ms: int,
                         policy: Policy = DEFAULT_POLICY, strategy: str | None = None) -> Recommendations:
    """``recommend`` by scoring every row with numpy: the reference ``_select`` must
    equal, and its fallback."""
    return _recommend(index, profile, params, now_ms, policy, exhaustive=True, preferred=strategy)


def _recommend(index: ItemIndex, profile: Profile | None, params: RecommendParams, now_ms: int,
               policy: Policy, exhaustive: bool, preferred: str | None = None) -> Recommendations:
    strategy = choose_strategy(profile, policy, preferred)
    if not strategy.personalized:
        profile = None  # the consent rule: nothing below may use the profile
    if len(index) == 0:
        return Recommendations((), POPULAR, False)
    ranking = strategy.rank(index, profile, params, now_ms)
    items = None
    if ranking.scores is None and not exhaustive:
        items = _select(index, ranking, params, profile)
    if items is None:
        scores = apply_rules(index, row_scores(index, ranking), params, profile)
        exempt = index.codes.get(NO_CATEGORY)
        if ranking.exact is None:
            rows = top_rows(scores, index.category_codes, params.k, params.max_per_category, exempt_code=exempt)
            picked = scores[rows].tolist()
        else:
            rows, picked = top_rows_refined(scores, ranking.exact, index.category_codes, params.k,
                                            params.max_per_category, exempt, everything=exhaustive)
        names, ids, prices = index.category_names, index.id_list, index.price_list
        # Gather the picked rows once and leave numpy: per-element numpy indexing is slow.
        codes = index.category_codes[rows].tolist()
        texts = (ranking.reasons(rows, codes) if ranking.reasons is not None
                 else [ranking.reason(row, code) for row, code in zip(rows, codes)])
        items = [Recommended(ids[row], score, text, names[code], prices[row])
                 for row, score, code, text in zip(rows, picked, codes, texts)]
    return Recommendations(tuple(items), strategy.name, strategy.personalized, ranking.stage)
