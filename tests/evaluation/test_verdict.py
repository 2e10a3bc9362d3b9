"""The precondition verdict rules on constructed base-model summaries: headroom at a declared k with bounds."""
import pytest

from megatron_ssd.evaluation.decisions.verdict import (GO_OTHER, GO_SSD, GO_VERIFIER_AWARE, INCONCLUSIVE, UNDECIDED,
                                                       VERDICTS, decide)
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.problems import Problem


def summary_from(per_problem: dict[str, tuple[int, int]], ks=(1, 4, 8)):
    rows, probs = [], []
    for pid, (n, c) in per_problem.items():
        probs.append(Problem(problem_id=pid, source="t", question="q", style="assert", test_code="assert True"))
        rows += [{"prompt_id": pid, "sample_idx": i, "passed": i < c, "outcome": "passed" if i < c else "failed",
                  "isolation": "bwrap"} for i in range(n)]
    return summarize(rows, probs, list(ks), max(n for n, _ in per_problem.values()), 0.95, 500, 0)


def test_big_gap_is_go_ssd_at_the_declared_k():
    # 300 problems solved 2/8 of the time: pass@2 − pass@1 = 2·6/56 = 21.4 pp, pass@8 − pass@1 = 75 pp
    s = summary_from({f"p{i}": (8, 2) for i in range(300)})
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == GO_SSD and v["best_k"] == 2 and v["headroom_k"] == 2
    assert v["headroom"]["gap_pp"] == pytest.approx(100 * 12 / 56) and v["headroom"]["lower_pp"] > 5
    assert v["gaps"]["8"]["gap_pp"] == pytest.approx(75.0) and v["weaknesses"] == [] and not v["provisional"]


def test_undecided_says_how_many_problems_would_decide():
    # 60 of 300 problems solved 4/8: headroom 5.7 pp, bounds straddle 5 pp
    s = summary_from({f"p{i}": (8, 4 if i < 60 else 0) for i in range(300)})
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == UNDECIDED and v["headroom"]["lower_pp"] < 5 <= v["headroom"]["upper_pp"]
    assert v["to_decide"]["problems"] > 300 and "would decide" in v["reason"]
    assert any("straddle" in w for w in v["weaknesses"])


def test_clearly_below_with_real_headroom_is_verifier_aware():
    s = summary_from({f"p{i}": (8, 4 if i < 60 else 0) for i in range(300)})
    v = decide(s, gap_threshold_pp=20, contamination_checked=True)
    assert v["verdict"] == GO_VERIFIER_AWARE and v["headroom"]["upper_pp"] < 20 and v["headroom"]["lower_pp"] >= 1
    assert decide(s, gap_threshold_pp=20, has_tests=False)["verdict"] == GO_OTHER
    # the verifier-aware minimum is applied to the lower bound, not to the estimate
    assert decide(s, gap_threshold_pp=20, min_headroom_pp=5.0)["verdict"] == GO_OTHER


def test_declared_k_changes_what_is_measured():
    s = summary_from({f"p{i}": (8, 1 if i < 30 else 0) for i in range(300)})
    assert decide(s, gap_threshold_pp=5)["verdict"] == GO_OTHER  # pass@2 − pass@1 = 1.25 pp
    assert decide(s, gap_threshold_pp=5, headroom_k=8)["verdict"] == GO_SSD  # pass@8 − pass@1 = 8.75 pp
    assert decide(s, gap_threshold_pp=10, headroom_k=8)["verdict"] == UNDECIDED


def test_no_gap_low_pass1_is_go_other_with_sft():
    s = summary_from({f"p{i}": (8, 8 if i < 3 else 0) for i in range(300)})  # 1% pass@1, no gap at all
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == GO_OTHER and "SFT on external data" in v["alternative"]


def test_no_gap_with_reward_signal_suggests_rl():
    s = summary_from({f"p{i}": (8, 8 if i < 60 else 0) for i in range(300)})  # 20% pass@1 = pass@8
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == GO_OTHER and "RL with a verifier" in v["alternative"]
    assert decide(s, has_tests=False, contamination_checked=True)["alternative"].startswith("SFT")


def test_saturated_set():
    s = summary_from({f"p{i}": (8, 8 if i < 290 else 7) for i in range(300)})
    v = decide(s, gap_threshold_pp=5)
    assert v["verdict"] == GO_OTHER and "harder" in v["alternative"]


def test_weaknesses_and_provisional():
    s = summary_from({f"p{i}": (2, 1) for i in range(50)}, ks=(1, 2, 8))
    v = decide(s, requested_k=[1, 8, 16])
    text = " ".join(v["weaknesses"])
    assert "only 50 held-out problems" in text and "contamination" in text and "k = [8, 16]" in text
    assert v["verdict"] == GO_SSD and v["provisional"]  # pass@2 − pass@1 = 50 pp on every problem


def test_one_sample_is_inconclusive_not_no_headroom():
    s = summary_from({f"p{i}": (1, i % 2) for i in range(10)}, ks=(1, 4))
    v = decide(s)
    assert v["verdict"] == INCONCLUSIVE and "nothing is known" in v["reason"] and v["headroom"] is None
    assert decide({"per_problem": {}, "pass_at_k": {}})["verdict"] == INCONCLUSIVE
    assert set(VERDICTS) == {GO_SSD, GO_VERIFIER_AWARE, GO_OTHER, UNDECIDED, INCONCLUSIVE}


def test_verdict_json_keeps_its_keys():
    v = decide(summary_from({f"p{i}": (8, 2) for i in range(30)}))
    old = {"gap_threshold_pp", "gaps", "pass_at_k", "pass1", "num_problems", "n", "has_tests",
           "contamination_checked", "weaknesses", "verdict", "alternative", "reason", "best_k"}
    assert old <= set(v) and {"headroom", "headroom_k", "provisional", "to_decide", "confidence"} <= set(v)
