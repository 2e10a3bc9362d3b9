"""Classification and the per-position quantities against distributions computed by hand."""
import math

import numpy as np
import pytest

from megatron_ssd.evaluation.mechanism.distributions import entropy_bounds
from megatron_ssd.evaluation.mechanism.quantities import (FORK, LOCK, OTHER, Thresholds, Truncation, classify, decode,
                                                          entropy, outside_top_k, plausible, raw_quantities, tail)

from mechanism_toys import dists_from_probs

ROWS = [
    [0.95, 0.03, 0.01, 0.01, 0.0],   # lock: top-1 0.95
    [0.90, 0.04, 0.03, 0.02, 0.01],  # lock at the threshold exactly
    [0.50, 0.30, 0.10, 0.05, 0.05],  # fork: two above 0.15
    [0.40, 0.14, 0.14, 0.16, 0.16],  # fork: three above 0.15
    [0.80, 0.10, 0.05, 0.03, 0.02],  # other: one above 0.15, entropy 0.73 nats
    [0.60, 0.10, 0.10, 0.10, 0.10],  # fork by entropy: 0.306 + 4 * 0.230 = 1.227 nats >= 1.0
]


def test_classes_follow_the_declared_thresholds():
    d = dists_from_probs(ROWS)
    assert classify(d, Thresholds()).tolist() == [LOCK, LOCK, FORK, FORK, OTHER, FORK]
    # A stricter entropy threshold leaves the last row "other"; a lower lock threshold makes row 4 a lock.
    assert classify(d, Thresholds(fork_entropy=1.3))[5] == OTHER
    assert classify(d, Thresholds(lock_p=0.8))[4] == LOCK


def test_a_lock_with_a_wide_flat_tail_is_a_lock_not_a_fork():
    p = np.full((1, 2001), 0.1 / 2000)
    p[0, 0] = 0.9  # entropy 0.095 + 0.1 * ln(20000) = 1.085 nats >= 1.0, but top-1 is 0.9
    assert classify(dists_from_probs(p, k=20), Thresholds())[0] == LOCK


def test_tail_entropy_plausible_and_outside_top_k_by_hand():
    d = dists_from_probs(ROWS)
    q = np.exp(d.logp)
    assert tail(q) == pytest.approx([0.05, 0.10, 0.50, 0.60, 0.20, 0.40])
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1) + 2 * 0.05 * math.log(0.05))
    assert entropy(q)[2] == pytest.approx(h)
    assert plausible(q, 0.15).tolist() == [1, 1, 2, 3, 1, 1]
    # Mass outside the top 2: 1 - 0.95 - 0.03 = 0.02; 1 - 0.90 - 0.04 = 0.06.
    assert outside_top_k(d, 2)[:2] == pytest.approx([0.02, 0.06])
    assert outside_top_k(d, 0) == pytest.approx(np.zeros(6))
    raw = raw_quantities(d, Thresholds(), 2)
    assert raw["tail"][0] == pytest.approx(0.05) and raw["entropy_low"][2] == pytest.approx(h)


def test_decode_by_hand():
    logp = np.log(np.array([[0.5, 0.3, 0.1, 0.05, 0.05]]))
    # top-k 2 at T = 1: 0.5 / 0.8, 0.3 / 0.8.
    assert decode(logp, 1.0, Truncation(top_k=2))[0] == pytest.approx([0.625, 0.375, 0, 0, 0])
    # top-p 0.75: the prefix before each token: 0, 0.5, 0.8 -> keeps the first two.
    assert decode(logp, 1.0, Truncation(top_p=0.75))[0] == pytest.approx([0.625, 0.375, 0, 0, 0])
    # top-p 0.85 keeps three: 0.5, 0.3, 0.1 renormalised by 0.9.
    assert decode(logp, 1.0, Truncation(top_p=0.85))[0] == pytest.approx([0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9, 0, 0])
    # T = 0.5 squares the probabilities before renormalising: 0.25 / 0.35, 0.09 / 0.35, ...
    sq = np.array([0.25, 0.09, 0.01, 0.0025, 0.0025])
    assert decode(logp, 0.5, Truncation())[0] == pytest.approx(sq / sq.sum())
    # min-p 0.25 against the top token (0.5): keeps 0.5 and 0.3 only.
    assert decode(logp, 1.0, Truncation(min_p=0.25))[0] == pytest.approx([0.625, 0.375, 0, 0, 0])
    with pytest.raises(ValueError, match="temperature"):
        decode(logp, 0.0, Truncation())


def test_entropy_bounds_bracket_the_full_entropy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(300, 0.2), size=50)
    d = dists_from_probs(p, k=20)
    low, high = entropy_bounds(d.logp, 300)
    assert np.all(low <= d.entropy_low + 1e-9) and np.all(d.entropy_low <= high + 1e-9)
    full = dists_from_probs(p)  # K = V: nothing outside, the bounds meet
    low, high = entropy_bounds(full.logp, 300)
    assert low == pytest.approx(full.entropy_low) and high == pytest.approx(full.entropy_low)
