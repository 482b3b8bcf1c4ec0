"""``GetRecommendations`` at the wire: request validation -> ``RecommendParams``, and
``Recommendations`` -> response. Pure; no I/O. The ranking is in ``serving.recommend``.

>>> req = pulse_pb2.GetRecommendationsRequest(k=0, exclude_item_ids=["a"])
>>> req.filters.min_price = 10
>>> p = params_from_request(req, max_k=100, max_per_category=3)
>>> p.k, sorted(p.exclude), p.min_price, p.max_price
(10, ['a'], 10.0, None)
>>> params_from_request(pulse_pb2.GetRecommendationsRequest(k=101), max_k=100, max_per_category=3)
Traceback (most recent call last):
serving.errors.InvalidArgument: k = 101 is out of range: ask for 1..100 items (0 means 10)
"""

from __future__ import annotations

import math

from proto.pulse.v1 import pulse_pb2
from serving.errors import InvalidArgument
from serving.recommend import DEFAULT_K, Recommendations, RecommendParams

MAX_EXCLUDED_ITEMS = 1000


def _price(filters: pulse_pb2.RecommendationFilters, name: str) -> float | None:
    if not filters.HasField(name):
        return None
    value = getattr(filters, name)
    if math.isnan(value):
        raise InvalidArgument(f"filters.{name} must be a number, got NaN")
    return value


def params_from_request(request: pulse_pb2.GetRecommendationsRequest, *, max_k: int,
                        max_per_category: int) -> RecommendParams:
    """The validated parameters of ``request``; ``InvalidArgument`` names the bad field."""
    k = request.k or DEFAULT_K
    if not 1 <= k <= max_k:
        raise InvalidArgument(f"k = {request.k} is out of range: ask for 1..{max_k} items (0 means {DEFAULT_K})")
    excluded = request.exclude_item_ids
    if len(excluded) > MAX_EXCLUDED_ITEMS:
        raise InvalidArgument(f"exclude_item_ids has {len(excluded)} ids; the limit is {MAX_EXCLUDED_ITEMS}")
    filters = request.filters
    min_price, max_price = _price(filters, "min_price"), _price(filters, "max_price")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise InvalidArgument(f"filters.min_price ({min_price:g}) is greater than filters.max_price ({max_price:g})")
    context = request.context
    return RecommendParams(
        k=k,
        context_category=context.category,
        current_item_id=context.current_item_id,
        page_type=context.page_type,
        channel=context.channel,
        exclude=frozenset(excluded),
        category_prefix=filters.category_prefix,
        min_price=min_price,
        max_price=max_price,
        max_per_category=max_per_category,
    )


def write_recommendations(target: pulse_pb2.GetRecommendationsResponse,
                          result: Recommendations) -> pulse_pb2.GetRecommendationsResponse:
    """Fill the empty message ``target`` from ``result`` in place and return it."""
    add = target.items.add
    for item in result.items:
        add(item_id=item.item_id, score=item.score, reason=item.reason, category=item.category, price=item.price)
    target.strategy = result.strategy
    target.stage = result.stage
    target.personalized = result.personalized
    return target
