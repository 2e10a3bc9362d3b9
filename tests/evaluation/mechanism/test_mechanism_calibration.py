"""Simulated pairs with a known answer through the probe's own code path (`mechanism.calibration`): the null check's
false-alarm rate, a pure temperature change read as one, and a lock-only sharpening detected."""
import numpy as np
import pytest

from megatron_ssd.evaluation.decisions.calibration import binomial_limit
from megatron_ssd.evaluation.mechanism import calibration as cal
from megatron_ssd.evaluation.mechanism.frontier import BEYOND, INDISTINGUISHABLE

SIM = cal.Simulation()
NULL_REPLICATES = 200


def test_null_check_false_alarm_rate_is_at_most_nominal():
    """The base against itself on split halves: any reading but "indistinguishable" is a false alarm; its rate stays
    within the nominal 1 − ci_level plus the simulation's binomial error."""
    r = cal.null_alarm_rate(SIM, NULL_REPLICATES, seed=11)
    assert r["rate"] <= binomial_limit(1.0 - SIM.ci_level, NULL_REPLICATES), r


@pytest.mark.parametrize("t0", [0.77, 0.93, 1.17, 1.42])
def test_a_pure_temperature_change_is_indistinguishable_from_one(t0):
    rng = np.random.default_rng(int(100 * t0))
    logits, *meta = cal.simulate_logits(SIM, rng)
    base = cal.distributions(logits, *meta, SIM.k)
    tuned = cal.distributions(logits / t0, *meta, SIM.k)
    out = cal.compare(SIM, base, tuned, seed=1)
    assert out["reading"] == INDISTINGUISHABLE, out["excess"]
    assert out["excess"]["matched_temperature"] == pytest.approx(t0, abs=0.02)


def test_sharpening_locks_only_is_detected():
    r = cal.detection_rate(SIM, 20, boost=0.5, seed=3)
    assert r["rate"] >= 0.9, r


def test_the_detected_pair_keeps_fork_entropy_and_cuts_lock_tail():
    rng = np.random.default_rng(5)
    logits, *meta = cal.simulate_logits(SIM, rng)
    base = cal.distributions(logits, *meta, SIM.k)
    tuned = cal.distributions(cal.sharpen_locks(logits, base, SIM.thresholds, 0.5), *meta, SIM.k)
    out = cal.compare(SIM, base, tuned, seed=0)
    at_one = next(f for f in out["frontier"] if f["temperature"] == 1.0)
    assert out["reading"] == BEYOND
    assert out["point"]["fork_entropy"]["estimate"] == pytest.approx(at_one["fork_entropy"], rel=1e-9)
    assert out["point"]["lock_tail"]["estimate"] < at_one["lock_tail"]
