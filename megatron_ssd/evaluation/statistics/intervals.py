"""Score-type confidence intervals over problems: a benchmark mean, a paired difference, and their p-values.

What an interval estimates: the mean pass@k over the *population of problems like these* (the benchmark's problems
are one draw from it, and each problem's samples are one draw from the model), not the score on the fixed
benchmark. The problem is the unit: samples of one problem are correlated, so the uncertainty comes from the
spread of per-problem values, never from counting samples as independent.

Why not the percentile bootstrap: it collapses to a point when every problem has the same value (`[0, 0]` when
nothing passes; 45-75 % coverage of a 2 % pass rate on 32 problems, see tests/evaluation/test_calibration.py).

- `mean_interval`: the Wilson score interval with a design effect (Korn & Graubard, 1998). The per-problem values
  lie in [0, 1], so a mean m has at most the binomial variance m(1 - m); the observed variance of the mean gives an
  effective number of trials n_eff = m(1 - m) / Var(mean), and Wilson's interval at (m·n_eff, n_eff) inverts the
  studentised score test, so it stays inside [0, 1] and keeps its width at the edges; the quantile is Student's
  t with P − 1 degrees of freedom. Near an edge (fewer than `EDGE_PROBLEMS` problems away from 0, or from 1) the
  observed variance rests on a handful of problems and underestimates the spread of a skewed population, so the
  interval is the continuity-corrected Wilson interval over problems (n_eff = P), which covers like
  Clopper-Pearson: 0 of 32 gives [0, 14.1 %] at 95 % (Clopper-Pearson: 10.9 %; plain Wilson's dip below nominal
  at the edges is what the correction removes). Elsewhere n_eff is capped at P·(samples per problem).
- `paired_interval`: B − A on the same problems by MOVER (Zou & Donner, 2008; Newcombe's method 10 for paired
  proportions): each arm's Wilson limits combined with the correlation of the per-problem values. Identical arms
  give a non-degenerate interval around 0 (e.g. ±14.1 pp when neither arm solves any of 32 problems); where
  MOVER's one-sided distances cancel (every problem moves by the same amount) and its width falls below 0.1
  pp, it is widened to the score interval of the per-problem differences, so it never collapses to a point.
- `paired_p_value`: the two-sided p-value that matches `paired_interval` exactly (the level at which the interval
  touches 0), so "CI excludes 0" and "p < 1 − level" never disagree; used for family-wise corrections.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

_BISECT_STEPS = 40  # p-value resolution 2^-40
MIN_PAIRED_WIDTH = 1e-3  # 0.1 pp: narrower paired intervals are degenerate MOVER output (see _paired_limits)
EDGE_PROBLEMS = 10  # fewer problems than this away from 0 (or 1): Wilson over problems (n_eff <= P)


def z_of(ci_level: float, sides: int = 2, df: int | None = None) -> float:
    """Quantile for a two-sided (or one-sided) interval at `ci_level`: Student's t with `df` degrees of freedom
    (Cornish-Fisher expansion: within 4 % of the exact quantile at df = 3, 0.1 % from df = 30), normal if None."""
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    z = NormalDist().inv_cdf(1.0 - (1.0 - ci_level) / sides)
    if df is None or df < 1:
        return z
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)


def wilson(successes: float, trials: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion; `successes` and `trials` may be fractional (effective counts)."""
    if trials <= 0:
        return 0.0, 1.0
    p = min(1.0, max(0.0, successes / trials))
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_cc(successes: float, trials: float, z: float) -> tuple[float, float]:
    """Wilson score interval with continuity correction (Newcombe, 1998, method 4): near 0 and 1 it covers like
    Clopper-Pearson, where the plain Wilson interval dips below nominal (e.g. 88 % at a true 99.7 % on 32 problems)."""
    if trials <= 0:
        return 0.0, 1.0
    n, p, z2 = trials, min(1.0, max(0.0, successes / trials)), z * z
    root_low = math.sqrt(max(0.0, z2 - 2 - 1 / n + 4 * p * (n * (1 - p) + 1)))
    root_high = math.sqrt(max(0.0, z2 + 2 - 1 / n + 4 * p * (n * (1 - p) - 1)))
    low = 0.0 if p <= 0.0 else (2 * n * p + z2 - 1 - z * root_low) / (2 * (n + z2))
    high = 1.0 if p >= 1.0 else (2 * n * p + z2 + 1 + z * root_high) / (2 * (n + z2))
    return max(0.0, low), min(1.0, high)


def near_edge(values: np.ndarray) -> bool:
    """Fewer than `EDGE_PROBLEMS` problems away from 0, or from 1."""
    return min(int(np.count_nonzero(values > 0.0)), int(np.count_nonzero(values < 1.0))) < EDGE_PROBLEMS


def effective_trials(values: np.ndarray, max_per_problem: float = 1.0) -> float:
    """n_eff = m(1 − m) / Var(mean), between 1 and P·max_per_problem; P near an edge."""
    num = values.size
    m = float(values.mean())
    cap = num * max(1.0, float(max_per_problem))
    if num < 2 or near_edge(values):
        return float(num)
    var_mean = float(values.var(ddof=1)) / num
    binom = m * (1.0 - m)
    if binom <= 0.0:
        return float(num)
    if var_mean <= 0.0:
        return cap
    return float(min(cap, max(1.0, binom / var_mean)))


def _mean_limits(values: np.ndarray, z: float, max_per_problem: float) -> tuple[float, float]:
    n_eff = effective_trials(values, max_per_problem)
    interval = wilson_cc if near_edge(values) else wilson
    return interval(float(values.mean()) * n_eff, n_eff, z)


def mean_interval(values: Sequence[float] | np.ndarray, ci_level: float,
                  max_per_problem: float = 1.0) -> tuple[float, float]:
    """Two-sided interval for the population mean of per-problem values in [0, 1] (see the module docstring).

    max_per_problem: samples per problem (caps n_eff at P·n when the problems are more alike than binomial).
    """
    v = _unit(values)
    return _mean_limits(v, z_of(ci_level, df=v.size - 1), max_per_problem)


def paired_interval(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, ci_level: float,
                    max_per_problem: float = 1.0, sides: int = 2) -> tuple[float, float]:
    """Interval for mean(b − a) over the same problems (MOVER with the per-problem correlation)."""
    a_arr, b_arr = _unit(a), _unit(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a paired interval needs the same problems in both arms ({a_arr.size} vs {b_arr.size})")
    return _paired_limits(a_arr, b_arr, z_of(ci_level, sides, a_arr.size - 1), max_per_problem)


def paired_p_value(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                   max_per_problem: float = 1.0) -> float:
    """Two-sided p-value of "mean(b − a) = 0", the complement of the largest level whose interval excludes 0."""
    a_arr, b_arr = _unit(a), _unit(b)

    def excludes(alpha: float) -> bool:
        low, high = _paired_limits(a_arr, b_arr, z_of(1.0 - alpha, df=a_arr.size - 1), max_per_problem)
        return low > 0.0 or high < 0.0

    lo, hi = 0.0, 1.0  # excludes(alpha) is monotone: true for large alpha (narrow interval), false for small
    if not excludes(1.0 - 1e-12):
        return 1.0
    for _ in range(_BISECT_STEPS):
        mid = (lo + hi) / 2
        if excludes(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _paired_limits(a: np.ndarray, b: np.ndarray, z: float, max_per_problem: float) -> tuple[float, float]:
    """MOVER, widened where it collapses to the score interval of the per-problem differences themselves.

    When every problem moves by the same amount, MOVER's two one-sided distances can cancel and leave a point (or an
    interval under `MIN_PAIRED_WIDTH`, which a report in pp cannot tell from one). Only then, the
    differences mapped to [0, 1] as (b − a + 1) / 2 give their own score interval, which never collapses; the union
    keeps MOVER's coverage and leaves every non-degenerate interval as it is."""
    low, high = _mover(a, b, z, max_per_problem)
    if high - low >= MIN_PAIRED_WIDTH:
        return low, high
    shifted_low, shifted_high = _mean_limits((b - a + 1.0) / 2.0, z, max_per_problem)
    return max(-1.0, min(low, 2.0 * shifted_low - 1.0)), min(1.0, max(high, 2.0 * shifted_high - 1.0))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.size > 1 and a.std() > 0 and b.std() > 0:
        return float(np.corrcoef(a, b)[0, 1])
    return 0.0


def _mover(a: np.ndarray, b: np.ndarray, z: float, max_per_problem: float) -> tuple[float, float]:
    ma, mb = float(a.mean()), float(b.mean())
    la, ua = _mean_limits(a, z, max_per_problem)
    lb, ub = _mean_limits(b, z, max_per_problem)
    r = _correlation(a, b)
    d = mb - ma
    low = d - math.sqrt(max(0.0, (mb - lb) ** 2 - 2 * r * (mb - lb) * (ua - ma) + (ua - ma) ** 2))
    high = d + math.sqrt(max(0.0, (ub - mb) ** 2 - 2 * r * (ub - mb) * (ma - la) + (ma - la) ** 2))
    return max(-1.0, low), min(1.0, high)


def _unit(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("an interval needs at least one problem")
    if v.min() < 0.0 or v.max() > 1.0:
        raise ValueError("score intervals need per-problem values in [0, 1] (pass rates or pass@k)")
    return v
