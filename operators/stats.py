"""Experiment statistics: fixed-horizon tests, always-valid sequential tests, SRM, power.

Pure Python (``math`` only; the special functions are in ``operators.distributions``),
checked against SciPy/statsmodels in ``tests/operators/test_stats.py``. Variant ``b`` is the
treatment and ``a`` the control throughout, so a difference is always ``b - a``.

Conversion (a binary metric):

>>> r = two_proportion_ztest(conv_a=500, n_a=10_000, conv_b=600, n_b=10_000)
>>> round(r.diff, 4), round(r.z, 3), round(r.p_value, 5), r.significant
(0.01, 3.102, 0.00192, True)
>>> round(r.relative_uplift, 3), round(r.rel_ci_low, 3), round(r.rel_ci_high, 3)
(0.2, 0.069, 0.347)

A continuous metric from the per-variant running count, sum and sum of squares:

>>> mean_a, var_a = summary(count=400, total=4_000.0, total_sq=80_000.0)
>>> mean_b, var_b = summary(count=500, total=5_500.0, total_sq=110_000.0)
>>> m = welch_ttest(mean_a, var_a, 400, mean_b, var_b, 500)
>>> round(m.diff, 3), round(m.t, 3), round(m.df, 1), round(m.p_value, 4)
(1.0, 1.492, 853.2, 0.136)

Peeking: an always-valid p-value never has to be "corrected" for looking every day.

>>> seq = AlwaysValid(alpha=0.05, tau2=0.01**2)
>>> for day_diff, day_se in [(0.004, 0.006), (0.008, 0.004), (0.009, 0.0028)]:
...     p = seq.update(day_diff, day_se)
>>> round(seq.p_value, 4), seq.significant
(0.0308, True)

Sample ratio mismatch and sizing:

>>> srm_check([6_000, 4_000], [0.5, 0.5]).mismatch
True
>>> sample_size_proportions(p_base=0.05, mde_relative=0.1)
31234
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Sequence

from operators.distributions import (chi2_sf, norm_cdf, norm_ppf, norm_sf, regularized_beta, regularized_gamma_q,
                                     t_isf, t_ppf, t_sf, t_two_sided)

__all__ = [
    "AlwaysValid",
    "MeanTest",
    "ProportionTest",
    "SrmResult",
    "chi2_sf",
    "confidence_sequence",
    "log_mixture_likelihood_ratio",
    "msprt_pvalue",
    "norm_cdf",
    "norm_ppf",
    "norm_sf",
    "power_means",
    "power_proportions",
    "regularized_beta",
    "regularized_gamma_q",
    "sample_size_means",
    "sample_size_proportions",
    "srm_check",
    "summary",
    "t_ppf",
    "t_sf",
    "two_proportion_ztest",
    "welch_ttest",
]

_SQRT2 = math.sqrt(2.0)



# --------------------------------------------------------------------------- validation


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}")
    return value


def _count(name: str, value: object) -> int:
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer count, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def _finite(name: str, value: float) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _positive(name: str, value: float) -> float:
    x = _finite(name, value)
    if x <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return x


# --------------------------------------------------------------------------- proportions


@dataclass(frozen=True)
class ProportionTest:
    """Two-proportion comparison, ``b`` against ``a``.

    ``z``/``p_value`` use the pooled standard error (the test of ``p_a == p_b``, as
    statsmodels ``proportions_ztest``); ``se`` and the CI for ``diff`` are the unpooled
    Wald ones. ``relative_uplift`` is ``p_b/p_a - 1`` with a delta-method CI on the log
    ratio; these are None where the log ratio is undefined (no conversion in a variant).
    """

    p_a: float
    p_b: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    relative_uplift: float | None
    rel_ci_low: float | None
    rel_ci_high: float | None
    alpha: float
    significant: bool


def two_proportion_ztest(conv_a: int, n_a: int, conv_b: int, n_b: int, alpha: float = 0.05) -> ProportionTest:
    """Pooled two-sided z-test for ``p_b - p_a`` with Wald and log-ratio intervals.

    - ``z = (p_b - p_a) / sqrt(p(1-p)(1/n_a + 1/n_b))`` with ``p = (conv_a+conv_b)/(n_a+n_b)``;
      ``p_value = 2(1 - Φ(|z|))``. When every unit or none converted, the pooled variance
      is 0 (and so is the difference): then ``z = 0``, ``p_value = 1``.
    - CI for the difference: ``diff ± z_{1-α/2} sqrt(p_a(1-p_a)/n_a + p_b(1-p_b)/n_b)``.
    - CI for the relative uplift (Katz et al. 1978, delta method on ``log(p_b/p_a)``):
      ``exp(log(p_b/p_a) ± z_{1-α/2} sqrt((1-p_a)/(n_a p_a) + (1-p_b)/(n_b p_b))) - 1``
      (statsmodels ``confint_proportions_2indep(compare="ratio", method="log")``).

    >>> r = two_proportion_ztest(10, 100, 20, 100)
    >>> round(r.z, 4), round(r.p_value, 4), round(r.ci_low, 4), round(r.ci_high, 4)
    (1.9803, 0.0477, 0.002, 0.198)
    >>> two_proportion_ztest(0, 100, 3, 100).relative_uplift is None
    True
    >>> two_proportion_ztest(5, 4, 1, 10)
    Traceback (most recent call last):
    ...
    ValueError: conv_a (5) exceeds n_a (4)
    """
    alpha = _check_alpha(alpha)
    conv_a, n_a = _count("conv_a", conv_a), _count("n_a", n_a)
    conv_b, n_b = _count("conv_b", conv_b), _count("n_b", n_b)
    for name, conv, n in (("a", conv_a, n_a), ("b", conv_b, n_b)):
        if n == 0:
            raise ValueError(f"n_{name} must be > 0 (variant {name!r} has no units)")
        if conv > n:
            raise ValueError(f"conv_{name} ({conv}) exceeds n_{name} ({n})")
    p_a, p_b = conv_a / n_a, conv_b / n_b
    diff = p_b - p_a
    pooled = (conv_a + conv_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    z = diff / se_pooled if se_pooled > 0.0 else 0.0
    p_value = min(1.0, math.erfc(abs(z) / _SQRT2))
    crit = norm_ppf(1.0 - alpha / 2.0)
    se = math.sqrt(p_a * (1.0 - p_a) / n_a + p_b * (1.0 - p_b) / n_b)
    rel = rel_low = rel_high = None
    if conv_a > 0:
        rel = p_b / p_a - 1.0
        if conv_b > 0:
            log_ratio = math.log(p_b / p_a)
            se_log = math.sqrt((1.0 - p_a) / conv_a + (1.0 - p_b) / conv_b)
            rel_low = math.exp(log_ratio - crit * se_log) - 1.0
            rel_high = math.exp(log_ratio + crit * se_log) - 1.0
    return ProportionTest(
        p_a=p_a,
        p_b=p_b,
        diff=diff,
        se=se,
        ci_low=diff - crit * se,
        ci_high=diff + crit * se,
        z=z,
        p_value=p_value,
        relative_uplift=rel,
        rel_ci_low=rel_low,
        rel_ci_high=rel_high,
        alpha=alpha,
        significant=p_value < alpha,
    )


# --------------------------------------------------------------------------- means


def summary(count: int, total: float, total_sq: float) -> tuple[float, float]:
    """``(mean, sample variance)`` from the running count, sum and sum of squares.

    The variance is ``(Σx² - (Σx)²/n) / (n - 1)`` (clamped at 0 against rounding).

    >>> summary(4, 10.0, 30.0)  # values 1, 2, 3, 4
    (2.5, 1.6666666666666667)
    """
    n = _count("count", count)
    if n < 2:
        raise ValueError(f"count must be >= 2 for a sample variance, got {n}")
    total, total_sq = _finite("total", total), _finite("total_sq", total_sq)
    mean = total / n
    var = (total_sq - total * total / n) / (n - 1)
    return mean, max(var, 0.0)


@dataclass(frozen=True)
class MeanTest:
    """Welch two-sample t-test of ``mean_b - mean_a``.

    ``relative_uplift`` is ``mean_b/mean_a - 1`` (None when ``mean_a == 0``) with a
    delta-method normal interval ``rel_ci_low``/``rel_ci_high``.
    """

    mean_a: float
    mean_b: float
    diff: float
    se: float
    t: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    relative_uplift: float | None
    rel_ci_low: float | None
    rel_ci_high: float | None
    alpha: float
    significant: bool


def welch_ttest(
    mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int, alpha: float = 0.05
) -> MeanTest:
    """Welch's unequal-variance t-test from summary statistics (sample variances, ddof=1).

    - ``se = sqrt(var_a/n_a + var_b/n_b)``, ``t = (mean_b - mean_a)/se``;
    - Welch–Satterthwaite ``df = se⁴ / ((var_a/n_a)²/(n_a-1) + (var_b/n_b)²/(n_b-1))``;
    - ``p_value = 2 P(T_df > |t|) = I_{df/(df+t²)}(df/2, 1/2)``; CI ``diff ± t_{1-α/2,df} se``;
    - relative uplift ``r = mean_b/mean_a - 1`` with the delta-method standard error
      ``sqrt(var_b/(n_b mean_a²) + mean_b² var_a/(n_a mean_a⁴))`` and a normal quantile
      (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics").

    >>> m = welch_ttest(10.0, 4.0, 20, 11.0, 9.0, 30)
    >>> round(m.t, 4), round(m.df, 2), round(m.p_value, 4)
    (1.4142, 48.0, 0.1638)
    """
    alpha = _check_alpha(alpha)
    n_a, n_b = _count("n_a", n_a), _count("n_b", n_b)
    for name, n in (("n_a", n_a), ("n_b", n_b)):
        if n < 2:
            raise ValueError(f"{name} must be >= 2 for a t-test, got {n}")
    mean_a, mean_b = _finite("mean_a", mean_a), _finite("mean_b", mean_b)
    var_a, var_b = _finite("var_a", var_a), _finite("var_b", var_b)
    if var_a < 0.0 or var_b < 0.0:
        raise ValueError(f"variances must be >= 0, got var_a={var_a!r}, var_b={var_b!r}")
    va, vb = var_a / n_a, var_b / n_b
    se2 = va + vb
    if se2 <= 0.0:
        raise ValueError("welch_ttest: both variances are 0, the t statistic is undefined")
    se = math.sqrt(se2)
    diff = mean_b - mean_a
    t = diff / se
    df = se2 * se2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))
    p_value = t_two_sided(t, df)
    crit = t_isf(alpha / 2.0, df)
    rel = rel_low = rel_high = None
    if mean_a != 0.0:
        rel = mean_b / mean_a - 1.0
        se_rel = math.sqrt(vb / mean_a**2 + mean_b**2 * va / mean_a**4)
        z = norm_ppf(1.0 - alpha / 2.0)
        rel_low, rel_high = rel - z * se_rel, rel + z * se_rel
    return MeanTest(
        mean_a=mean_a,
        mean_b=mean_b,
        diff=diff,
        se=se,
        t=t,
        df=df,
        p_value=p_value,
        ci_low=diff - crit * se,
        ci_high=diff + crit * se,
        relative_uplift=rel,
        rel_ci_low=rel_low,
        rel_ci_high=rel_high,
        alpha=alpha,
        significant=p_value < alpha,
    )


# --------------------------------------------------------------------------- sequential

# The mixture SPRT (Robbins 1970; Johari, Koomen, Pekelis & Walsh 2017/2022, "Always Valid
# Inference: Continuous Monitoring of A/B Tests", Operations Research 70(3)) in information
# time. An estimate ``diff`` with standard error ``se`` carries information ``I = 1/se²``;
# under ``diff ~ N(θ, se²)`` the score ``S = diff·I`` is a Brownian motion with drift θ in
# ``I``. Mixing the likelihood ratio ``exp(θS - θ²I/2)`` over ``θ ~ N(0, τ²)`` gives the
# nonnegative martingale (under θ = 0)
#
#     Λ = sqrt(se² / (se² + τ²)) · exp(τ² diff² / (2 se² (se² + τ²)))
#
# which is Johari et al.'s ``Λ_n = sqrt(V/(V+nτ²)) exp(n²τ² d̄²/(2V(V+nτ²)))`` with
# ``se² = V/n``. Ville's inequality, ``P(sup Λ ≥ 1/α) ≤ α``, makes ``p_t = min_{s≤t} 1/Λ_s``
# an always-valid p-value. Inverting the test of every θ0 gives the confidence sequence
# (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
# confidence sequences", Ann. Statist. 49(2), the two-sided normal mixture boundary):
#
#     diff ± sqrt(se² (se² + τ²)/τ² · (2 log(1/α) + log((se² + τ²)/se²)))
#
# τ² is the mixing variance of the effect, in the units of ``diff`` squared: Johari et al.
# recommend the scale of the effects one expects to detect, e.g. ``τ = `` the minimum
# detectable absolute difference. Exact for Gaussian data with known variance; with the
# plug-in ``se`` of a proportion or mean it is asymptotic, like the fixed-horizon tests.


def log_mixture_likelihood_ratio(diff: float, se: float, tau2: float) -> float:
    """``log Λ`` of the normal-mixture SPRT for an estimate ``diff`` with standard error ``se``.

    A look with ``se == 0`` carries no information: ``log Λ = 0``.

    >>> log_mixture_likelihood_ratio(0.0, 1.0, 1.0) == 0.5 * math.log(0.5)
    True
    """
    diff = _finite("diff", diff)
    se = _finite("se", se)
    tau2 = _positive("tau2", tau2)
    if se < 0.0:
        raise ValueError(f"se must be >= 0, got {se!r}")
    if se == 0.0:
        return 0.0
    s2 = se * se
    return 0.5 * math.log(s2 / (s2 + tau2)) + tau2 * diff * diff / (2.0 * s2 * (s2 + tau2))


def msprt_pvalue(diff: float, se: float, tau2: float) -> float:
    """``min(1, 1/Λ)`` at one look; :class:`AlwaysValid` keeps the running minimum over looks.

    >>> round(msprt_pvalue(diff=0.01, se=0.0025, tau2=0.01**2), 6)
    0.002214
    """
    return min(1.0, math.exp(-log_mixture_likelihood_ratio(diff, se, tau2)))


def confidence_sequence(diff: float, se: float, alpha: float, tau2: float) -> tuple[float, float]:
    """Normal-mixture confidence sequence for the true difference, valid uniformly over looks.

    ``se`` already encodes the sample size (``se² = V/n``), so no ``n`` is needed. The set
    is exactly the θ0 whose mSPRT (``diff - θ0``) would not reject at level ``alpha``.

    >>> low, high = confidence_sequence(diff=0.01, se=0.0025, alpha=0.05, tau2=0.01**2)
    >>> round(low, 5), round(high, 5)
    (0.00234, 0.01766)
    """
    alpha = _check_alpha(alpha)
    diff, se, tau2 = _finite("diff", diff), _finite("se", se), _positive("tau2", tau2)
    if se < 0.0:
        raise ValueError(f"se must be >= 0, got {se!r}")
    if se == 0.0:
        return -math.inf, math.inf
    s2 = se * se
    half = math.sqrt(s2 * (s2 + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((s2 + tau2) / s2)))
    return diff - half, diff + half


class AlwaysValid:
    """Accumulates looks at a running experiment; peeking any number of times is safe.

    ``update(diff, se)`` returns the always-valid p-value, the running minimum of
    ``1/Λ``: once below ``alpha`` it stays there. ``interval`` is the running
    intersection of the confidence sequences (itself a valid confidence sequence).

    >>> av = AlwaysValid(alpha=0.05, tau2=1e-4)
    >>> av.update(0.001, 0.004) == 1.0, av.significant
    (True, False)
    >>> round(av.update(0.012, 0.002), 6), av.significant, av.looks
    (0.0, True, 2)
    >>> round(av.update(0.0, 0.0019), 6)  # a later quiet look does not undo the finding
    0.0
    """

    def __init__(self, alpha: float, tau2: float) -> None:
        self.alpha = _check_alpha(alpha)
        self.tau2 = _positive("tau2", tau2)
        self.p_value = 1.0
        self.interval: tuple[float, float] = (-math.inf, math.inf)
        self.looks = 0

    def update(self, diff: float, se: float) -> float:
        p = msprt_pvalue(diff, se, self.tau2)
        low, high = confidence_sequence(diff, se, self.alpha, self.tau2)
        self.p_value = min(self.p_value, p)
        self.interval = (max(self.interval[0], low), min(self.interval[1], high))
        self.looks += 1
        return self.p_value

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    def __repr__(self) -> str:
        return f"AlwaysValid(alpha={self.alpha}, tau2={self.tau2}, looks={self.looks}, p_value={self.p_value:.4g})"


# --------------------------------------------------------------------------- sample ratio mismatch


@dataclass(frozen=True)
class SrmResult:
    """Pearson chi-squared goodness of fit of the assignment counts to the configured weights."""

    statistic: float
    df: int
    p_value: float
    threshold: float
    mismatch: bool


def srm_check(observed_counts: Sequence[int], expected_weights: Sequence[float], threshold: float = 0.001) -> SrmResult:
    """Sample ratio mismatch: ``χ² = Σ (o - N w)² / (N w)`` on ``k - 1`` df, flagged below ``threshold``.

    >>> r = srm_check([5_050, 4_950], [0.5, 0.5])
    >>> round(r.statistic, 3), r.df, round(r.p_value, 4), r.mismatch
    (1.0, 1, 0.3173, False)
    >>> srm_check([10, 10], [0.5, 0.4])
    Traceback (most recent call last):
    ...
    ValueError: expected_weights must sum to 1, got 0.9
    """
    threshold = _check_alpha(threshold, "threshold")
    counts = [_count(f"observed_counts[{i}]", c) for i, c in enumerate(observed_counts)]
    weights = [_finite(f"expected_weights[{i}]", w) for i, w in enumerate(expected_weights)]
    if len(counts) != len(weights):
        raise ValueError(f"{len(counts)} observed counts for {len(weights)} expected weights")
    if len(counts) < 2:
        raise ValueError(f"srm_check needs at least 2 variants, got {len(counts)}")
    for i, w in enumerate(weights):
        if w <= 0.0:
            raise ValueError(f"expected_weights[{i}] must be > 0, got {w!r}")
    if abs(math.fsum(weights) - 1.0) > 1e-9:
        raise ValueError(f"expected_weights must sum to 1, got {math.fsum(weights):.12g}")
    total = sum(counts)
    if total == 0:
        raise ValueError("observed_counts are all 0: nothing to check")
    statistic = math.fsum((o - total * w) ** 2 / (total * w) for o, w in zip(counts, weights))
    df = len(counts) - 1
    p_value = chi2_sf(statistic, df)
    return SrmResult(statistic=statistic, df=df, p_value=p_value, threshold=threshold, mismatch=p_value < threshold)


# --------------------------------------------------------------------------- power and sample size


def _check_rate(name: str, p: float) -> float:
    if not 0.0 < p < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {p!r}")
    return float(p)


def power_proportions(p_base: float, p_variant: float, n_per_variant: int, alpha: float = 0.05) -> float:
    """Power of the two-sided pooled z-test with ``n_per_variant`` units in each arm.

    Classic normal approximation (Fleiss, Levin & Paik 2003, §4.2, without continuity
    correction): with ``Δ = |p_variant - p_base|``, ``p̄`` their mean,
    ``s0 = sqrt(2 p̄(1-p̄))`` (the null, pooled) and ``s1 = sqrt(p1(1-p1) + p2(1-p2))``,
    ``power = Φ((Δ√n - z_{1-α/2} s0)/s1) + Φ((-Δ√n - z_{1-α/2} s0)/s1)``.

    >>> round(power_proportions(0.05, 0.06, 8_158), 3)
    0.8
    """
    alpha = _check_alpha(alpha)
    p1, p2 = _check_rate("p_base", p_base), _check_rate("p_variant", p_variant)
    n = _count("n_per_variant", n_per_variant)
    if n == 0:
        raise ValueError("n_per_variant must be > 0")
    delta = abs(p2 - p1)
    pbar = 0.5 * (p1 + p2)
    s0 = math.sqrt(2.0 * pbar * (1.0 - pbar))
    s1 = math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    crit = norm_ppf(1.0 - alpha / 2.0)
    root_n = math.sqrt(n)
    return norm_cdf((delta * root_n - crit * s0) / s1) + norm_cdf((-delta * root_n - crit * s0) / s1)


def _smallest_n(power_at, n_guess: float, target: float) -> int:
    n = max(2, math.ceil(n_guess))
    while n > 2 and power_at(n - 1) >= target:
        n -= 1
    while power_at(n) < target:
        n += 1
    return n


def sample_size_proportions(p_base: float, mde_relative: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Units per variant for the two-sided pooled z-test to detect ``p_base·(1+mde_relative)``.

    ``n = (z_{1-α/2} s0 + z_power s1)² / Δ²`` (see :func:`power_proportions`), refined to the
    smallest integer whose two-sided power reaches ``power``.

    >>> sample_size_proportions(0.10, 0.2)
    3841
    """
    alpha, power = _check_alpha(alpha), _check_alpha(power, "power")
    p1 = _check_rate("p_base", p_base)
    mde_relative = _finite("mde_relative", mde_relative)
    if mde_relative == 0.0:
        raise ValueError("mde_relative must be nonzero")
    p2 = p1 * (1.0 + mde_relative)
    if not 0.0 < p2 < 1.0:
        raise ValueError(f"p_base * (1 + mde_relative) = {p2!r} is not a rate in (0, 1)")
    pbar = 0.5 * (p1 + p2)
    s0 = math.sqrt(2.0 * pbar * (1.0 - pbar))
    s1 = math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    n_guess = ((norm_ppf(1.0 - alpha / 2.0) * s0 + norm_ppf(power) * s1) / (p2 - p1)) ** 2
    return _smallest_n(lambda n: power_proportions(p1, p2, n, alpha), n_guess, power)


def power_means(sd: float, mde_absolute: float, n_per_variant: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample z-test of means (known ``sd`` in both arms).

    With ``d = |mde|/sd``: ``power = Φ(d√(n/2) - z_{1-α/2}) + Φ(-d√(n/2) - z_{1-α/2})``
    (statsmodels ``NormalIndPower`` with ``ratio=1``).

    >>> round(power_means(1.0, 0.2, 393), 3)
    0.801
    """
    alpha = _check_alpha(alpha)
    sd, mde = _positive("sd", sd), abs(_finite("mde_absolute", mde_absolute))
    if mde == 0.0:
        raise ValueError("mde_absolute must be nonzero")
    n = _count("n_per_variant", n_per_variant)
    if n == 0:
        raise ValueError("n_per_variant must be > 0")
    shift = mde / sd * math.sqrt(n / 2.0)
    crit = norm_ppf(1.0 - alpha / 2.0)
    return norm_cdf(shift - crit) + norm_cdf(-shift - crit)


def sample_size_means(sd: float, mde_absolute: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Units per variant to detect an absolute mean difference: ``n = 2 (z_{1-α/2} + z_power)² sd²/mde²``,
    refined to the smallest integer whose two-sided power (:func:`power_means`) reaches ``power``.

    >>> sample_size_means(sd=1.0, mde_absolute=0.2)
    393
    """
    alpha, power = _check_alpha(alpha), _check_alpha(power, "power")
    sd, mde = _positive("sd", sd), _finite("mde_absolute", mde_absolute)
    if mde == 0.0:
        raise ValueError("mde_absolute must be nonzero")
    n_guess = 2.0 * ((norm_ppf(1.0 - alpha / 2.0) + norm_ppf(power)) * sd / mde) ** 2
    return _smallest_n(lambda n: power_means(sd, mde, n, alpha), n_guess, power)
