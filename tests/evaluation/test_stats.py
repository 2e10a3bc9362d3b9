"""Score intervals over problems, the paired comparison, the bootstrap, difficulty quartiles and Holm."""
import numpy as np
import pytest

from megatron_ssd.evaluation.statistics.bootstrap import bootstrap_means, mean_ci, paired_difference
from megatron_ssd.evaluation.statistics.intervals import mean_interval, paired_interval, paired_p_value, wilson, z_of
from megatron_ssd.evaluation.statistics.slices import QUARTILE_LABELS, difficulty_quartiles, holm


def test_interval_brackets_the_mean_and_is_deterministic():
    values = np.random.default_rng(1).random(150)
    a = mean_ci(values, 0.95)
    assert a == mean_ci(values, 0.95)
    assert a["ci_low"] < a["estimate"] < a["ci_high"] and a["ci_method"] == "wilson-design-effect"


def test_ci_width_shrinks_with_more_problems():
    rng = np.random.default_rng(2)
    small = mean_ci(rng.integers(0, 2, 30), 0.95)
    large = mean_ci(rng.integers(0, 2, 3000), 0.95)
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 3


def test_nothing_passes_is_not_a_point():
    # 0 of 32 problems: continuity-corrected Wilson over problems (Clopper-Pearson: 10.9 %; t quantile, df = 31)
    lo, hi = mean_interval(np.zeros(32), 0.95, max_per_problem=10)
    assert lo == 0.0 and 0.10 < hi < 0.15
    lo, hi = mean_interval(np.ones(500), 0.95)
    assert hi == 1.0 and 0.99 < lo < 0.995
    assert wilson(0, 0, 1.96) == (0.0, 1.0)


def test_t_quantile():
    assert z_of(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_of(0.95, df=30) == pytest.approx(2.042272, rel=1e-3)
    assert z_of(0.95, sides=1) == pytest.approx(1.644854, abs=1e-6)
    with pytest.raises(ValueError):
        z_of(1.0)


def test_bootstrap_means_chunks_consistently():
    draws = bootstrap_means(np.arange(10.0), 5000, seed=3)
    assert draws.shape == (5000,) and draws.min() >= 0 and draws.max() <= 9
    with pytest.raises(ValueError):
        bootstrap_means([], 10, 0)


def test_identical_arms_give_zero_delta_with_a_real_interval():
    a = np.random.default_rng(3).random(100)
    out = paired_difference(a, a, 0.95, 1000, 0)
    assert out["delta"] == 0 and out["ci_low"] < 0 < out["ci_high"] and out["p_value"] == 1.0
    zeros = paired_difference(np.zeros(32), np.zeros(32), 0.95, 100, 0)
    assert zeros["ci_low"] < -0.05 and zeros["ci_high"] > 0.05  # neither arm solved anything: no [0, 0]


def test_paired_detects_a_consistent_improvement_that_unpaired_cis_miss():
    rng = np.random.default_rng(4)
    a = rng.random(80) * 0.95
    b = a + 0.03  # every problem a little better, huge between-problem spread
    paired = paired_difference(a, b, 0.95, 2000, 0)
    assert paired["ci_low"] > 0 and paired["p_value"] < 0.01
    assert mean_ci(b, 0.95)["ci_low"] < mean_ci(a, 0.95)["ci_high"]  # the separate CIs overlap


def test_p_value_matches_the_interval():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 2, 60).astype(float)
    b = np.where(rng.random(60) < 0.25, 1.0, a)
    p = paired_p_value(a, b)
    assert paired_interval(a, b, 1 - p * 0.99)[0] <= 0 < paired_interval(a, b, 1 - p * 1.01)[0]


def test_paired_no_effect_includes_zero_and_sign_flips():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, 200).astype(float)
    b = rng.permutation(a)
    out = paired_difference(a, b, 0.95, 2000, 0)
    assert out["ci_low"] <= 0 <= out["ci_high"]
    flipped = paired_difference(b, a, 0.95, 2000, 0)
    assert flipped["delta"] == pytest.approx(-out["delta"]) and flipped["ci_low"] == pytest.approx(-out["ci_high"])
    with pytest.raises(ValueError, match="same problems"):
        paired_difference(a, b[:-1], 0.95, 10, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mean_interval([2.0], 0.95)


def test_difficulty_quartiles_keep_ties_together():
    rates = {f"p{i}": r for i, r in enumerate([0, 0, 0, 0, 0, 0.1, 0.4, 0.6, 0.9, 1.0, 1.0, 1.0])}
    labels = difficulty_quartiles(rates)
    zero = {labels[p] for p, r in rates.items() if r == 0}
    one = {labels[p] for p, r in rates.items() if r == 1.0}
    assert zero == {QUARTILE_LABELS[0]} and len(one) == 1
    assert labels["p11"] != labels["p0"]
    assert difficulty_quartiles({}) == {}


def test_holm():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert holm({}) == {}


def test_paired_interval_never_collapses_when_every_problem_moves_alike():
    """Perfectly correlated arms (each problem +50 pp) made MOVER's interval a point; it must keep a width."""
    from megatron_ssd.evaluation.statistics.intervals import paired_interval, paired_p_value

    a, b = [0.0] * 6 + [0.5] * 6, [0.5] * 6 + [1.0] * 6
    low, high = paired_interval(a, b, 0.95, 2)
    assert low < 0.5 < high and high - low > 0.2
    assert paired_p_value(a, b, 2) < 0.05  # twelve problems all up by half: still a clear gain
