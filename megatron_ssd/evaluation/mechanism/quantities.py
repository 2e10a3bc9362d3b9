"""Position classes and the per-position quantities of the probe, in numpy over `Distributions`.

Classes come from the **base** model's raw distribution (temperature 1, no truncation), with declared thresholds
(`Thresholds`, `eval.mechanism`): a *lock* has top-1 probability >= `lock_p`; a *fork* is not a lock and has at least
two continuations above `plausible_p`, or entropy >= `fork_entropy` nats (the entropy's lower bound on the top-K
path, so a bounded entropy never makes a fork on its own upper bound); everything else is *other*. A lock has at
most one token above 1 − lock_p, so with plausible_p >= 1 − lock_p the two tests cannot both hold; a lock wins where
its wide flat tail alone reaches fork_entropy.

`decode` is the distribution a sampler draws from at temperature T with a truncation, in vLLM's order (temperature,
then min-p against the most likely token, then top-k, then top-p keeping the smallest prefix whose mass reaches p).
With top_k in 1..K it depends on the top K log-probabilities only, so it is exact from either extraction path;
otherwise it is renormalised over the top K (`decode_is_exact` says which).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distributions import Distributions

OTHER, LOCK, FORK = 0, 1, 2
CLASS_NAMES = {OTHER: "other", LOCK: "lock", FORK: "fork"}


@dataclass(frozen=True)
class Thresholds:
    lock_p: float = 0.9
    plausible_p: float = 0.15
    fork_entropy: float = 1.0

    @classmethod
    def from_config(cls, m) -> "Thresholds":
        return cls(lock_p=m.lock_p, plausible_p=m.plausible_p, fork_entropy=m.fork_entropy)


@dataclass(frozen=True)
class Truncation:
    """The training decoding's truncation (sample.top_k, sample.top_p, sample.min_p); top_k 0 = none."""
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    @classmethod
    def from_config(cls, s) -> "Truncation":
        return cls(top_k=int(s.top_k), top_p=float(s.top_p), min_p=float(s.min_p))


def classify(base: Distributions, t: Thresholds) -> np.ndarray:
    """OTHER / LOCK / FORK per position, from the base model's raw distribution."""
    p = np.exp(base.logp)
    lock = p[:, 0] >= t.lock_p
    fork = ~lock & (((p > t.plausible_p).sum(axis=1) >= 2) | (base.entropy_low >= t.fork_entropy))
    return np.where(lock, LOCK, np.where(fork, FORK, OTHER)).astype(np.int8)


def decode(logp: np.ndarray, temperature: float, trunc: Truncation) -> np.ndarray:
    """Probabilities [N, K] (zeros where truncated) of the sampler at `temperature` with `trunc`, from sorted
    descending raw log-probabilities [N, K]."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (greedy decoding has no distribution), got {temperature}")
    z = logp / temperature
    z = z - z[:, :1]  # the top-1 at 0: exp(z) is the probability relative to the most likely token
    keep = np.isfinite(z)
    if trunc.min_p > 0:
        keep &= np.exp(z) >= trunc.min_p
    if 0 < trunc.top_k < z.shape[1]:
        keep[:, trunc.top_k:] = False
    q = np.where(keep, np.exp(np.where(keep, z, 0.0)), 0.0)
    q /= q.sum(axis=1, keepdims=True)
    if trunc.top_p < 1.0:
        before = np.cumsum(q, axis=1) - q  # mass of the more likely tokens
        q = np.where(before < trunc.top_p, q, 0.0)
        q /= q.sum(axis=1, keepdims=True)
    return q


def decode_is_exact(trunc: Truncation, k: int) -> bool:
    """Whether `decode` from the top K equals decoding over the full vocabulary."""
    return 0 < trunc.top_k <= k


def tail(q: np.ndarray) -> np.ndarray:
    """Distractor tail mass 1 − p(top-1) of probabilities [N, K'] (rows need not be sorted)."""
    return 1.0 - q.max(axis=1)


def entropy(q: np.ndarray) -> np.ndarray:
    """Entropy in nats of probabilities [N, K'] that sum to 1 (zeros allowed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)


def plausible(q: np.ndarray, p: float) -> np.ndarray:
    """Number of continuations with probability above p."""
    return (q > p).sum(axis=1)


def outside_top_k(d: Distributions, top_k: int) -> np.ndarray:
    """Raw probability mass outside the top `top_k` tokens (what the training truncation cuts at T = 1); exact for
    top_k <= K. top_k 0 (no top-k truncation) cuts nothing."""
    if top_k <= 0:
        return np.zeros(len(d))
    return np.clip(1.0 - np.exp(d.logp[:, :top_k]).sum(axis=1), 0.0, 1.0)


def raw_quantities(d: Distributions, t: Thresholds, top_k: int) -> dict[str, np.ndarray]:
    """The per-position quantities of a raw distribution (temperature 1, no truncation)."""
    p = np.exp(d.logp)
    return {"tail": 1.0 - p[:, 0], "outside_top_k": outside_top_k(d, top_k), "entropy_low": d.entropy_low,
            "entropy_high": d.entropy_high, "plausible": plausible(p, t.plausible_p).astype(np.float64)}
