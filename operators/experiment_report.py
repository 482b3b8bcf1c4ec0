"""An experiment's results from its per-variant daily totals (``operators.attribution``).

Each non-control variant is compared with the control on the primary metric and the
guardrails:

- ``conversion`` / ``click_through``: share of enrolled units that purchased / engaged
  within the attribution window; two-proportion z-test (pooled), Wald CI, relative uplift;
- ``revenue``: revenue per enrolled unit; Welch's t-test from the per-unit sums of
  revenue and of squared revenue.

Peeking is allowed: the always-valid p-value and confidence sequence (mixture SPRT,
``operators.stats.AlwaysValid``) are updated with the cumulative totals of every day
(UTC, event time) in order, so a dashboard may look every day without inflating false
positives; ``significant`` is decided by that p-value. Looks start once both arms have
``MIN_UNITS_PER_LOOK`` units (the test is asymptotic: early standard errors are noisy). The mixing variance is
tau = 10 % of the control's value (the minimum effect worth detecting). The sample-ratio
check compares enrolled units with the configured weights (chi-squared; mismatch at
p < 0.001: the results should not be trusted). ``required_units`` is per variant, for a
10 % relative change at 80 % power.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.attribution import Totals
from operators.experiments import Experiment
from operators.stats import (AlwaysValid, SrmResult, sample_size_means, sample_size_proportions, srm_check, summary,
                             two_proportion_ztest, welch_ttest)

MDE_RELATIVE = 0.10
# Looks start once each arm has this many units: the sequential test's normal approximation
# needs the standard error to be estimated well (it is asymptotic in the sample size).
MIN_UNITS_PER_LOOK = 200


@dataclass
class VariantSummary:
    variant_id: str
    control: bool
    weight: float
    totals: Totals

    def rate(self, metric: str) -> float:
        t = self.totals
        if metric == "revenue":
            return t.revenue / t.units if t.units else 0.0
        hits = t.converted if metric == "conversion" else t.engaged
        return hits / t.units if t.units else 0.0


@dataclass
class Comparison:
    variant_id: str
    metric: str
    control_value: float
    variant_value: float
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    relative_uplift: float | None = None
    p_value: float | None = None
    always_valid_p: float | None = None
    cs_low: float | None = None
    cs_high: float | None = None
    significant: bool = False
    required_units: int | None = None
    history: list[tuple[int, float, float, float]] = field(default_factory=list)  # (day, diff, cs low, cs high)


@dataclass
class Report:
    experiment: Experiment
    days: list[int]
    variants: list[VariantSummary]
    comparisons: list[Comparison]
    srm: SrmResult | None


def _test(metric: str, a: Totals, b: Totals, alpha: float):
    """(diff, se, ci_low, ci_high, relative uplift, p) for b against a, or None if not testable."""
    if a.units < 2 or b.units < 2:
        return None
    if metric in ("conversion", "click_through"):
        ca, cb = (a.converted, b.converted) if metric == "conversion" else (a.engaged, b.engaged)
        r = two_proportion_ztest(ca, a.units, cb, b.units, alpha)
        return r.diff, r.se, r.ci_low, r.ci_high, r.relative_uplift, r.p_value
    mean_a, var_a = summary(a.units, a.revenue, a.revenue_sq)
    mean_b, var_b = summary(b.units, b.revenue, b.revenue_sq)
    if var_a == 0 and var_b == 0:
        return None
    r = welch_ttest(mean_a, var_a, a.units, mean_b, var_b, b.units, alpha)
    return r.diff, r.se, r.ci_low, r.ci_high, r.relative_uplift, r.p_value


def _required(metric: str, control: Totals, alpha: float) -> int | None:
    if control.units < 2:
        return None
    if metric == "revenue":
        mean, var = summary(control.units, control.revenue, control.revenue_sq)
        if mean <= 0 or var <= 0:
            return None
        return sample_size_means(var ** 0.5, MDE_RELATIVE * mean, alpha)
    hits = control.converted if metric == "conversion" else control.engaged
    p = hits / control.units
    if not 0 < p < 1 or p * (1 + MDE_RELATIVE) >= 1:
        return None
    return sample_size_proportions(p, MDE_RELATIVE, alpha)


def analyze(exp: Experiment, daily: dict[tuple[str, int], Totals], alpha: float = 0.05) -> Report:
    """``daily``: (variant id, day) -> that day's change of the totals."""
    days = sorted({day for _v, day in daily})
    cumulative: dict[str, list[Totals]] = {}
    for variant in exp.variants:
        running = Totals()
        series = []
        for day in days:
            running.add(daily.get((variant.id, day), Totals()))
            series.append(Totals(**vars(running)))
        cumulative[variant.id] = series
    final = {v.id: (cumulative[v.id][-1] if days else Totals()) for v in exp.variants}
    control = exp.control or exp.variants[0]
    variants = [VariantSummary(v.id, v.id == control.id, v.weight, final[v.id]) for v in exp.variants]
    comparisons = []
    for metric in dict.fromkeys((exp.metric, *exp.guardrails)):
        control_summary = next(v for v in variants if v.control)
        for vs in variants:
            if vs.control:
                continue
            comp = Comparison(vs.variant_id, metric, control_summary.rate(metric), vs.rate(metric))
            tau = MDE_RELATIVE * control_summary.rate(metric) or 0.001
            seq = AlwaysValid(alpha, tau * tau)
            for i, day in enumerate(days):
                if min(cumulative[control.id][i].units, cumulative[vs.variant_id][i].units) < MIN_UNITS_PER_LOOK:
                    continue
                result = _test(metric, cumulative[control.id][i], cumulative[vs.variant_id][i], alpha)
                if result is None or result[1] <= 0:
                    continue
                seq.update(result[0], result[1])
                low, high = seq.interval
                comp.history.append((day, result[0], low, high))
            result = _test(metric, final[control.id], final[vs.variant_id], alpha)
            if result is not None:
                comp.difference, _se, comp.ci_low, comp.ci_high, comp.relative_uplift, comp.p_value = result
            if seq.looks:
                comp.always_valid_p = seq.p_value
                comp.cs_low, comp.cs_high = seq.interval
                comp.significant = seq.significant
            comp.required_units = _required(metric, final[control.id], alpha)
            comparisons.append(comp)
    units = [final[v.id].units for v in exp.variants]
    srm = srm_check(units, [v.weight for v in exp.variants]) if sum(units) > 0 else None
    return Report(exp, days, variants, comparisons, srm)


def _fmt(value, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}%" if pct else f"{value:.4g}"


def render(report: Report) -> str:
    """A table for a terminal."""
    exp = report.experiment
    lines = [f"experiment {exp.id} (surface {exp.surface}, primary metric {exp.metric}, "
             f"window {exp.window_ms // 3_600_000} h) - {len(report.days)} days of data"]
    lines.append(f"  {'variant (*control)':<16} {'weight':>6} {'units':>9} {'conv rate':>10} {'CTR':>8} {'rev/unit':>10}")
    for v in report.variants:
        lines.append(f"  {v.variant_id + (' *' if v.control else ''):<16} {v.weight:>6.2f} "
                     f"{v.totals.units:>9,} {v.rate('conversion'):>10.4f} {v.rate('click_through'):>8.4f} "
                     f"{v.rate('revenue'):>10.2f}")
    if report.srm is not None:
        verdict = "MISMATCH - do not trust these results" if report.srm.mismatch else "ok"
        lines.append(f"  sample ratio: chi2 {report.srm.statistic:.2f}, p {report.srm.p_value:.3g} ({verdict})")
    for c in report.comparisons:
        lines.append(f"  {c.variant_id} vs control on {c.metric}: diff {_fmt(c.difference)} "
                     f"[{_fmt(c.ci_low)}, {_fmt(c.ci_high)}], uplift {_fmt(c.relative_uplift, pct=True)}, "
                     f"p {_fmt(c.p_value)}; always-valid p {_fmt(c.always_valid_p)} "
                     f"[{_fmt(c.cs_low)}, {_fmt(c.cs_high)}] -> "
                     f"{'SIGNIFICANT' if c.significant else 'not significant'}"
                     + (f"; needs {c.required_units:,} units per variant for a 10% change"
                        if c.required_units else ""))
    return "\n".join(lines)
