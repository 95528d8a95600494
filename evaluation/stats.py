"""Paired statistics between two systems scored on the same references (docs/metrics.md §7).

Per metric: paired t-test and Wilcoxon (scipy defaults), Cohen's d as the study computed it (pooled SD of
the two samples, which ignores the pairing), the paired d_z, post-hoc power of the paired t-test, and 95%
percentile bootstrap CIs (examples resampled as pairs, fixed seed) of the mean difference and of d.
Differences are always A - B. Identical systems (all differences zero) get t = 0, p = 1 rather than NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

STAT_METRICS = (
    "f1_key_insights",
    "f1_company_names",
    "f1_overall",
    "jaccard_key_insights",
    "jaccard_company_names",
    "abs_relevance_error",
)
"""The per-example arrays the study tested (§7)."""

LOWER_IS_BETTER = frozenset({"abs_relevance_error"})

N_RESAMPLES = 10_000
SEED = 0
ALPHA = 0.05


@dataclass(frozen=True)
class PairedStats:
    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    """mean(A - B)."""
    t_statistic: float | None
    t_pvalue: float | None
    wilcoxon_statistic: float | None
    wilcoxon_pvalue: float | None
    cohens_d: float | None
    """The study's d: (mean A - mean B) / sqrt((var A + var B) / 2), ddof = 1."""
    d_z: float | None
    """Paired effect size: mean(diff) / std(diff, ddof = 1)."""
    power: float | None
    """Power of a two-sided paired t-test at alpha 0.05 to detect |cohens_d| with n pairs."""
    ci_low: float | None
    ci_high: float | None
    """95% percentile bootstrap CI of mean(A - B)."""
    d_ci_low: float | None
    d_ci_high: float | None
    """95% percentile bootstrap CI of cohens_d (same resamples)."""
    n_resamples: int
    seed: int
    lower_is_better: bool

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def a_worse(self) -> bool:
        """The CI lies entirely on A's worse side (A significantly worse than B)."""
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 0 if self.lower_is_better else self.ci_high < 0

    @property
    def a_better(self) -> bool:
        if self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_high < 0 if self.lower_is_better else self.ci_low > 0


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The study's Cohen's d; 0 when both samples are constant and equal, None when undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2:
        return None
    diff = a.mean() - b.mean()
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled == 0:
        return 0.0 if diff == 0 else None
    return float(diff / pooled)


def paired_dz(a: Sequence[float], b: Sequence[float]) -> float | None:
    """mean(A - B) / std(A - B, ddof = 1); 0 when every difference is 0, None when undefined."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return None
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() == 0 else None
    return float(d.mean() / sd)


def ttest_power(effect_size: float | None, n: int, alpha: float = ALPHA) -> float | None:
    """statsmodels TTestPower().power for |effect_size| with n pairs (two-sided)."""
    if effect_size is None or n < 2:
        return None
    from statsmodels.stats.power import TTestPower

    return _finite(TTestPower().power(effect_size=abs(effect_size), nobs=n, alpha=alpha))


def paired_tests(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, ...]:
    """(t, p_t, W, p_W) from scipy's ttest_rel and wilcoxon with their defaults."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2:
        return None, None, None, None
    if np.all(a == b):
        return 0.0, 1.0, 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(a, b)
        try:
            w = stats.wilcoxon(a, b)
            w_stat, w_p = _finite(w.statistic), _finite(w.pvalue)
        except ValueError:
            w_stat, w_p = None, None
    return _finite(t.statistic), _finite(t.pvalue), w_stat, w_p


def bootstrap_ci(
    a: Sequence[float], b: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = 0.95
) -> tuple[float | None, float | None, float | None, float | None]:
    """Percentile CIs of mean(A - B) and of the study's d, resampling examples as pairs."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n == 0:
        return None, None, None, None
    rng = np.random.default_rng(seed)
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    lo, hi, d_lo, d_hi = None, None, None, None
    means, ds = [], []
    # In chunks, so that 10,000 resamples of a few thousand examples stay small in memory.
    for start in range(0, n_resamples, 1000):
        idx = rng.integers(0, n, size=(min(1000, n_resamples - start), n))
        sa, sb = a[idx], b[idx]
        means.append((sa - sb).mean(axis=1))
        if n >= 2:
            pooled = np.sqrt((sa.var(axis=1, ddof=1) + sb.var(axis=1, ddof=1)) / 2)
            diff = sa.mean(axis=1) - sb.mean(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ds.append(np.where(pooled > 0, diff / pooled, np.where(diff == 0, 0.0, np.nan)))
    lo, hi = (float(x) for x in np.percentile(np.concatenate(means), tails))
    if ds:
        d_all = np.concatenate(ds)
        d_all = d_all[np.isfinite(d_all)]
        if d_all.size:
            d_lo, d_hi = (float(x) for x in np.percentile(d_all, tails))
    return lo, hi, d_lo, d_hi


def paired_stats(
    a: Sequence[float], b: Sequence[float], metric: str = "", n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> PairedStats:
    if len(a) != len(b):
        raise ValueError(f"{metric}: {len(a)} values for A and {len(b)} for B; the systems must share references")
    av, bv = np.asarray(a, float), np.asarray(b, float)
    t, p_t, w, p_w = paired_tests(av, bv)
    d = cohens_d(av, bv)
    ci = bootstrap_ci(av, bv, n_resamples, seed)
    n = len(av)
    return PairedStats(
        metric=metric,
        n=n,
        mean_a=float(av.mean()) if n else 0.0,
        mean_b=float(bv.mean()) if n else 0.0,
        mean_diff=float((av - bv).mean()) if n else 0.0,
        t_statistic=t,
        t_pvalue=p_t,
        wilcoxon_statistic=w,
        wilcoxon_pvalue=p_w,
        cohens_d=d,
        d_z=paired_dz(av, bv),
        power=ttest_power(d, n),
        ci_low=ci[0],
        ci_high=ci[1],
        d_ci_low=ci[2],
        d_ci_high=ci[3],
        n_resamples=n_resamples,
        seed=seed,
        lower_is_better=metric in LOWER_IS_BETTER,
    )


def compare(
    per_example_a: Mapping[str, Sequence[float]],
    per_example_b: Mapping[str, Sequence[float]],
    metrics: Sequence[str] = STAT_METRICS,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> list[PairedStats]:
    """Paired statistics for each per-example metric, A - B."""
    return [paired_stats(per_example_a[m], per_example_b[m], m, n_resamples, seed) for m in metrics]
