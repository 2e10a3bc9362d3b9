"""Calibration by simulation: the exact functions the report uses, on benchmarks with known pass probabilities.

Seeded (no flakes); each tolerance comes from the simulation's binomial error at its replicate count
(`calibration.binomial_limit` / `coverage_floor`: 3.29 standard errors plus one replicate). The larger grid,
P in {32, 164, 500} x n in {1, 2, 10}, is benchmarks/bench_calibration.py.
"""
import pytest

from megatron_ssd.evaluation.decisions import calibration as cal
from megatron_ssd.evaluation.decisions.verdict import GO_OTHER, GO_SSD, GO_VERIFIER_AWARE, INCONCLUSIVE

LEVEL = 0.95


@pytest.mark.parametrize("mean", [0.02, 0.3, 0.97], ids=["low", "medium", "high"])
@pytest.mark.parametrize("P,n,k", [(32, 1, 1), (32, 10, 1), (32, 10, 10), (164, 2, 1), (164, 10, 10)])
def test_passk_interval_covers(P, n, k, mean):
    out = cal.passk_coverage(P, n, k, mean, replicates=300, seed=P + n + k)
    assert out["zero_width"] == 0
    assert out["rate"] >= cal.coverage_floor(LEVEL, 300), out
    if mean == 0.3:  # in the middle the interval is not wastefully wide either
        assert out["rate"] <= cal.binomial_limit(LEVEL, 300), out


@pytest.mark.parametrize("mean,lift", [(0.02, 0.0), (0.3, 0.0), (0.3, 0.1), (0.97, 0.0), (0.6, 0.3)])
@pytest.mark.parametrize("P,n", [(32, 2), (164, 10)])
def test_paired_interval_covers(P, n, mean, lift):
    out = cal.paired_coverage(P, n, 1, mean, lift, replicates=150, seed=P + n)
    assert out["zero_width"] == 0
    assert out["rate"] >= cal.coverage_floor(LEVEL, 150), out


def test_paired_interval_covers_pass_at_n():
    out = cal.paired_coverage(164, 10, 10, 0.1, 0.05, replicates=150, seed=3)
    assert out["rate"] >= cal.coverage_floor(LEVEL, 150), out


def test_slices_do_not_manufacture_an_effect():
    # no true effect, base-quartile slices: before, the hardest quartile "improved" in 99 % of replicates
    out = cal.slice_false_positives(164, 10, replicates=60, seed=1)
    assert out["method"] == "base-heldout"
    assert out["family_wise"]["rate"] <= cal.binomial_limit(1 - LEVEL, 60), out
    assert out["per_slice"]["rate"] <= cal.binomial_limit(1 - LEVEL, out["per_slice"]["replicates"]), out
    assert abs(out["hardest_slice_mean_delta"]) < 0.02, out  # regression to the mean was +1.8 pp


@pytest.mark.parametrize("P,n", [(32, 2), (164, 10), (500, 2)])
def test_verdict_at_the_threshold_is_rarely_wrong(P, n):
    out = cal.verdict_rates(P, n, headroom=0.05, threshold_pp=5.0, replicates=200, seed=P)["verdicts"]
    go = out.get(GO_SSD, {"rate": 0.0})["rate"]
    below = sum(out.get(v, {"rate": 0.0})["rate"] for v in (GO_OTHER, GO_VERIFIER_AWARE))
    assert go <= cal.binomial_limit(1 - LEVEL, 200), out  # one-sided 95 % lower bound: <= 5 % false GO
    assert below <= cal.binomial_limit(1 - LEVEL, 200), out


def test_verdict_below_the_threshold_is_not_go():
    # a true 3 pp gap with a 5 pp threshold on 32 problems: GO-SSD in 25 % of runs before
    out = cal.verdict_rates(32, 10, headroom=0.03, replicates=200, seed=7)["verdicts"]
    assert out.get(GO_SSD, {"rate": 0.0})["rate"] <= cal.binomial_limit(1 - LEVEL, 200), out


def test_verdict_finds_large_headroom_and_refuses_n1():
    out = cal.verdict_rates(500, 10, headroom=0.10, replicates=60, seed=8)["verdicts"]
    assert out[GO_SSD]["rate"] >= 0.9, out
    assert cal.verdict_rates(164, 1, headroom=0.05, replicates=5)["verdicts"] == {
        INCONCLUSIVE: {"rate": 1.0, "replicates": 5, "se": pytest.approx(0.0, abs=1e-5)}}


def test_gate_false_pass_under_the_null():
    out = cal.gate_false_pass(32, 2, replicates=200, seed=2)
    assert out["rate"] <= cal.binomial_limit(1 - LEVEL, 200), out


def test_collapse_probes_do_not_alarm_on_noise():
    out = cal.probe_false_alarms(prompts=30, per_prompt=4, replicates=30, seed=4)
    assert out["any"]["rate"] <= cal.binomial_limit(1 - LEVEL, 30), out
    for name, probe in out["per_probe"].items():
        assert probe["rate"] <= cal.binomial_limit((1 - LEVEL) / 2, 30), (name, out)
