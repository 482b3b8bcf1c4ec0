"""operators.stats against SciPy/statsmodels on the same numbers, plus simulations.

SciPy and statsmodels are test-only references (the module itself uses only ``math``).
Where the reference computes the same quantity exactly, p-values agree to 1e-6 relative
or better (most to ~1e-12). Sample sizes for proportions use the classic pooled-normal
formula rather than statsmodels' Cohen's h, so they are checked against that closed form
(computed here with ``scipy.stats.norm.ppf``), loosely against Cohen's h, and their power
by simulation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from operators.stats import (
    AlwaysValid,
    chi2_sf,
    confidence_sequence,
    log_mixture_likelihood_ratio,
    msprt_pvalue,
    norm_cdf,
    norm_ppf,
    norm_sf,
    power_means,
    power_proportions,
    regularized_beta,
    regularized_gamma_q,
    sample_size_means,
    sample_size_proportions,
    srm_check,
    summary,
    t_ppf,
    t_sf,
    two_proportion_ztest,
    welch_ttest,
)

RTOL = 1e-6  # on p-values where the reference is exact


def close(a: float, b: float, rtol: float = RTOL, atol: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


# --------------------------------------------------------------------------- special functions


@pytest.mark.parametrize(
    "p",
    [1e-300, 1e-100, 1e-20, 1e-10, 1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.425, 0.5, 0.6,
     0.925, 0.975, 0.99, 0.999, 1 - 1e-9, 1 - 1e-15],
)  # fmt: skip
def test_norm_ppf_matches_scipy(p: float) -> None:
    ref = sps.norm.ppf(p)
    assert close(norm_ppf(p), ref, rtol=1e-14, atol=1e-15)
    assert close(norm_cdf(norm_ppf(p)), p, rtol=1e-12)


def test_norm_ppf_dense_grid_and_bounds() -> None:
    grid = np.random.default_rng(1).uniform(0.0, 1.0, 5_000)
    ours = np.array([norm_ppf(p) for p in grid])
    np.testing.assert_allclose(ours, sps.norm.ppf(grid), rtol=1e-14, atol=1e-15)
    assert norm_ppf(0.0) == -math.inf and norm_ppf(1.0) == math.inf
    with pytest.raises(ValueError, match="probability must be in"):
        norm_ppf(1.5)


@pytest.mark.parametrize("x", [-40.0, -8.0, -1.96, -0.3, 0.0, 0.7, 3.0, 12.0, 37.0])
def test_norm_cdf_sf_match_scipy(x: float) -> None:
    assert close(norm_cdf(x), sps.norm.cdf(x), rtol=1e-12)
    assert close(norm_sf(x), sps.norm.sf(x), rtol=1e-12)


DFS = [1, 1.5, 2, 3.7, 5, 10, 29.3, 100, 1_000, 40_000, 1_000_000]


@pytest.mark.parametrize("df", DFS)
def test_t_sf_matches_scipy(df: float) -> None:
    for t in [0.0, 0.05, 0.5, 1.0, 1.96, 2.5, 4.0, 8.0, 20.0, 100.0, 1e4]:
        for signed in (t, -t):
            ref = sps.t.sf(signed, df)
            if ref > 1e-300:
                assert close(t_sf(signed, df), ref, rtol=1e-9), (signed, df)


@pytest.mark.parametrize("df", [1e7, 1e8, 1e9, 1e12])
def test_t_sf_at_huge_df_matches_scipy(df: float) -> None:
    for t in [0.5, 2.0, 5.0, 10.0]:
        assert close(t_sf(t, df), sps.t.sf(t, df), rtol=1e-7), (t, df)


@pytest.mark.parametrize("df", DFS)
def test_t_ppf_matches_scipy(df: float) -> None:
    for p in [1e-12, 1e-6, 0.001, 0.025, 0.05, 0.2, 0.5, 0.7, 0.975, 0.9995]:
        assert close(t_ppf(p, df), sps.t.ppf(p, df), rtol=1e-10, atol=1e-14), (p, df)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 50, 200, 1_000])
def test_chi2_sf_matches_scipy(df: int) -> None:
    for x in [0.0, 1e-6, 0.1, 1.0, 3.84, 10.0, 50.0, 100.0, 400.0, 1_000.0, 1_400.0]:
        ref = sps.chi2.sf(x, df)
        assert close(chi2_sf(x, df), ref, rtol=1e-12, atol=1e-300), (x, df)


def test_regularized_beta_and_gamma_match_scipy() -> None:
    for a in [0.1, 0.5, 1.0, 2.5, 10.0, 100.0, 1e4]:
        for b in [0.1, 0.5, 1.0, 3.0, 50.0, 1e4]:
            for x in [0.0, 1e-6, 0.01, 0.3, 0.5, 0.7, 0.99, 1.0]:
                assert close(regularized_beta(a, b, x), special.betainc(a, b, x), rtol=1e-11, atol=1e-300)
        for x in [0.0, 1e-3, 0.5, 1.0, 2.0, 10.0, 90.0, 200.0, 2e4]:
            assert close(regularized_gamma_q(a, x), special.gammaincc(a, x), rtol=1e-11, atol=1e-300)


# --------------------------------------------------------------------------- proportions

PROPORTION_CASES = [
    (500, 10_000, 600, 10_000),  # the classic 5% -> 6%
    (1_000, 20_000, 1_030, 20_000),  # not significant
    (48, 1_000, 95, 3_000),  # unequal n
    (3, 12, 9, 14),  # small samples
    (0, 50, 4, 60),  # no conversion in control
    (7, 80, 0, 75),  # no conversion in treatment
    (60, 60, 51, 55),  # everyone converted in control
    (12_345, 250_000, 12_100, 240_000),  # large, b below a
]


@pytest.mark.parametrize(("conv_a", "n_a", "conv_b", "n_b"), PROPORTION_CASES)
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_two_proportion_ztest_matches_statsmodels(conv_a: int, n_a: int, conv_b: int, n_b: int, alpha: float) -> None:
    r = two_proportion_ztest(conv_a, n_a, conv_b, n_b, alpha=alpha)
    z_ref, p_ref = proportions_ztest([conv_b, conv_a], [n_b, n_a])
    assert close(r.z, z_ref, rtol=1e-12)
    assert close(r.p_value, p_ref, rtol=RTOL)
    assert r.significant == (p_ref < alpha)
    assert r.p_a == conv_a / n_a and r.p_b == conv_b / n_b and r.diff == r.p_b - r.p_a
    low, high = confint_proportions_2indep(conv_b, n_b, conv_a, n_a, method="wald", compare="diff", alpha=alpha)
    assert close(r.ci_low, low, rtol=1e-12, atol=1e-15) and close(r.ci_high, high, rtol=1e-12, atol=1e-15)
    if conv_a == 0:
        assert r.relative_uplift is None and r.rel_ci_low is None and r.rel_ci_high is None
    elif conv_b == 0:
        assert r.relative_uplift == -1.0 and r.rel_ci_low is None and r.rel_ci_high is None
    else:
        assert close(r.relative_uplift, r.p_b / r.p_a - 1.0, rtol=1e-12)
        rlow, rhigh = confint_proportions_2indep(conv_b, n_b, conv_a, n_a, method="log", compare="ratio", alpha=alpha)
        assert close(r.rel_ci_low, rlow - 1.0, rtol=1e-10, atol=1e-14)
        assert close(r.rel_ci_high, rhigh - 1.0, rtol=1e-10, atol=1e-14)


def test_two_proportion_ztest_degenerate_pool_is_not_significant() -> None:
    for r in (two_proportion_ztest(0, 100, 0, 200), two_proportion_ztest(100, 100, 50, 50)):
        assert r.z == 0.0 and r.p_value == 1.0 and not r.significant
        assert r.ci_low == r.ci_high == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 10, 1, 10), "conv_a must be >= 0"),
        ((1, 10, 11, 10), r"conv_b \(11\) exceeds n_b \(10\)"),
        ((0, 0, 1, 10), "n_a must be > 0"),
        ((1, 10, 1, -10), "n_b must be >= 0"),
        ((1.5, 10, 1, 10), "conv_a must be an integer count"),
    ],
)
def test_two_proportion_ztest_rejects_bad_counts(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        two_proportion_ztest(*args)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_rejected(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        two_proportion_ztest(1, 10, 2, 10, alpha=alpha)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        welch_ttest(0.0, 1.0, 5, 1.0, 1.0, 5, alpha=alpha)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        AlwaysValid(alpha=alpha, tau2=1.0)


# --------------------------------------------------------------------------- means

MEAN_CASES = [
    # (n_a, mu_a, sd_a, n_b, mu_b, sd_b, seed)
    (400, 10.0, 4.0, 500, 10.6, 5.0, 1),
    (2, 3.0, 1.0, 2, 5.0, 2.0, 2),  # smallest possible samples
    (5, 0.0, 1.0, 500, 0.3, 3.0, 3),  # very unequal n and variance
    (30, 100.0, 15.0, 35, 100.0, 15.0, 4),  # no effect
    (10_000, 2.0, 8.0, 9_000, 2.2, 9.0, 5),  # revenue-like, large
    (12, -4.0, 0.5, 7, -3.0, 2.5, 6),  # negative means
]


@pytest.mark.parametrize(("n_a", "mu_a", "sd_a", "n_b", "mu_b", "sd_b", "seed"), MEAN_CASES)
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_welch_ttest_matches_scipy(
    n_a: int, mu_a: float, sd_a: float, n_b: int, mu_b: float, sd_b: float, seed: int, alpha: float
) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(mu_a, sd_a, n_a), rng.normal(mu_b, sd_b, n_b)
    # What the flow keeps per variant: count, sum, sum of squares.
    mean_a, var_a = summary(n_a, float(a.sum()), float((a * a).sum()))
    mean_b, var_b = summary(n_b, float(b.sum()), float((b * b).sum()))
    assert close(mean_a, a.mean(), rtol=1e-12) and close(var_a, a.var(ddof=1), rtol=1e-8)
    r = welch_ttest(mean_a, var_a, n_a, mean_b, var_b, n_b, alpha=alpha)

    from_stats = sps.ttest_ind_from_stats(mean_b, math.sqrt(var_b), n_b, mean_a, math.sqrt(var_a), n_a, equal_var=False)
    assert close(r.t, from_stats.statistic, rtol=1e-12)
    assert close(r.p_value, from_stats.pvalue, rtol=RTOL)
    assert r.significant == (from_stats.pvalue < alpha)

    raw = sps.ttest_ind(b, a, equal_var=False)  # on the raw data: df and CI
    assert close(r.df, raw.df, rtol=1e-8)
    assert close(r.p_value, raw.pvalue, rtol=1e-6)
    low, high = raw.confidence_interval(confidence_level=1.0 - alpha)
    assert close(r.ci_low, low, rtol=1e-7) and close(r.ci_high, high, rtol=1e-7)
    sm_t, sm_p, sm_df = sm_ttest_ind(b, a, usevar="unequal")
    assert close(r.t, sm_t, rtol=1e-8) and close(r.p_value, sm_p, rtol=1e-6) and close(r.df, sm_df, rtol=1e-8)
    assert close(r.relative_uplift, mean_b / mean_a - 1.0, rtol=1e-12)


def test_welch_relative_uplift_interval_covers() -> None:
    """The delta-method interval for mean_b/mean_a - 1 covers the truth ~95% of the time."""
    rng = np.random.default_rng(11)
    sims, n, true_rel = 2_000, 400, 0.1
    a = rng.normal(10.0, 6.0, (sims, n))
    b = rng.normal(11.0, 8.0, (sims, n))
    covered = 0
    for i in range(sims):
        r = welch_ttest(a[i].mean(), a[i].var(ddof=1), n, b[i].mean(), b[i].var(ddof=1), n)
        covered += r.rel_ci_low <= true_rel <= r.rel_ci_high
    assert abs(covered / sims - 0.95) < 3 * math.sqrt(0.95 * 0.05 / sims)


def test_welch_ttest_edge_cases() -> None:
    one_constant = welch_ttest(5.0, 0.0, 10, 6.0, 4.0, 8)
    ref = sps.ttest_ind_from_stats(6.0, 2.0, 8, 5.0, 0.0, 10, equal_var=False)
    assert close(one_constant.p_value, ref.pvalue, rtol=RTOL) and close(one_constant.df, 7.0, rtol=1e-12)
    assert welch_ttest(0.0, 1.0, 10, 1.0, 1.0, 10).relative_uplift is None
    with pytest.raises(ValueError, match="both variances are 0"):
        welch_ttest(1.0, 0.0, 10, 2.0, 0.0, 10)
    with pytest.raises(ValueError, match="n_b must be >= 2"):
        welch_ttest(1.0, 1.0, 10, 2.0, 1.0, 1)
    with pytest.raises(ValueError, match="variances must be >= 0"):
        welch_ttest(1.0, -1.0, 10, 2.0, 1.0, 10)
    with pytest.raises(ValueError, match="count must be >= 2"):
        summary(1, 3.0, 9.0)
    with pytest.raises(ValueError, match="count must be >= 0"):
        summary(-3, 3.0, 9.0)
    assert summary(3, 6.0, 12.0) == (2.0, 0.0)  # constant values: variance 0 exactly


# --------------------------------------------------------------------------- sequential


@pytest.mark.parametrize(
    ("diff", "se", "tau2"), [(0.0, 1.0, 1.0), (0.01, 0.0025, 1e-4), (-0.3, 0.2, 0.05), (2.0, 0.5, 4.0)]
)
def test_mixture_likelihood_ratio_is_the_normal_mixture_integral(diff: float, se: float, tau2: float) -> None:
    """Λ = ∫ N(diff; θ, se²)/N(diff; 0, se²) dN(θ; 0, τ²), by quadrature."""
    tau = math.sqrt(tau2)

    def integrand(theta: float) -> float:
        return math.exp((theta * diff - 0.5 * theta * theta) / se**2) * sps.norm.pdf(theta, scale=tau)

    value, _ = integrate.quad(integrand, -12 * tau, 12 * tau, points=[0.0, diff], epsabs=0, epsrel=1e-12, limit=200)
    assert close(math.exp(log_mixture_likelihood_ratio(diff, se, tau2)), value, rtol=1e-9)
    assert close(msprt_pvalue(diff, se, tau2), min(1.0, 1.0 / value), rtol=1e-9)


def test_confidence_sequence_is_the_inverted_msprt() -> None:
    for diff, se, alpha, tau2 in [(0.01, 0.0025, 0.05, 1e-4), (-1.0, 0.3, 0.1, 0.5), (0.0, 2.0, 0.01, 1.0)]:
        low, high = confidence_sequence(diff, se, alpha, tau2)
        assert low < diff < high and close(diff - low, high - diff, rtol=1e-12)
        for edge in (low, high):  # the mSPRT of θ0 at the boundary has p exactly alpha
            assert close(msprt_pvalue(diff - edge, se, tau2), alpha, rtol=1e-9)
        assert msprt_pvalue(diff - (high + 1e-6 * abs(high - low)), se, tau2) < alpha
    assert confidence_sequence(0.0, 0.0, 0.05, 1.0) == (-math.inf, math.inf)
    # Wider than the fixed-horizon interval: the price of peeking.
    low, high = confidence_sequence(0.0, 1.0, 0.05, 1.0)
    assert high > sps.norm.ppf(0.975)


def test_always_valid_keeps_the_running_minimum() -> None:
    av = AlwaysValid(alpha=0.05, tau2=1e-4)
    p1 = av.update(0.02, 0.005)
    assert p1 < 0.05 and av.significant
    p2 = av.update(0.0, 0.004)  # a quiet later look cannot un-reject
    assert p2 == p1 and av.significant and av.looks == 2
    assert av.interval[0] <= av.interval[1]
    assert av.update(0.0, 0.0) == p1  # no information: nothing changes
    with pytest.raises(ValueError, match="tau2 must be > 0"):
        AlwaysValid(alpha=0.05, tau2=0.0)
    with pytest.raises(ValueError, match="se must be >= 0"):
        av.update(0.0, -1.0)


DAYS, USERS_PER_ARM, SIMS = 30, 20_000, 400


def _daily_conversions(rng: np.random.Generator, rate_a: float, rate_b: float) -> tuple[np.ndarray, ...]:
    """Cumulative users and conversions per arm after each day, shape (SIMS, DAYS)."""
    users = np.round(np.arange(1, DAYS + 1) * USERS_PER_ARM / DAYS).astype(np.int64)
    new = np.diff(users, prepend=0)
    conv_a = rng.binomial(new, rate_a, size=(SIMS, DAYS)).cumsum(axis=1)
    conv_b = rng.binomial(new, rate_b, size=(SIMS, DAYS)).cumsum(axis=1)
    return users, conv_a, conv_b


def _run_peeking(users: np.ndarray, conv_a: np.ndarray, conv_b: np.ndarray, tau2: float) -> tuple[float, float]:
    """Share of simulated experiments declared significant at any daily look: (naive, sequential)."""
    naive = sequential = 0
    for i in range(conv_a.shape[0]):
        av = AlwaysValid(alpha=0.05, tau2=tau2)
        naive_hit = False
        for day in range(DAYS):
            r = two_proportion_ztest(int(conv_a[i, day]), int(users[day]), int(conv_b[i, day]), int(users[day]))
            naive_hit |= r.significant
            av.update(r.diff, r.se)
        naive += naive_hit
        sequential += av.significant
    return naive / conv_a.shape[0], sequential / conv_a.shape[0]


TAU2 = 0.01**2  # mixing scale: the 1-point absolute lift we want to detect


def test_peeking_aa_sequential_controls_false_positives_naive_does_not() -> None:
    users, conv_a, conv_b = _daily_conversions(np.random.default_rng(2026), 0.05, 0.05)
    naive_fpr, seq_fpr = _run_peeking(users, conv_a, conv_b, TAU2)
    margin = 2 * math.sqrt(0.05 * 0.95 / SIMS)
    assert seq_fpr <= 0.05 + margin, seq_fpr
    assert naive_fpr > 0.05 + margin, naive_fpr  # daily peeking inflates the naive test
    assert naive_fpr > seq_fpr


def test_peeking_true_effect_is_detected_by_day_30() -> None:
    users, conv_a, conv_b = _daily_conversions(np.random.default_rng(7), 0.05, 0.06)
    _, seq_power = _run_peeking(users, conv_a, conv_b, TAU2)
    assert seq_power > 0.8, seq_power


# --------------------------------------------------------------------------- SRM

SRM_CASES = [
    ([5_050, 4_950], [0.5, 0.5]),
    ([6_000, 4_000], [0.5, 0.5]),
    ([3_400, 3_300, 3_300], [1 / 3, 1 / 3, 1 / 3]),
    ([900, 100], [0.9, 0.1]),
    ([12, 3, 5, 0], [0.25, 0.25, 0.25, 0.25]),
    ([20_100, 4_950, 5_020], [0.7, 0.15, 0.15]),
]


@pytest.mark.parametrize(("counts", "weights"), SRM_CASES)
def test_srm_matches_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    r = srm_check(counts, weights)
    ref = sps.chisquare(counts, f_exp=np.asarray(weights) * sum(counts))
    assert close(r.statistic, ref.statistic, rtol=1e-12)
    assert close(r.p_value, ref.pvalue, rtol=1e-10, atol=1e-300)
    assert r.df == len(counts) - 1 and r.mismatch == (ref.pvalue < 0.001)


def test_srm_flags_a_60_40_split_of_a_50_50_experiment() -> None:
    r = srm_check([6_000, 4_000], [0.5, 0.5])
    assert r.mismatch and r.statistic == 400.0 and r.p_value < 1e-80


def test_srm_false_flag_rate_matches_threshold_on_fair_splits() -> None:
    rng = np.random.default_rng(99)
    sims = 5_000
    arm_a = rng.binomial(10_000, 0.5, sims)
    p_values = np.array([srm_check([int(a), 10_000 - int(a)], [0.5, 0.5]).p_value for a in arm_a])
    # Calibration at a threshold with enough events to measure, then the default one.
    assert abs((p_values < 0.05).mean() - 0.05) < 3 * math.sqrt(0.05 * 0.95 / sims)
    assert (p_values < 0.001).sum() <= 15  # expected 5 of 5,000


@pytest.mark.parametrize(
    ("counts", "weights", "message"),
    [
        ([10, 10], [0.5, 0.4], "expected_weights must sum to 1"),
        ([10, 10], [0.5], "2 observed counts for 1 expected weights"),
        ([10, -1], [0.5, 0.5], r"observed_counts\[1\] must be >= 0"),
        ([0, 0], [0.5, 0.5], "all 0"),
        ([10, 10], [1.0, 0.0], r"expected_weights\[1\] must be > 0"),
        ([10], [1.0], "at least 2 variants"),
    ],
)
def test_srm_rejects_bad_inputs(counts: list[int], weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        srm_check(counts, weights)


# --------------------------------------------------------------------------- power and sample size


def _pooled_normal_n(p1: float, p2: float, alpha: float, power: float) -> float:
    pbar = (p1 + p2) / 2
    s0 = math.sqrt(2 * pbar * (1 - pbar))
    s1 = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return ((sps.norm.ppf(1 - alpha / 2) * s0 + sps.norm.ppf(power) * s1) / (p2 - p1)) ** 2


@pytest.mark.parametrize(
    ("p_base", "mde", "alpha", "power"),
    [(0.05, 0.1, 0.05, 0.8), (0.10, 0.2, 0.05, 0.8), (0.02, 0.05, 0.01, 0.9), (0.5, -0.1, 0.1, 0.95), (0.3, 0.5, 0.05, 0.5)],
)
def test_sample_size_proportions_closed_form_and_cohens_h(p_base: float, mde: float, alpha: float, power: float) -> None:
    n = sample_size_proportions(p_base, mde, alpha=alpha, power=power)
    p2 = p_base * (1 + mde)
    closed = _pooled_normal_n(p_base, p2, alpha, power)
    assert closed - 1 <= n <= math.ceil(closed)  # the two-sided power may save at most one unit
    assert power_proportions(p_base, p2, n, alpha) >= power > power_proportions(p_base, p2, n - 1, alpha)
    # statsmodels sizes with Cohen's h (arcsine transform): a different approximation that
    # agrees within a few percent (closest for small effects; 2.2% for 30% -> 45% at n = 81).
    h = proportion_effectsize(p2, p_base)
    n_h = zt_ind_solve_power(effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided")
    assert abs(n / n_h - 1) < 0.03


def test_power_proportions_by_simulation() -> None:
    """At the computed n, the pooled z-test rejects in ~80% of simulated experiments."""
    p1, p2 = 0.10, 0.12
    n = sample_size_proportions(p1, 0.2)
    rng = np.random.default_rng(5)
    sims = 4_000
    conv_a, conv_b = rng.binomial(n, p1, sims), rng.binomial(n, p2, sims)
    rejected = sum(two_proportion_ztest(int(a), n, int(b), n).significant for a, b in zip(conv_a, conv_b))
    expected = power_proportions(p1, p2, n)
    assert abs(rejected / sims - expected) < 3 * math.sqrt(expected * (1 - expected) / sims)


@pytest.mark.parametrize(
    ("sd", "mde", "alpha", "power"), [(1.0, 0.2, 0.05, 0.8), (25.0, 1.5, 0.05, 0.9), (3.0, -0.5, 0.01, 0.8), (1.0, 1.0, 0.2, 0.6)]
)
def test_sample_size_and_power_means_match_statsmodels(sd: float, mde: float, alpha: float, power: float) -> None:
    n = sample_size_means(sd, mde, alpha=alpha, power=power)
    effect = abs(mde) / sd
    n_ref = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=1.0)
    assert n == math.ceil(n_ref - 1e-9)
    for m in (n - 1, n, 2 * n):
        ref = NormalIndPower().power(effect_size=effect, nobs1=m, alpha=alpha, ratio=1.0)
        assert close(power_means(sd, mde, m, alpha), ref, rtol=1e-12)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sample_size_proportions(0.0, 0.1), r"p_base must be in \(0, 1\)"),
        (lambda: sample_size_proportions(0.6, 0.9), "is not a rate"),
        (lambda: sample_size_proportions(0.1, 0.0), "mde_relative must be nonzero"),
        (lambda: sample_size_proportions(0.1, 0.1, power=1.0), r"power must be in \(0, 1\)"),
        (lambda: sample_size_means(0.0, 1.0), "sd must be > 0"),
        (lambda: sample_size_means(1.0, 0.0), "mde_absolute must be nonzero"),
        (lambda: power_proportions(0.1, 0.2, 0), "n_per_variant must be > 0"),
        (lambda: power_means(1.0, 0.1, 100, alpha=2.0), r"alpha must be in \(0, 1\)"),
    ],
)
def test_sizing_rejects_bad_inputs(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
