"""The unbiased pass@k estimator (Chen et al., 2021) and which k a run can support.

For a problem with n samples of which c pass, pass@k = 1 − C(n−c, k) / C(n, k): the probability that at least one
of k samples drawn without replacement from the n passes. It is computed in the numerically stable product form
1 − Π_{i=n−c+1}^{n} (1 − k/i), which never forms the huge binomials. A benchmark's pass@k is the mean over
problems. k > n is not estimable and is refused rather than extrapolated.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with `n` samples, `c` of them correct."""
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"pass@{k} is not estimable from n={n} samples (need 1 <= k <= n)")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def pass_at_k_array(n: Sequence[int] | np.ndarray, c: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    """Per-problem pass@k for arrays of (n, c); every n must be >= k."""
    n_arr = np.asarray(n, dtype=np.int64)
    c_arr = np.asarray(c, dtype=np.int64)
    if n_arr.shape != c_arr.shape:
        raise ValueError("n and c must have the same length")
    if n_arr.size and (n_arr.min() < k or k < 1):
        raise ValueError(f"pass@{k} needs at least {k} samples for every problem (smallest n is {n_arr.min()})")
    return np.array([pass_at_k(int(a), int(b), k) for a, b in zip(n_arr, c_arr)], dtype=np.float64)


def feasible_ks(ks: Iterable[int], n_min: int) -> tuple[list[int], list[int]]:
    """Split requested k values into (estimable, skipped) for the smallest per-problem sample count."""
    ks = sorted({int(k) for k in ks})
    if any(k < 1 for k in ks):
        raise ValueError(f"k values must be >= 1, got {ks}")
    return [k for k in ks if k <= n_min], [k for k in ks if k > n_min]


def headroom_array(n: Sequence[int] | np.ndarray, c: Sequence[int] | np.ndarray, k: int = 2) -> np.ndarray:
    """Per-problem pass@k − pass@1, the headroom SSD can move toward pass@1; never negative.

    At k = 2 this is c(n − c) / (n(n − 1)), the unbiased estimator of p(1 − p) (pass@2 − pass@1 = mean
    p(1 − p) over problems): the k-free headroom, estimable from any n >= 2.
    """
    return pass_at_k_array(n, c, k) - pass_at_k_array(n, c, 1)
