"""Bootstrap CIs, the paired bootstrap, and base-model difficulty quartiles."""
import numpy as np
import pytest

from megatron_ssd.evaluation.statistics.bootstrap import (QUARTILE_LABELS, bootstrap_means, difficulty_quartiles, mean_ci,
                                           paired_bootstrap)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    values = rng.random(150)
    a = mean_ci(values, 0.95, 1000, seed=7)
    b = mean_ci(values, 0.95, 1000, seed=7)
    assert a == b
    assert a["ci_low"] < a["estimate"] < a["ci_high"]
    assert mean_ci(values, 0.95, 1000, seed=8) != a


def test_ci_width_shrinks_with_more_problems():
    rng = np.random.default_rng(2)
    small = mean_ci(rng.integers(0, 2, 30), 0.95, 2000, 0)
    large = mean_ci(rng.integers(0, 2, 3000), 0.95, 2000, 0)
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 3


def test_bootstrap_means_chunks_consistently():
    values = np.arange(10.0)
    draws = bootstrap_means(values, 5000, seed=3)
    assert draws.shape == (5000,)
    assert draws.min() >= 0 and draws.max() <= 9
    with pytest.raises(ValueError):
        bootstrap_means([], 10, 0)


def test_paired_identical_arms_give_zero_delta():
    a = np.random.default_rng(3).random(100)
    out = paired_bootstrap(a, a, 0.95, 1000, 0)
    assert out["delta"] == 0 and out["ci_low"] == 0 and out["ci_high"] == 0
    assert out["p_value_like"] == 1.0


def test_paired_detects_a_consistent_improvement_that_unpaired_cis_miss():
    rng = np.random.default_rng(4)
    a = rng.random(80)
    b = np.clip(a + 0.03, 0, 1)  # every problem a little better, huge between-problem spread
    paired = paired_bootstrap(a, b, 0.95, 2000, 0)
    assert paired["ci_low"] > 0 and paired["p_value_like"] < 0.01
    ca, cb = mean_ci(a, 0.95, 2000, 0), mean_ci(b, 0.95, 2000, 1)
    assert cb["ci_low"] < ca["ci_high"]  # the separate CIs overlap


def test_paired_no_effect_includes_zero_and_sign_flips():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, 200).astype(float)
    b = rng.permutation(a)
    out = paired_bootstrap(a, b, 0.95, 2000, 0)
    assert out["ci_low"] <= 0 <= out["ci_high"]
    assert paired_bootstrap(b, a, 0.95, 2000, 0)["delta"] == pytest.approx(-out["delta"])
    with pytest.raises(ValueError, match="same problems"):
        paired_bootstrap(a, b[:-1], 0.95, 10, 0)


def test_difficulty_quartiles_keep_ties_together():
    rates = {f"p{i}": r for i, r in enumerate([0, 0, 0, 0, 0, 0.1, 0.4, 0.6, 0.9, 1.0, 1.0, 1.0])}
    labels = difficulty_quartiles(rates)
    zero = {labels[p] for p, r in rates.items() if r == 0}
    one = {labels[p] for p, r in rates.items() if r == 1.0}
    assert zero == {QUARTILE_LABELS[0]} and len(one) == 1
    assert labels["p11"] != labels["p0"]
    assert difficulty_quartiles({}) == {}
