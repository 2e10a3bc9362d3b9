"""The temperature frontier equals rescaling the logits with the training truncation; the excess statistic and its
paired bootstrap."""
import numpy as np
import pytest
import torch

from megatron_ssd.evaluation.mechanism.distributions import Distributions, from_logits
from megatron_ssd.evaluation.mechanism.frontier import (BEYOND, INDISTINGUISHABLE, INSIDE, OUT_OF_RANGE, excess_at,
                                                        frontier_test, joint_bootstrap_means, reading, split_halves)
from megatron_ssd.evaluation.mechanism.quantities import Truncation, decode, decode_is_exact
from megatron_ssd.evaluation.statistics.bootstrap import bootstrap_means


def reference_decode(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Sampling distribution over the full vocabulary, written directly: logits / T, keep the top_k largest, then
    the smallest set of most likely tokens whose probability reaches top_p."""
    z = logits / temperature
    if top_k > 0:
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
        z = torch.where(z >= kth, z, torch.tensor(-float("inf"), dtype=z.dtype))
    p = torch.softmax(z, dim=-1)
    sorted_p, order = torch.sort(p, dim=-1, descending=True)
    before = torch.cumsum(sorted_p, dim=-1) - sorted_p
    sorted_p = torch.where(before < top_p, sorted_p, torch.zeros_like(sorted_p))
    out = torch.zeros_like(p).scatter(-1, order, sorted_p)
    return out / out.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.0, 1.6, 2.0])
@pytest.mark.parametrize("top_k,top_p", [(20, 0.95), (20, 0.8), (5, 1.0), (20, 1.0)])
def test_frontier_equals_rescaling_the_logits(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(int(temperature * 10) + top_k)
    logits = torch.randn(64, 1000, generator=g, dtype=torch.float64) * 3.0
    logp, ids, _ = from_logits(logits, 32)
    q = decode(logp, temperature, Truncation(top_k=top_k, top_p=top_p))
    ref = reference_decode(logits, temperature, top_k, top_p)
    ours = torch.zeros_like(ref).scatter(-1, torch.from_numpy(ids), torch.from_numpy(q))
    assert torch.allclose(ours, ref, atol=1e-6)
    assert decode_is_exact(Truncation(top_k=top_k, top_p=top_p), 32)
    assert not decode_is_exact(Truncation(top_k=0, top_p=top_p), 32)


def test_joint_bootstrap_resamples_the_same_problems_in_every_column():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), rng.normal(size=40)
    draws = joint_bootstrap_means(np.stack([a, b], axis=1), 300, seed=7)
    assert np.allclose(draws[:, 1] - draws[:, 0], bootstrap_means(b - a, 300, 7))


def test_excess_at_by_hand():
    temps = np.array([0.5, 1.0, 1.5])
    entropy_curve, tail_curve = np.array([0.4, 0.8, 1.2]), np.array([0.00, 0.04, 0.10])
    # At fork entropy 1.0 the frontier sits halfway between T=1 and T=1.5: tail 0.07; a point with tail 0.02 is
    # 0.05 beyond it, and its matched temperature is 1.25.
    assert excess_at(entropy_curve, tail_curve, temps, 1.0, 0.02) == pytest.approx((0.05, 1.25))
    assert np.isnan(excess_at(entropy_curve, tail_curve, temps, 1.5, 0.02)[0])  # off the grid


def test_reading_needs_the_interval_to_clear_the_margin():
    assert reading(0.01, 0.03, 0.005) == BEYOND
    assert reading(0.004, 0.03, 0.005) == INDISTINGUISHABLE
    assert reading(-0.03, -0.01, 0.005) == INSIDE
    assert reading(-0.01, 0.01, 0.005) == INDISTINGUISHABLE
    assert reading(float("nan"), 0.01, 0.005) == OUT_OF_RANGE


def _toy(problems=6, per=8, seed=0):
    rng = np.random.default_rng(seed)
    n = problems * per
    logits = torch.from_numpy(rng.normal(0, 0.5, size=(n, 50)))
    logits[::2, 0] += 6.0  # locks
    logits[1::2, 1:3] += 4.0  # forks
    logp, ids, ent = from_logits(logits, 20)
    problem = np.repeat(np.arange(problems), per)
    sequence = np.repeat(np.arange(problems * 2), per // 2)
    return Distributions(logp, ids, ent, ent.copy(), problem, sequence, np.arange(n),
                         [f"p{i}" for i in range(problems)], exact=True), logits


def test_the_base_against_itself_sits_on_its_own_frontier():
    from megatron_ssd.evaluation.mechanism.quantities import Thresholds, classify

    d, _ = _toy()
    classes = classify(d, Thresholds())
    out = frontier_test(d, classes, d, classes, temperatures=[0.5, 1.0, 1.5], point_temperature=1.0,
                        trunc=Truncation(top_k=20, top_p=0.95), plausible_p=0.15, min_excess=0.005, ci_level=0.95,
                        samples=200, seed=0, extra_points={"decode-only": 1.2})
    assert out["excess"]["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert out["excess"]["matched_temperature"] == pytest.approx(1.0)
    assert out["reading"] == INDISTINGUISHABLE
    assert out["temperatures"] == [0.5, 1.0, 1.2, 1.5]  # the decode-only temperature joins the grid
    assert out["extra_points"]["decode-only"]["temperature"] == 1.2


def test_split_halves_alternate_samples_within_each_problem():
    d, _ = _toy(problems=2, per=8)
    half = split_halves(d)
    # Problem 0 has sequences 0 and 1, problem 1 has 2 and 3: the even-ranked ones are 0 and 2.
    assert half.tolist() == [True] * 4 + [False] * 4 + [True] * 4 + [False] * 4
