import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsentRegime(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENT_REGIME_UNSPECIFIED: _ClassVar[ConsentRegime]
    CONSENT_REGIME_OPT_OUT: _ClassVar[ConsentRegime]
    CONSENT_REGIME_OPT_IN: _ClassVar[ConsentRegime]
CONSENT_REGIME_UNSPECIFIED: ConsentRegime
CONSENT_REGIME_OPT_OUT: ConsentRegime
CONSENT_REGIME_OPT_IN: ConsentRegime

class GetExperimentResultsRequest(_message.Message):
    __slots__ = ("experiment_id",)
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    def __init__(self, experiment_id: _Optional[str] = ...) -> None: ...

class GetExperimentResultsResponse(_message.Message):
    __slots__ = ("experiment_id", "primary_metric", "variants", "comparisons", "sample_ratio", "days")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_METRIC_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATIO_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    primary_metric: str
    variants: _containers.RepeatedCompositeFieldContainer[VariantResult]
    comparisons: _containers.RepeatedCompositeFieldContainer[Comparison]
    sample_ratio: SampleRatio
    days: int
    def __init__(self, experiment_id: _Optional[str] = ..., primary_metric: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[VariantResult, _Mapping]]] = ..., comparisons: _Optional[_Iterable[_Union[Comparison, _Mapping]]] = ..., sample_ratio: _Optional[_Union[SampleRatio, _Mapping]] = ..., days: _Optional[int] = ...) -> None: ...

class VariantResult(_message.Message):
    __slots__ = ("variant_id", "control", "weight", "units", "converted", "engaged", "revenue", "conversion_rate", "click_through_rate", "revenue_per_unit")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    ENGAGED_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    REVENUE_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    control: bool
    weight: float
    units: int
    converted: int
    engaged: int
    revenue: float
    conversion_rate: float
    click_through_rate: float
    revenue_per_unit: float
    def __init__(self, variant_id: _Optional[str] = ..., control: _Optional[bool] = ..., weight: _Optional[float] = ..., units: _Optional[int] = ..., converted: _Optional[int] = ..., engaged: _Optional[int] = ..., revenue: _Optional[float] = ..., conversion_rate: _Optional[float] = ..., click_through_rate: _Optional[float] = ..., revenue_per_unit: _Optional[float] = ...) -> None: ...

class Comparison(_message.Message):
    __slots__ = ("variant_id", "metric", "control_value", "variant_value", "difference", "ci_low", "ci_high", "relative_uplift", "p_value", "always_valid_p_value", "cs_low", "cs_high", "significant", "required_units_per_variant")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    CONTROL_VALUE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_UPLIFT_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    ALWAYS_VALID_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    CS_LOW_FIELD_NUMBER: _ClassVar[int]
    CS_HIGH_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_UNITS_PER_VARIANT_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    metric: str
    control_value: float
    variant_value: float
    difference: float
    ci_low: float
    ci_high: float
    relative_uplift: float
    p_value: float
    always_valid_p_value: float
    cs_low: float
    cs_high: float
    significant: bool
    required_units_per_variant: int
    def __init__(self, variant_id: _Optional[str] = ..., metric: _Optional[str] = ..., control_value: _Optional[float] = ..., variant_value: _Optional[float] = ..., difference: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., relative_uplift: _Optional[float] = ..., p_value: _Optional[float] = ..., always_valid_p_value: _Optional[float] = ..., cs_low: _Optional[float] = ..., cs_high: _Optional[float] = ..., significant: _Optional[bool] = ..., required_units_per_variant: _Optional[int] = ...) -> None: ...

class SampleRatio(_message.Message):
    __slots__ = ("chi_square", "p_value", "mismatch")
    CHI_SQUARE_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    MISMATCH_FIELD_NUMBER: _ClassVar[int]
    chi_square: float
    p_value: float
    mismatch: bool
    def __init__(self, chi_square: _Optional[float] = ..., p_value: _Optional[float] = ..., mismatch: _Optional[bool] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("user_id", "slots", "context", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    slots: _containers.RepeatedScalarFieldContainer[str]
    context: DecisionContext
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., slots: _Optional[_Iterable[str]] = ..., context: _Optional[_Union[DecisionContext, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DecisionContext(_message.Message):
    __slots__ = ("page_type", "channel", "category")
    PAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    page_type: str
    channel: str
    category: str
    def __init__(self, page_type: _Optional[str] = ..., channel: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decisions", "personalized")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[SlotDecision]
    personalized: bool
    def __init__(self, decisions: _Optional[_Iterable[_Union[SlotDecision, _Mapping]]] = ..., personalized: _Optional[bool] = ...) -> None: ...

class SlotDecision(_message.Message):
    __slots__ = ("slot", "module_id", "payload_json", "reason", "experiment")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    slot: str
    module_id: str
    payload_json: str
    reason: str
    experiment: ExperimentAssignment
    def __init__(self, slot: _Optional[str] = ..., module_id: _Optional[str] = ..., payload_json: _Optional[str] = ..., reason: _Optional[str] = ..., experiment: _Optional[_Union[ExperimentAssignment, _Mapping]] = ...) -> None: ...

class ExperimentAssignment(_message.Message):
    __slots__ = ("experiment_id", "variant_id", "control")
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    experiment_id: str
    variant_id: str
    control: bool
    def __init__(self, experiment_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., control: _Optional[bool] = ...) -> None: ...

class GetSegmentsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetSegmentsResponse(_message.Message):
    __slots__ = ("profile_id", "segments")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    segments: _containers.RepeatedCompositeFieldContainer[SegmentMembership]
    def __init__(self, profile_id: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[SegmentMembership, _Mapping]]] = ...) -> None: ...

class SegmentMembership(_message.Message):
    __slots__ = ("segment_id", "entered_at", "segment_version")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTERED_AT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    entered_at: _timestamp_pb2.Timestamp
    segment_version: str
    def __init__(self, segment_id: _Optional[str] = ..., entered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., segment_version: _Optional[str] = ...) -> None: ...

class ListSegmentMembersRequest(_message.Message):
    __slots__ = ("segment_id", "page_size", "page_token")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    page_size: int
    page_token: str
    def __init__(self, segment_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSegmentMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[SegmentMember]
    next_page_token: str
    def __init__(self, members: _Optional[_Iterable[_Union[SegmentMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SegmentMember(_message.Message):
    __slots__ = ("profile_id", "entered_at")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTERED_AT_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    entered_at: _timestamp_pb2.Timestamp
    def __init__(self, profile_id: _Optional[str] = ..., entered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: Profile
    def __init__(self, profile: _Optional[_Union[Profile, _Mapping]] = ...) -> None: ...

class GetRecommendationsRequest(_message.Message):
    __slots__ = ("user_id", "k", "context", "exclude_item_ids", "filters")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    context: RecommendationContext
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: RecommendationFilters
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., context: _Optional[_Union[RecommendationContext, _Mapping]] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[_Union[RecommendationFilters, _Mapping]] = ...) -> None: ...

class RecommendationContext(_message.Message):
    __slots__ = ("page_type", "current_item_id", "category", "channel")
    PAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    page_type: str
    current_item_id: str
    category: str
    channel: str
    def __init__(self, page_type: _Optional[str] = ..., current_item_id: _Optional[str] = ..., category: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class RecommendationFilters(_message.Message):
    __slots__ = ("category_prefix", "min_price", "max_price")
    CATEGORY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    MIN_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    category_prefix: str
    min_price: float
    max_price: float
    def __init__(self, category_prefix: _Optional[str] = ..., min_price: _Optional[float] = ..., max_price: _Optional[float] = ...) -> None: ...

class GetRecommendationsResponse(_message.Message):
    __slots__ = ("items", "strategy", "personalized", "experiment", "stage")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    strategy: str
    personalized: bool
    experiment: ExperimentAssignment
    stage: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., strategy: _Optional[str] = ..., personalized: _Optional[bool] = ..., experiment: _Optional[_Union[ExperimentAssignment, _Mapping]] = ..., stage: _Optional[str] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "reason", "category", "price")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    reason: str
    category: str
    price: float
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ...) -> None: ...

class Profile(_message.Message):
    __slots__ = ("profile_id", "event_counts", "last_seen", "first_seen", "total_spend", "orders", "cart", "top_categories", "last_device", "last_channel", "last_location", "version", "aliases", "consent", "personalization_allowed", "scores")
    class EventCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SPEND_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    CART_FIELD_NUMBER: _ClassVar[int]
    TOP_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    LAST_DEVICE_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LAST_LOCATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    event_counts: _containers.ScalarMap[str, int]
    last_seen: _timestamp_pb2.Timestamp
    first_seen: _timestamp_pb2.Timestamp
    total_spend: float
    orders: int
    cart: _containers.RepeatedCompositeFieldContainer[CartLine]
    top_categories: _containers.RepeatedCompositeFieldContainer[CategoryCount]
    last_device: str
    last_channel: str
    last_location: Geo
    version: int
    aliases: _containers.RepeatedScalarFieldContainer[str]
    consent: Consent
    personalization_allowed: bool
    scores: _containers.ScalarMap[str, float]
    def __init__(self, profile_id: _Optional[str] = ..., event_counts: _Optional[_Mapping[str, int]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_spend: _Optional[float] = ..., orders: _Optional[int] = ..., cart: _Optional[_Iterable[_Union[CartLine, _Mapping]]] = ..., top_categories: _Optional[_Iterable[_Union[CategoryCount, _Mapping]]] = ..., last_device: _Optional[str] = ..., last_channel: _Optional[str] = ..., last_location: _Optional[_Union[Geo, _Mapping]] = ..., version: _Optional[int] = ..., aliases: _Optional[_Iterable[str]] = ..., consent: _Optional[_Union[Consent, _Mapping]] = ..., personalization_allowed: _Optional[bool] = ..., scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Consent(_message.Message):
    __slots__ = ("analytics", "personalization", "marketing", "default_regime")
    ANALYTICS_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    MARKETING_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REGIME_FIELD_NUMBER: _ClassVar[int]
    analytics: ConsentDecision
    personalization: ConsentDecision
    marketing: ConsentDecision
    default_regime: ConsentRegime
    def __init__(self, analytics: _Optional[_Union[ConsentDecision, _Mapping]] = ..., personalization: _Optional[_Union[ConsentDecision, _Mapping]] = ..., marketing: _Optional[_Union[ConsentDecision, _Mapping]] = ..., default_regime: _Optional[_Union[ConsentRegime, str]] = ...) -> None: ...

class ConsentDecision(_message.Message):
    __slots__ = ("granted", "explicit", "decided_at")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    explicit: bool
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, granted: _Optional[bool] = ..., explicit: _Optional[bool] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReloadConfigurationRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadConfigurationResponse(_message.Message):
    __slots__ = ("modules", "experiments")
    MODULES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    modules: int
    experiments: int
    def __init__(self, modules: _Optional[int] = ..., experiments: _Optional[int] = ...) -> None: ...

class EraseUserRequest(_message.Message):
    __slots__ = ("user_id", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class EraseUserResponse(_message.Message):
    __slots__ = ("request_id", "profile_id", "accepted")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    profile_id: str
    accepted: bool
    def __init__(self, request_id: _Optional[str] = ..., profile_id: _Optional[str] = ..., accepted: _Optional[bool] = ...) -> None: ...

class ExportUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ExportUserResponse(_message.Message):
    __slots__ = ("profile_id", "document_json")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    document_json: str
    def __init__(self, profile_id: _Optional[str] = ..., document_json: _Optional[str] = ...) -> None: ...

class CartLine(_message.Message):
    __slots__ = ("item_id", "quantity", "unit_price", "category", "added_at")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    quantity: int
    unit_price: float
    category: str
    added_at: _timestamp_pb2.Timestamp
    def __init__(self, item_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price: _Optional[float] = ..., category: _Optional[str] = ..., added_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CategoryCount(_message.Message):
    __slots__ = ("category", "count")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    category: str
    count: int
    def __init__(self, category: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class Geo(_message.Message):
    __slots__ = ("country", "city", "lat", "lon")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LON_FIELD_NUMBER: _ClassVar[int]
    country: str
    city: str
    lat: float
    lon: float
    def __init__(self, country: _Optional[str] = ..., city: _Optional[str] = ..., lat: _Optional[float] = ..., lon: _Optional[float] = ...) -> None: ...
