"""Shared helpers for the mechanism probe's tests: distributions from explicit probabilities, and tiny HF models."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from megatron_ssd.evaluation.mechanism.distributions import Distributions

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))  # tiny_models (tests/models)


def dists_from_probs(probs, k: int | None = None, problem=None, sequence=None) -> Distributions:
    """Exact `Distributions` of full probability rows [N, V] (each row sums to 1)."""
    p = np.asarray(probs, dtype=np.float64)
    k = k or p.shape[1]
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(p, order, axis=1)
    with np.errstate(divide="ignore"):
        logp = np.log(top)
        ent = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    n = p.shape[0]
    problem = np.zeros(n, dtype=np.int64) if problem is None else np.asarray(problem)
    sequence = np.zeros(n, dtype=np.int64) if sequence is None else np.asarray(sequence)
    return Distributions(logp, order.astype(np.int64), ent, ent.copy(), problem, sequence, np.arange(n),
                         [f"p{i}" for i in range(int(problem.max()) + 1)], exact=True)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """Two tiny random llama HF folders (different seeds): a base and a 'tuned' model with the same tokenizer."""
    import tiny_models

    root = tmp_path_factory.mktemp("mechanism_models")
    return (tiny_models.make_hf_folder("llama", root / "base", seed=0),
            tiny_models.make_hf_folder("llama", root / "tuned", seed=1))
