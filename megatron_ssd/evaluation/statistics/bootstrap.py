"""Benchmark means and paired comparisons over problems, and the bootstrap over problems (or prompts).

Problems are the unit (samples of one problem are not independent). The intervals are score-type
(`intervals.py`: Wilson with a design effect, MOVER for paired differences); they estimate the mean over the
population of problems like these, not the score on the fixed benchmark, and never collapse to a point. The
percentile bootstrap (`bootstrap_means`, `percentile_ci`) remains for statistics without a closed form (the
collapse probes' text metrics) and for the readable `frac_b_better`; all its randomness goes through a seeded
`numpy.random.Generator`, so a summary is reproducible from its inputs.

Paired comparison (model B vs model A on the same problems): the interval of mean(b − a) uses the correlation of
per-problem values, so it is far tighter than two separate CIs when per-problem difficulty cancels. `p_value` is the
two-sided p-value that matches the interval exactly (the interval at level L excludes 0 iff p < 1 − L);
`p_value_like` is the older bootstrap fraction 2·min(P(Δ* ≤ 0), P(Δ* ≥ 0)), kept for readers of old summaries.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .intervals import mean_interval, paired_interval, paired_p_value

_CHUNK = 1 << 22  # indices per chunk, so B × P never allocates more than ~32 MB at once
INTERVAL_METHOD = "wilson-design-effect"
PAIRED_METHOD = "mover-wilson-design-effect"


def bootstrap_means(values: Sequence[float] | np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Means of `samples` resamples (with replacement) of `values`."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("cannot bootstrap an empty set of problems")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // v.size)
    out = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, rows):
        stop = min(samples, start + rows)
        idx = rng.integers(0, v.size, size=(stop - start, v.size))
        out[start:stop] = v[idx].mean(axis=1)
    return out


def percentile_ci(draws: np.ndarray, ci_level: float) -> tuple[float, float]:
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    alpha = (1.0 - ci_level) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def mean_ci(values: Sequence[float] | np.ndarray, ci_level: float, *, max_per_problem: float = 1.0
            ) -> dict[str, float | str]:
    """Point estimate (the plain mean of per-problem values in [0, 1]) and its score interval over problems.

    max_per_problem: samples per problem (pass@k from n samples: n); bounds the effective number of trials.
    """
    v = np.asarray(values, dtype=np.float64)
    lo, hi = mean_interval(v, ci_level, max_per_problem)
    return {"estimate": float(v.mean()), "ci_low": lo, "ci_high": hi, "ci_level": ci_level,
            "ci_method": INTERVAL_METHOD}


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, ci_level: float,
                      samples: int, seed: int, *, max_per_problem: float = 1.0) -> dict[str, float | int | str]:
    """Δ = mean(b − a) over the same problems (aligned arrays of values in [0, 1]), its interval and p-values."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a paired comparison needs the same problems in both arms ({a_arr.size} vs {b_arr.size})")
    diff = b_arr - a_arr
    lo, hi = paired_interval(a_arr, b_arr, ci_level, max_per_problem)
    draws = bootstrap_means(diff, samples, seed)
    p_like = 2.0 * min(float(np.mean(draws <= 0.0)), float(np.mean(draws >= 0.0)))
    return {"delta": float(diff.mean()), "ci_low": lo, "ci_high": hi, "ci_level": ci_level,
            "ci_method": PAIRED_METHOD, "p_value": paired_p_value(a_arr, b_arr, max_per_problem),
            "p_value_like": min(1.0, p_like), "num_problems": int(diff.size),
            "frac_b_better": float(np.mean(draws > 0.0))}


def align(per_problem_a: Mapping[str, float], per_problem_b: Mapping[str, float]) -> tuple[list[str], np.ndarray,
                                                                                          np.ndarray]:
    """Problems present in both mappings (sorted ids) and their aligned values."""
    ids = sorted(set(per_problem_a) & set(per_problem_b))
    return ids, np.array([per_problem_a[i] for i in ids]), np.array([per_problem_b[i] for i in ids])
