"""Next-token distributions per teacher-forced position, in the one form both extraction paths produce.

A position keeps its top-K raw log-probabilities (temperature 1, no truncation, sorted descending) and their token
ids; what lies outside the top K is summarised by its mass and by the entropy of the whole distribution. The exact
path (transformers, the full vocabulary) gives the entropy exactly (`entropy_low == entropy_high`); the top-K path
(vLLM `prompt_logprobs`) bounds it: at least the entropy with the remaining mass on one token, at most with it spread
evenly over the other V − K tokens. Every quantity of the probe that needs more than the top K says which of the two
it used.

Decoding with a top-k truncation of k <= K depends only on the top K, so the temperature frontier is exact from
either path whenever the training truncation has top_k in 1..K (`quantities.decode`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Distributions:
    """N positions. `problem[i]` is the index of position i's problem in `problem_ids`; `sequence[i]` the index of
    its teacher-forced sequence (one sample), so positions can be grouped by problem and split by sample;
    `position[i]` the index, in that sequence's token ids, of the token the distribution predicts."""

    logp: np.ndarray  # float64 [N, K], sorted descending, raw log-probabilities
    ids: np.ndarray  # int64 [N, K]
    entropy_low: np.ndarray  # float64 [N], nats
    entropy_high: np.ndarray  # float64 [N]
    problem: np.ndarray  # int64 [N]
    sequence: np.ndarray  # int64 [N]
    position: np.ndarray  # int64 [N]
    problem_ids: list[str]
    exact: bool

    def __post_init__(self) -> None:
        n = self.logp.shape[0]
        for name in ("ids", "entropy_low", "entropy_high", "problem", "sequence", "position"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"Distributions.{name} has {getattr(self, name).shape[0]} rows, logp has {n}")

    def __len__(self) -> int:
        return int(self.logp.shape[0])

    @property
    def k(self) -> int:
        return int(self.logp.shape[1])

    @property
    def rest_mass(self) -> np.ndarray:
        """Probability outside the top K."""
        return np.clip(1.0 - np.exp(self.logp).sum(axis=1), 0.0, 1.0)

    def select(self, mask: np.ndarray) -> "Distributions":
        return Distributions(self.logp[mask], self.ids[mask], self.entropy_low[mask], self.entropy_high[mask],
                             self.problem[mask], self.sequence[mask], self.position[mask], self.problem_ids, self.exact)


def from_logits(logits, k: int):
    """(top-K log-probabilities, their ids, exact entropy) of full-vocabulary logits [N, V] (a torch tensor)."""
    import torch  # why: torch-heavy; the report and the CLI's --help import this package without it

    logp = torch.log_softmax(logits.to(torch.float32), dim=-1)
    entropy = -(logp.exp() * logp).sum(dim=-1)
    top = torch.topk(logp, min(k, logp.shape[-1]), dim=-1)
    return top.values.double().numpy(), top.indices.long().numpy(), entropy.double().numpy()


def entropy_bounds(logp: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on the full entropy from the top-K log-probabilities [N, K] of a vocabulary of `vocab_size`: the rest
    on one token (low) or spread evenly over the V − K others (high)."""
    p = np.exp(logp)
    known = -(p * logp).sum(axis=1)
    rest = np.clip(1.0 - p.sum(axis=1), 0.0, 1.0)
    others = max(1, vocab_size - logp.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.where(rest > 0, -rest * np.log(rest), 0.0)
        spread = np.where(rest > 0, -rest * np.log(rest / others), 0.0)
    return known + one, known + spread
