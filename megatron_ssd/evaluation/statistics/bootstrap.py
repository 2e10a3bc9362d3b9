"""Uncertainty for benchmark scores: bootstrap over problems, paired comparisons, difficulty slices.

Problems are the unit of resampling (samples of one problem are not independent), so every CI here comes from
resampling problems with replacement and recomputing the mean of per-problem pass@k. All randomness goes through a
seeded `numpy.random.Generator`, so a summary is reproducible from its inputs.

Paired comparison (model B vs model A on the same problems): resample problems once per replicate and take the
mean of the per-problem differences; far tighter than comparing two independent CIs, because per-problem
difficulty cancels. `p_value_like` is the two-sided bootstrap fraction 2·min(P(Δ* ≤ 0), P(Δ* ≥ 0)), a readable
summary, not an exact test.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

_CHUNK = 1 << 22  # indices per chunk, so B × P never allocates more than ~32 MB at once


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


def mean_ci(values: Sequence[float] | np.ndarray, ci_level: float, samples: int, seed: int) -> dict[str, float]:
    """Point estimate (the plain mean) and the percentile bootstrap CI over problems."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = percentile_ci(bootstrap_means(v, samples, seed), ci_level)
    return {"estimate": float(v.mean()), "ci_low": lo, "ci_high": hi, "ci_level": ci_level}


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, ci_level: float,
                     samples: int, seed: int) -> dict[str, float]:
    """Δ = mean(b − a) over the same problems (aligned arrays), its CI, and a bootstrap p-value-like number."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired bootstrap needs the same problems in both arms ({a_arr.size} vs {b_arr.size})")
    diff = b_arr - a_arr
    draws = bootstrap_means(diff, samples, seed)
    lo, hi = percentile_ci(draws, ci_level)
    p = 2.0 * min(float(np.mean(draws <= 0.0)), float(np.mean(draws >= 0.0)))
    return {"delta": float(diff.mean()), "ci_low": lo, "ci_high": hi, "ci_level": ci_level,
            "p_value_like": min(1.0, p), "num_problems": int(diff.size),
            "frac_b_better": float(np.mean(draws > 0.0))}


def align(per_problem_a: Mapping[str, float], per_problem_b: Mapping[str, float]) -> tuple[list[str], np.ndarray,
                                                                                          np.ndarray]:
    """Problems present in both mappings (sorted ids) and their aligned values."""
    ids = sorted(set(per_problem_a) & set(per_problem_b))
    return ids, np.array([per_problem_a[i] for i in ids]), np.array([per_problem_b[i] for i in ids])


QUARTILE_LABELS = ("Q1 (hardest)", "Q2", "Q3", "Q4 (easiest)")


def difficulty_quartiles(pass_rate: Mapping[str, float]) -> dict[str, str]:
    """Difficulty labels from the *base* model's per-problem pass rate (c/n), computed once and reused.

    Bins are cut at the 25/50/75th percentiles of the rate; problems with equal rates always share a bin, so with
    many ties (e.g. lots of 0 % problems) bins can be unequal or empty.
    """
    if not pass_rate:
        return {}
    rates = np.array(list(pass_rate.values()), dtype=np.float64)
    edges = np.quantile(rates, [0.25, 0.5, 0.75])
    return {pid: QUARTILE_LABELS[int(np.searchsorted(edges, r, side="left"))] for pid, r in pass_rate.items()}
