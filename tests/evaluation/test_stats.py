"""The paired statistics agree with direct scipy/statsmodels calls and the spec's formulas."""

import math

import numpy as np
import pytest
from pytest import approx
from scipy import stats as sps
from statsmodels.stats.power import TTestPower

from evaluation import stats

RNG = np.random.default_rng(7)
A = RNG.random(40)
B = np.clip(A - 0.1 + 0.2 * RNG.random(40), 0, 1)


def test_tests_match_scipy_defaults():
    t, p_t, w, p_w = stats.paired_tests(A, B)
    direct_t = sps.ttest_rel(A, B)
    direct_w = sps.wilcoxon(A, B)
    assert (t, p_t) == approx((direct_t.statistic, direct_t.pvalue), abs=1e-12)
    assert (w, p_w) == approx((direct_w.statistic, direct_w.pvalue), abs=1e-12)


def test_cohens_d_is_the_studys_pooled_formula():
    expected = (A.mean() - B.mean()) / math.sqrt((A.var(ddof=1) + B.var(ddof=1)) / 2)
    assert stats.cohens_d(A, B) == approx(expected, abs=1e-12)


def test_paired_dz():
    diff = A - B
    assert stats.paired_dz(A, B) == approx(diff.mean() / diff.std(ddof=1), abs=1e-12)


def test_power_matches_statsmodels():
    d = stats.cohens_d(A, B)
    assert stats.ttest_power(d, len(A)) == approx(
        TTestPower().power(effect_size=abs(d), nobs=len(A), alpha=0.05), abs=1e-12
    )
    assert stats.ttest_power(-0.3, 96) == approx(stats.ttest_power(0.3, 96), abs=1e-15)  # |d|


def test_bootstrap_is_a_paired_percentile_bootstrap_with_fixed_seed():
    lo, hi, _, _ = stats.bootstrap_ci(A, B, n_resamples=10_000, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, len(A), size=(10_000, len(A)))
    means = (A - B)[idx].mean(axis=1)
    assert (lo, hi) == approx(tuple(np.percentile(means, [2.5, 97.5])), abs=1e-12)
    assert lo < (A - B).mean() < hi
    assert stats.bootstrap_ci(A, B, seed=3) == stats.bootstrap_ci(A, B, seed=3)


def test_paired_stats_bundle():
    st = stats.paired_stats(A, B, "f1_overall")
    assert st.n == 40
    assert st.mean_diff == approx((A - B).mean(), abs=1e-12)
    assert st.n_resamples == 10_000
    assert st.ci_low <= st.mean_diff <= st.ci_high
    assert st.d_ci_low <= st.cohens_d <= st.d_ci_high
    assert not st.lower_is_better


def test_all_zero_differences_are_handled():
    x = np.array([0.5, 1.0, 0.0, 1.0])
    st = stats.paired_stats(x, x.copy(), "f1_overall")
    assert (st.t_statistic, st.t_pvalue, st.wilcoxon_statistic, st.wilcoxon_pvalue) == (0.0, 1.0, 0.0, 1.0)
    assert st.cohens_d == 0.0 and st.d_z == 0.0
    assert (st.ci_low, st.ci_high) == (0.0, 0.0)
    assert not st.a_worse and not st.a_better


def test_constant_nonzero_difference_has_undefined_effect_size():
    a, b = np.ones(5), np.zeros(5)
    assert stats.cohens_d(a, b) is None
    assert stats.paired_dz(a, b) is None
    assert stats.paired_stats(a, b, "f1_overall").a_better


def test_worse_side_depends_on_the_metric_direction():
    better_f1 = stats.paired_stats(np.full(30, 0.9) - 0.01 * np.arange(30) % 3, np.full(30, 0.2), "f1_overall")
    assert better_f1.a_better and not better_f1.a_worse
    higher_error = stats.paired_stats(np.full(30, 3.0) + np.arange(30) % 2, np.zeros(30), "abs_relevance_error")
    assert higher_error.lower_is_better
    assert higher_error.a_worse and not higher_error.a_better


def test_compare_runs_every_study_metric():
    per_example = {m: list(A) for m in stats.STAT_METRICS}
    other = {m: list(B) for m in stats.STAT_METRICS}
    result = stats.compare(per_example, other, n_resamples=500)
    assert [s.metric for s in result] == list(stats.STAT_METRICS)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="share references"):
        stats.paired_stats([1, 2], [1], "f1_overall")
