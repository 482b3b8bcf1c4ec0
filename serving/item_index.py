"""The item index recommendations rank (``serving.recommend``): every known item as
parallel read-only numpy arrays, one row per item in item id order, with each category's
rows and all rows pre-sorted by popularity. Built once per change of the stored items
(``serving.catalog``) and never changed after: a request ranks whichever index was
current when it started."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from operators.items import HALF_LIFE_MS, TREND_HALF_LIFE_MS, ItemStats
from serving.hybrid import NO_EXTRAS, ItemExtras, ItemModels, item_models

# The trending score's weight in the popularity column (``blended_popularity``).
TREND_BLEND = 0.5
NO_CATEGORY = ""  # items no event named a category for: exempt from the diversity cap


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class ItemIndex:
    """Every known item as parallel read-only arrays; row order is item id order."""

    ids: np.ndarray  # object array of item ids, sorted
    category_codes: np.ndarray  # intp (a gather with intp indices is ~3x faster than int32)
    category_names: tuple[str, ...]  # sorted; NO_CATEGORY for items without one
    prices: np.ndarray  # float64; 0.0 when unknown
    popularity: np.ndarray  # float64: decayed popularity at ``as_of_ms``
    as_of_ms: int  # the newest event time among the items (0 when empty)
    rows: Mapping[str, int]  # item id -> row
    codes: Mapping[str, int]  # category name -> code
    names: np.ndarray  # ``category_names`` as a numpy string array (vectorized prefix tests)
    # For the selection (``recommend``): plain lists, as per-element reads of numpy arrays cost ~10x.
    order: list[int]  # every row, best popularity first (ties: lower row first)
    by_category: tuple[list[int], ...]  # per category code: its rows in ``order``'s order
    category_sizes: list[int]  # per category code: its number of rows
    id_list: list[str]
    code_list: list[int]
    price_list: list[float]
    popularity_list: list[float]
    cache: dict = field(default_factory=dict, repr=False)  # per-index memo of category lookups
    models: ItemModels | None = None  # what the flow learnt per item (``serving.hybrid``)

    def __len__(self) -> int:
        return len(self.ids)

    def category_of(self, item_id: str) -> str | None:
        """The item's category (NO_CATEGORY if unknown); None if the item is not in the index."""
        row = self.rows.get(item_id)
        return None if row is None else self.category_names[self.category_codes[row]]


def decayed_popularity(scores: np.ndarray, refs: np.ndarray, at_ms: int) -> np.ndarray:
    """``ItemStats.popularity(at_ms)`` for every row at once (scores at their ``refs``)."""
    age = np.maximum(0, at_ms - refs)
    return scores * np.power(2.0, -age / HALF_LIFE_MS)


def blended_popularity(scores: np.ndarray, refs: np.ndarray, trends: np.ndarray | None,
                       trend_refs: np.ndarray | None, at_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """The popularity column: popularity (24 h half-life) plus ``TREND_BLEND`` times the
    trending score (1 h half-life) scaled to the same rate; and per row the trending
    part's share of it. An item seen at a steady rate gets a share of 1/3; a share over
    1/2 means its last hours were busier than its day ("trending now")."""
    popularity = decayed_popularity(scores, refs, at_ms)
    if trends is None or not len(trends):
        return popularity, np.zeros(len(popularity))
    age = np.maximum(0, at_ms - trend_refs)
    trend = trends * np.power(2.0, -age / TREND_HALF_LIFE_MS) * (TREND_BLEND * HALF_LIFE_MS / TREND_HALF_LIFE_MS)
    total = popularity + trend
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, trend / np.where(total > 0, total, 1.0), 0.0)
    return total, share


def make_index(ids: np.ndarray, category_codes: np.ndarray, category_names: tuple[str, ...],
               prices: np.ndarray, scores: np.ndarray, refs: np.ndarray, as_of_ms: int | None = None,
               rows: Mapping[str, int] | None = None, breathe: Callable[[], None] | None = None, *,
               trends: np.ndarray | None = None, trend_refs: np.ndarray | None = None,
               extras: Sequence[tuple] | None = None, previous_models: ItemModels | None = None) -> ItemIndex:
    """An index from columns already in row (item id) order; ``category_names`` sorted and
    ``category_codes`` indexing it. ``rows`` may be passed when the ids are those of a
    previous index (it is then reused), and that index's ``models`` as ``previous_models``
    (see ``item_models``). The arrays are taken over (made read-only).

    Sorting and listing the rows for the selection takes ~2 ms for 10,000 items; ``breathe``,
    if given, is called between its steps (each under ~0.8 ms), e.g. to let request
    threads take the GIL.
    """
    pause = breathe or (lambda: None)
    reused_rows = rows is not None
    at = as_of_ms if as_of_ms is not None else (int(refs.max()) if len(refs) else 0)
    popularity, trend_share = blended_popularity(scores, refs, trends, trend_refs, at)
    order = np.argsort(-popularity, kind="stable")  # stable: ties by row
    pause()
    # Stable again: each category's rows keep ``order``'s order.
    grouped = order[np.argsort(category_codes[order], kind="stable")]
    sizes = np.bincount(category_codes, minlength=len(category_names))
    pause()
    bounds = np.cumsum(sizes).tolist()
    grouped_list = grouped.tolist()
    by_category = tuple(grouped_list[start:end] for start, end in zip([0, *bounds[:-1]], bounds))
    order_list = order.tolist()
    pause()
    id_list = ids.tolist()
    code_list = category_codes.tolist()
    lists = dict(price_list=prices.tolist(), popularity_list=popularity.tolist())
    pause()
    if rows is None:
        rows = MappingProxyType({item_id: row for row, item_id in enumerate(id_list)})
    models = item_models(extras if extras is not None else [NO_EXTRAS] * len(ids), prices, trend_share, rows,
                         previous_models if reused_rows else None, pause=pause)
    pause()
    return ItemIndex(
        ids=_frozen(ids),
        category_codes=_frozen(category_codes),
        category_names=category_names,
        prices=_frozen(prices),
        popularity=_frozen(popularity),
        as_of_ms=at,
        rows=rows,
        codes=MappingProxyType({name: code for code, name in enumerate(category_names)}),
        names=_frozen(np.array(category_names, dtype=np.str_)),
        order=order_list,
        by_category=by_category,
        category_sizes=sizes.tolist(),
        id_list=id_list,
        code_list=code_list,
        models=models,
        **lists,
    )


def build_index(items: Iterable[ItemStats], as_of_ms: int | None = None) -> ItemIndex:
    """An index over ``items`` with popularity taken at ``as_of_ms`` (default: their newest
    event time, so the index depends on the stored items only, not on the clock)."""
    stats = sorted(items, key=lambda s: s.item_id)
    n = len(stats)
    names = tuple(sorted({s.category or NO_CATEGORY for s in stats}))
    codes = {name: code for code, name in enumerate(names)}
    ids = np.empty(n, dtype=object)
    ids[:] = [s.item_id for s in stats]
    return make_index(
        ids,
        np.fromiter((codes[s.category or NO_CATEGORY] for s in stats), np.intp, n),
        names,
        np.fromiter((s.price or 0.0 for s in stats), np.float64, n),
        np.fromiter((s.score for s in stats), np.float64, n),
        np.fromiter((s.ref_ms for s in stats), np.int64, n),
        as_of_ms,
        trends=np.fromiter((s.trend for s in stats), np.float64, n),
        trend_refs=np.fromiter((s.trend_ref_ms for s in stats), np.int64, n),
        extras=[ItemExtras(s.brand, s.factors, s.neighbors, s.in_stock) for s in stats],
    )


EMPTY_INDEX = build_index(())
