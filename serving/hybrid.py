"""The hybrid recommendation strategy: what the models learnt, blended by how much Pulse
knows about the user.

The flow learns per item (``operators.items.ItemStats``): popularity (24 h half-life),
trending (1 h half-life), latent factors (``operators.reco.MatrixFactorization``) and
co-occurrence neighbours ("viewed together", "bought together"); per profile: latent
factors, category and brand counts, price taste and the last product interactions.
``item_models`` turns the item side into arrays once per index; ``HybridStrategy``
scores the rows for one request with numpy (~0.4 ms for 10,000 items).

Stages, by the profile's product interactions ``n`` (views, cart additions, purchases):

=================  ===================================================================
``n == 0``         log popularity (popularity plus trending), boosted for the context
``1 <= n < 5``     log popularity + 0.5 log content + 1.0 log co-occurrence
                   + 3.0 similarity
``n >= 5``         log popularity + 0.5 log content + 1.5 log co-occurrence
                   + 4.0 similarity + 0.5 collaborative (without learnt user factors:
                   the blend above)
=================  ===================================================================

Scores add in log space, so each component multiplies the item's popularity: "popular
among the items like the ones you viewed", rather than a sum in which a component that
is 0 for most items would let an obscure item win. *Popularity* is the index's
popularity column over its maximum, plus ``POPULARITY_FLOOR``; *content* is 0.5 category
affinity + 0.3 brand affinity + 0.2 price closeness
(``exp(-|log price - the user's mean log price|)``), each 0..1; *co-occurrence* sums,
over the user's ``RECENT_SOURCES`` most recent distinct items (newest weighted 1, then
0.95, 0.9025, ...: ``RECENCY_DECAY``), each neighbour's weight over that item's strongest
neighbour, scaled to 0..1; both get ``AFFINITY_FLOOR`` added before their log.
*Similarity* is the cosine between the item's latent factors and the user's recent
taste: the same recent items' unit-length factors, summed with the same weights
(-1..1; it adds as is). It reads only item factors, which many users train, so it knows
a user's taste from their first interaction and is less noisy than the user's own
factors. *Collaborative* is the dot product of the user's and the item's latent factors
(BPR: a log-odds of preference, so it adds as is). Items without factors get the lowest
learnt score of each of the two (or 0). The request context adds
``log(1 + CONTEXT_BOOST)`` for its category. Each item's reason names the component
that contributed most (a component must reach ``REASON_FLOOR`` on its 0..1 scale;
similarity and collaborative count from 0), else popularity.

The weights were tuned on ``bench/bench_reco_quality.py`` (figures in the README): at
120,000 events, similarity took users with 5+ interactions from 1.99x to 2.16x the
popular answer's HitRate@10 and users with 1-4 from 1.22x to 1.34x. Scaling the
collaborative term (z-score), a popularity weight below 1, co-occurrence as lift or its
square root, and boosting or demoting recently viewed items did not help.

Cost, 10,000 items: each pass over the rows is ~5-25 us, so the terms add in place into
one array, the popularity term is computed once per index, co-occurrence is one
``bincount`` over every (recent item, neighbour) pair, and item factors are float32 (the
matrix product reads half the memory). A row's neighbours are resolved to rows once and
kept while the row's item does not change (``item_models(previous=)``). Reasons are
worked out only for the rows returned. Content is scored only for the rows that can
reach the answer: every row gets an upper bound (its category's content term plus the
best brand and price terms), and ``serving.recommend.top_rows_refined`` scores exactly
only the rows whose bound beats the answer's last score (~160 of 10,000 rows), with the
same answer as scoring every row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from operators.profile import Profile

COLD, CONTENT, COLLABORATIVE = "cold", "content", "collaborative"
ESTABLISHED_INTERACTIONS = 5
RESOLVE_SLICE = 32  # rows resolved between pauses of an index build (~0.8 ms, like its other steps)
RECENT_SOURCES = 20  # recent distinct items that co-occurrence and similarity read
RECENCY_DECAY = 0.95  # the weight of each recent item relative to the next newer one
# Weights of (log popularity, content, co-occurrence, similarity, collaborative) per stage.
BLENDS = {
    COLD: (1.0, 0.0, 0.0, 0.0, 0.0),
    CONTENT: (1.0, 0.5, 1.0, 3.0, 0.0),
    COLLABORATIVE: (1.0, 0.5, 1.5, 4.0, 0.5),
}
POPULARITY_FLOOR = 1e-3  # added to popularity scaled 0..1 before its log
AFFINITY_FLOOR = 0.05  # added to content and co-occurrence scores (0..1) before their logs
LOG_AFFINITY_FLOOR = math.log(AFFINITY_FLOOR)
REASON_FLOOR = 0.15  # a component must add at least this to name the reason
# Added to a row's content bound so that rounding can never put an exact score above it.
BOUND_MARGIN = 1e-9
# Per-item source labels (RecommendedItem.source).
SOURCE_POPULAR, SOURCE_TRENDING = "popular", "trending"
SOURCE_CONTENT, SOURCE_CO_OCCURRENCE, SOURCE_COLLABORATIVE = "content", "co_occurrence", "collaborative"
SOURCE_SIMILAR = "similar"


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class ItemModels:
    """The learnt item side of an index, row-aligned with it (read-only)."""

    factors: np.ndarray  # (rows, dim) float32 (half the memory to read per request); zero rows where nothing was learnt
    inverse_norms: np.ndarray  # float64 per row: 1 / the length of its factors; 0 where nothing was learnt
    learnt: np.ndarray  # bool per row: has factors
    trend_share: np.ndarray  # float64 per row: the trending part of the popularity column
    brand_codes: np.ndarray  # intp per row; code 0 is "no brand"
    brands: Mapping[str, int]  # brand -> code
    neighbors: tuple[Mapping[str, float], ...]  # per row: item id -> co-occurrence weight
    in_stock: np.ndarray  # bool per row: False only when the catalog says out of stock
    in_stock_list: list[bool]
    brand_names: tuple[str | None, ...]  # per brand code (code 0: None)
    log_price_known: np.ndarray  # float64 per row: log of the price, 0 where the price is unknown
    price_unknown: np.ndarray  # intp: the rows whose price is unknown
    all_learnt: bool  # every row has factors (the usual case: nothing to fill in)
    extras: tuple  # what this was built from (``item_models(previous=)`` compares them)
    # per row: its neighbours' rows in the index and their weights over the strongest one
    # (0..1), as arrays (``resolve_neighbors``)
    neighbor_rows: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False)

    @property
    def dim(self) -> int:
        return self.factors.shape[1]


def resolve_neighbors(neighbors: Mapping[str, float], rows: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """``neighbors`` (item id -> weight) as the rows of those in the index (``rows``: item
    id -> row) and their weights over the strongest one (0..1); the others are left out."""
    top = max(neighbors.values(), default=0.0)
    pairs = [(rows.get(other), weight) for other, weight in neighbors.items()] if top > 0 else []
    pairs = [(r, weight) for r, weight in pairs if r is not None]
    return (np.fromiter((r for r, _w in pairs), np.intp, len(pairs)),
            np.fromiter((weight / top for _r, weight in pairs), np.float64, len(pairs)))


class ItemExtras(tuple):
    """What ``item_models`` needs of one item, in row order: (brand, factors, neighbours,
    in_stock). A tuple subclass so builders can keep one per row cheaply."""

    __slots__ = ()

    def __new__(cls, brand: str | None, factors: Sequence[float], neighbors: Mapping[str, float],
                in_stock: bool | None):
        return tuple.__new__(cls, (brand, factors, neighbors, in_stock))


NO_EXTRAS = ItemExtras(None, (), MappingProxyType({}), None)


def item_models(extras: Sequence[tuple], prices: np.ndarray, trend_share: np.ndarray, rows: Mapping[str, int],
                previous: ItemModels | None = None, pause: Callable[[], None] | None = None) -> ItemModels:
    """Arrays for ``extras`` (one ``ItemExtras`` per row, row order; ``rows``: item id ->
    row of the index being built). Every row's neighbours are resolved here, not by the
    first request that reads them (~25 us per row of 60 neighbours; ``pause`` is called
    every ``RESOLVE_SLICE`` rows). ``previous``: the models of an index with the same items
    in the same rows; the rows whose extras are the same objects keep its neighbours and
    their resolved rows (an index rebuilt after some items changed resolves only those)."""
    n = len(extras)
    dim = max((len(e[1]) for e in extras), default=0)
    factors = np.zeros((n, dim), np.float32)
    learnt = np.zeros(n, bool)
    if dim:
        for row, e in enumerate(extras):
            f = e[1]
            if len(f) == dim:
                factors[row] = f
                learnt[row] = True
    norms = np.linalg.norm(factors.astype(np.float64), axis=1, keepdims=True)
    inverse_norms = np.divide(1.0, norms[:, 0], out=np.zeros(n), where=norms[:, 0] > 0)
    names = sorted({e[0] for e in extras if e[0]})
    brands = {name: code for code, name in enumerate(names, start=1)}
    brand_codes = np.fromiter((brands.get(e[0], 0) if e[0] else 0 for e in extras), np.intp, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_price = np.where(prices > 0, np.log(np.where(prices > 0, prices, 1.0)), np.nan)
    in_stock_list = [e[3] is not False for e in extras]
    same = [False] * n
    if previous is not None and len(previous.extras) == n:
        same = [a is b for a, b in zip(extras, previous.extras)]
    neighbors = tuple(previous.neighbors[row] if same[row] else MappingProxyType(dict(e[2]) if e[2] else {})
                      for row, e in enumerate(extras))
    neighbor_rows = []
    resolved = 0
    for row in range(n):
        if same[row]:
            neighbor_rows.append(previous.neighbor_rows[row])
            continue
        neighbor_rows.append(resolve_neighbors(neighbors[row], rows))
        resolved += 1
        if pause is not None and resolved % RESOLVE_SLICE == 0:
            pause()
    return ItemModels(
        factors=_frozen(factors),
        inverse_norms=_frozen(inverse_norms),
        learnt=_frozen(learnt),
        trend_share=_frozen(trend_share),
        brand_codes=_frozen(brand_codes),
        brands=MappingProxyType(brands),
        neighbors=neighbors,
        in_stock=_frozen(np.array(in_stock_list, bool)),
        in_stock_list=in_stock_list,
        brand_names=(None, *names),
        log_price_known=_frozen(np.nan_to_num(log_price, nan=0.0)),
        price_unknown=_frozen(np.flatnonzero(np.isnan(log_price))),
        all_learnt=bool(learnt.all()),
        extras=tuple(extras),
        neighbor_rows=tuple(neighbor_rows),
    )


def stage_of(profile: Profile | None, learnt_user: bool) -> str:
    if profile is None:
        return COLD
    n = profile.interactions()
    if n == 0:
        return COLD
    if n >= ESTABLISHED_INTERACTIONS and learnt_user:
        return COLLABORATIVE
    return CONTENT


def _scaled(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if len(values) else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def content_parts(index, models: ItemModels, profile: Profile) -> tuple[np.ndarray, np.ndarray, float | None]:
    """The content score's per-category and per-brand terms (0.5 category affinity and 0.3
    brand affinity, by code) and the user's mean log price (None before it is known)."""
    cat_weights = np.zeros(len(index.category_names))
    top = max(profile.categories.values(), default=0)
    if top > 0:
        for category, count in profile.categories.items():
            code = index.codes.get(category)
            if code is not None:
                cat_weights[code] = count / top
    brand_weights = np.zeros(len(models.brands) + 1)
    top_b = max(profile.brands.values(), default=0)
    if top_b > 0:
        for brand, count in profile.brands.items():
            code = models.brands.get(brand)
            if code is not None:
                brand_weights[code] = count / top_b
    cat_weights *= 0.5
    brand_weights *= 0.3
    return cat_weights, brand_weights, profile.mean_log_price()


def content_scores(index, models: ItemModels, profile: Profile, rows: np.ndarray | None = None,
                   parts: tuple | None = None) -> np.ndarray:
    """0.5 category + 0.3 brand + 0.2 price closeness, each 0..1 (0.5 closeness for
    items of unknown price, 0.5 for every item before the user's price taste is known);
    for ``rows`` (default: every row). ``parts``: ``content_parts``, if already known."""
    cat_weights, brand_weights, taste = parts if parts is not None else content_parts(index, models, profile)
    if rows is None:
        codes, brand_codes, log_price = index.category_codes, models.brand_codes, models.log_price_known
    else:
        codes, brand_codes, log_price = index.category_codes[rows], models.brand_codes[rows], models.log_price_known[rows]
    scores = cat_weights[codes]
    scores += brand_weights[brand_codes]
    if taste is not None:
        closeness = log_price - taste
        np.abs(closeness, out=closeness)
        np.negative(closeness, out=closeness)
        np.exp(closeness, out=closeness)
        unknown = models.price_unknown if rows is None else np.flatnonzero(index.prices[rows] <= 0.0)
        if len(unknown):
            closeness[unknown] = 0.5
        closeness *= 0.2
        scores += closeness
    else:
        scores += 0.1
    return scores


def content_bounds(parts: tuple) -> np.ndarray:
    """Per category code, the most content score any item of the category can get (for
    ``Ranking.exact``): its category term plus the best brand term plus the most price
    closeness can add."""
    cat_weights, brand_weights, taste = parts
    return cat_weights + (float(brand_weights.max()) + (0.2 if taste is not None else 0.1))


def recent_sources(profile: Profile) -> list[tuple[str, float]]:
    """The user's ``RECENT_SOURCES`` most recent distinct items, newest first, with their
    weights (1, then ``RECENCY_DECAY`` times the previous one)."""
    sources: list[tuple[str, float]] = []
    seen: set[str] = set()
    factor = 1.0
    for _ts, item_id, _etype in reversed(profile.recent):
        if item_id in seen:
            continue
        seen.add(item_id)
        sources.append((item_id, factor))
        factor *= RECENCY_DECAY
        if len(sources) >= RECENT_SOURCES:
            break
    return sources


class Pairs(NamedTuple):
    """Every (recent item, neighbour) pair behind a co-occurrence score: the neighbour's
    row, its gain (the recent item's weight times the neighbour's weight over its
    strongest), and the recent item's position in the sources."""

    target: np.ndarray
    gain: np.ndarray
    position: np.ndarray


def co_occurrence_scores(index, models: ItemModels, sources: Sequence[tuple[str, float]]
                         ) -> tuple[np.ndarray, Pairs | None]:
    """Per row, the sum of the gains of its pairs with the recent items (``sources``),
    scaled 0..1; and the pairs (None when there are none)."""
    rows = index.rows
    targets, weights, positions, factors, lengths = [], [], [], [], []
    for position, (item_id, factor) in enumerate(sources):
        row = rows.get(item_id)
        if row is not None:
            neighbours, scaled = models.neighbor_rows[row]
            if len(neighbours):
                targets.append(neighbours)
                weights.append(scaled)
                positions.append(position)
                factors.append(factor)
                lengths.append(len(neighbours))
    if not targets:
        return np.zeros(len(index)), None
    pairs = Pairs(np.concatenate(targets), np.concatenate(weights) * np.repeat(factors, lengths),
                  np.repeat(np.asarray(positions, np.intp), lengths))
    return _scaled(np.bincount(pairs.target, weights=pairs.gain, minlength=len(index))), pairs


def strongest_sources(pairs: Pairs | None, rows: Sequence[int]) -> dict[int, int]:
    """For each of ``rows`` (the rows returned) that has a pair with a positive gain: the
    position of the recent item that gave it the largest gain (the first of equals)."""
    if pairs is None or not len(rows):
        return {}
    wanted = np.zeros(int(pairs.target.max()) + 1, bool)
    wanted[[row for row in rows if row < len(wanted)]] = True
    mine = np.flatnonzero(wanted[pairs.target])  # in source order
    best: dict[int, tuple[float, int]] = {}
    for row, gain, position in zip(pairs.target[mine].tolist(), pairs.gain[mine].tolist(),
                                   pairs.position[mine].tolist()):
        if gain > 0 and gain > best.get(row, (0.0, -1))[0]:
            best[row] = (gain, position)
    return {row: position for row, (_gain, position) in best.items()}


def recent_taste(index, models: ItemModels, sources: Sequence[tuple[str, float]]) -> np.ndarray | None:
    """The weighted sum of the recent items' (``sources``) unit-length factors, scaled to
    unit length; None when no recent item has factors. The similarity of a row is its
    factors' dot product with this over their length (a cosine)."""
    rows, weights = [], []
    for item_id, factor in sources:
        row = index.rows.get(item_id)
        if row is not None:
            rows.append(row)
            weights.append(factor)
    if not rows:
        return None
    taste = (np.asarray(weights) * models.inverse_norms[rows]) @ models.factors[rows]
    norm = float(np.linalg.norm(taste))
    return taste / norm if norm > 0 else None


def _lowest_where_unlearnt(models: ItemModels, values: np.ndarray) -> np.ndarray:
    """``values`` with the rows without factors at the lowest learnt value (or 0)."""
    if models.all_learnt:
        return values
    return np.where(models.learnt, values, min(0.0, float(values[models.learnt].min())))


class HybridStrategy:
    """The default personal strategy (see the module docstring)."""

    name = "hybrid"
    personalized = True

    def rank(self, index, profile: Profile | None, params, now_ms: int):
        from serving.recommend import CONTEXT_BOOST, Ranking, _cached, _context_codes, _reason_texts

        if profile is None:
            raise ValueError("the hybrid strategy needs a profile")
        models: ItemModels = index.models
        learnt_user = bool(profile.factors) and models.dim == len(profile.factors) and models.learnt.any()
        stage = stage_of(profile, learnt_user)
        w_base, w_content, w_co, w_sim, w_cf = BLENDS[stage]
        # Each pass over the rows costs ~5-20 us at 10,000 items: the popularity term is
        # computed once per index, the others add in place into one array.
        log_popularity = _cached(index, ("hybrid-log-popularity", ""),
                                 lambda: _frozen(np.log(_scaled(index.popularity) + POPULARITY_FLOOR)))
        scores = log_popularity * w_base
        # (component, weight, values, scale): the component's 0..1 value for a reason is
        # max(values[row], 0) / scale, worked out only for the rows returned.
        parts: list[tuple[str, float, np.ndarray, float]] = []
        recent = recent_sources(profile) if w_co or w_sim else []
        pairs = None
        if w_co:
            co, pairs = co_occurrence_scores(index, models, recent)
            # log(AFFINITY_FLOOR) everywhere, then the rest only where co-occurrence is not 0
            scores += w_co * LOG_AFFINITY_FLOOR
            touched = np.flatnonzero(co)
            scores[touched] += w_co * (np.log(co[touched] + AFFINITY_FLOOR) - LOG_AFFINITY_FLOOR)
            parts.append((SOURCE_CO_OCCURRENCE, w_co, co, 1.0))
        taste = recent_taste(index, models, recent) if w_sim else None
        user_factors = np.asarray(profile.factors, np.float64) if w_cf else None
        vectors = [v for v in (taste, user_factors) if v is not None]
        if vectors:  # one pass over the item factors for both
            products = (models.factors @ np.column_stack(vectors).astype(np.float32)).astype(np.float64)
        if taste is not None:
            similarity = products[:, 0] * models.inverse_norms
            similarity = _lowest_where_unlearnt(models, similarity)
            scores += w_sim * similarity
            parts.append((SOURCE_SIMILAR, w_sim, similarity, 1.0))
        if user_factors is not None:
            cf = _lowest_where_unlearnt(models, products[:, -1])
            scores += w_cf * cf
            top_cf = float(cf.max()) if len(cf) else 0.0
            if top_cf > 0:
                parts.append((SOURCE_COLLABORATIVE, w_cf, cf, top_cf))
        context = _context_codes(index, params)
        if context:
            boost = np.zeros(len(index.category_names))
            boost[list(context)] = math.log1p(CONTEXT_BOOST)
            scores += boost[index.category_codes]
        # Content is scored only for the rows that can reach the top: ``scores`` gets each
        # row's bound (its category's best content), ``exact`` the real content of some rows.
        exact = None
        if w_content:
            content_terms = content_parts(index, models, profile)
            bound = w_content * np.log(content_bounds(content_terms) + AFFINITY_FLOOR) + BOUND_MARGIN
            partial = scores
            scores = partial + bound[index.category_codes]
            content = np.zeros(len(index))  # filled for the rows scored exactly (reasons read it)
            parts.append((SOURCE_CONTENT, w_content, content, 1.0))

            def exact(rows: np.ndarray) -> np.ndarray:
                values = content_scores(index, models, profile, rows, content_terms)
                content[rows] = values
                np.add(values, AFFINITY_FLOOR, out=values)
                np.log(values, out=values)
                values *= w_content
                values += partial[rows]
                return values

        boosted = frozenset(context)
        popular_in, you_like = _reason_texts(index)
        names = index.category_names
        brand_names = models.brand_names
        liked = profile.categories

        def reason(row: int, code: int) -> str:
            source, best = SOURCE_POPULAR, REASON_FLOOR
            for name, weight, values, scale in parts:
                value = weight * float(values[row]) / scale
                if value > best:
                    source, best = name, value
            if source == SOURCE_CO_OCCURRENCE:
                position = strongest.get(row, -1) if strongest is not None else strongest_sources(pairs, [row]).get(row, -1)
                if position >= 0:
                    return f"often viewed with {recent[position][0]}"
            if source == SOURCE_COLLABORATIVE:
                return "people with similar taste liked it"
            if source == SOURCE_SIMILAR:
                return "similar to what you viewed"
            if source == SOURCE_CONTENT:
                if names[code] in liked:
                    return you_like[code]
                brand = brand_names[models.brand_codes[row]]
                if brand and brand in profile.brands:
                    return f"from {brand}, a brand you like"
                return "close to what you usually look at"
            if code in boosted:
                return popular_in[code]
            return trending_or_popular(models, row)

        strongest: dict[int, int] | None = None

        def reasons(rows: list[int], codes: list[int]) -> list[str]:
            nonlocal strongest
            strongest = strongest_sources(pairs, rows)
            return [reason(row, code) for row, code in zip(rows, codes)]

        return Ranking(scores, reason, stage=stage, reasons=reasons, exact=exact)


def trending_or_popular(models: ItemModels | None, row: int) -> str:
    """"trending now" when most of the row's popularity score is from the last hours."""
    if models is not None and models.trend_share[row] > 0.5:
        return "trending now"
    return "popular now"
