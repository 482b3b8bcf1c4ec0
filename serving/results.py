"""GetExperimentResults: the report of ``operators.experiment_report`` as ``pulse.v1`` messages."""

from __future__ import annotations

import re

from operators.experiment_report import analyze
from proto.pulse.v1 import pulse_pb2
from serving.errors import InvalidArgument, NotFound
from serving.lookup import read_store
from state.experiment_totals import daily_totals

_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")


def experiment_results(reader, config, experiment_id: str) -> pulse_pb2.GetExperimentResultsResponse:
    if not experiment_id:
        raise InvalidArgument("experiment_id is required")
    if not _ID.fullmatch(experiment_id):
        raise InvalidArgument(f"experiment_id {experiment_id[:80]!r} is not an experiment id ([a-z][a-z0-9_]*)")
    _catalog, experiments = config.current()
    exp = experiments.by_id.get(experiment_id)
    if exp is None:
        known = ", ".join(sorted(experiments.by_id)) or "none configured"
        raise NotFound(f"no experiment {experiment_id!r} (experiments: {known})")
    report = analyze(exp, read_store(lambda: daily_totals(reader, exp.id)))
    out = pulse_pb2.GetExperimentResultsResponse(experiment_id=exp.id, primary_metric=exp.metric,
                                                 days=len(report.days))
    for v in report.variants:
        t = v.totals
        out.variants.add(variant_id=v.variant_id, control=v.control, weight=v.weight, units=t.units,
                         converted=t.converted, engaged=t.engaged, revenue=t.revenue,
                         conversion_rate=v.rate("conversion"), click_through_rate=v.rate("click_through"),
                         revenue_per_unit=v.rate("revenue"))
    for c in report.comparisons:
        out.comparisons.add(variant_id=c.variant_id, metric=c.metric, control_value=c.control_value,
                            variant_value=c.variant_value, difference=_num(c.difference), ci_low=_num(c.ci_low),
                            ci_high=_num(c.ci_high), relative_uplift=_num(c.relative_uplift),
                            p_value=_num(c.p_value, 1.0), always_valid_p_value=_num(c.always_valid_p, 1.0),
                            cs_low=_num(c.cs_low), cs_high=_num(c.cs_high), significant=c.significant,
                            required_units_per_variant=c.required_units or 0)
    if report.srm is not None:
        out.sample_ratio.chi_square = report.srm.statistic
        out.sample_ratio.p_value = report.srm.p_value
        out.sample_ratio.mismatch = report.srm.mismatch
    return out


def _num(value, default: float = 0.0) -> float:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return default
    return float(value)
