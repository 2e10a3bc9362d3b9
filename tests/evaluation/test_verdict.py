"""The precondition verdict rules on constructed base-model summaries."""
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.evaluation.decisions.verdict import GO_OTHER, GO_SSD, GO_VERIFIER_AWARE, decide
from megatron_ssd.problems import Problem


def summary_from(per_problem: dict[str, tuple[int, int]], ks=(1, 4, 8)):
    rows, probs = [], []
    for pid, (n, c) in per_problem.items():
        probs.append(Problem(problem_id=pid, source="t", question="q", style="assert", test_code="assert True"))
        rows += [{"prompt_id": pid, "sample_idx": i, "passed": i < c, "outcome": "passed" if i < c else "failed",
                  "isolation": "bwrap"} for i in range(n)]
    return summarize(rows, probs, list(ks), max(n for n, _ in per_problem.values()), 0.95, 500, 0)


def test_big_gap_is_go_ssd():
    # 300 problems solved 2/8 of the time: pass@1 25%, pass@8 100%.
    s = summary_from({f"p{i}": (8, 2) for i in range(300)})
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == GO_SSD and v["best_k"] == 8 and v["gaps"]["8"]["gap_pp"] > 70
    assert v["weaknesses"] == []


def test_no_gap_low_pass1_is_go_other_with_sft():
    s = summary_from({f"p{i}": (8, 8 if i < 3 else 0) for i in range(300)})  # 1% pass@1, no gap at all
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == GO_OTHER and "SFT on external data" in v["alternative"]


def test_no_gap_with_reward_signal_suggests_rl():
    s = summary_from({f"p{i}": (8, 8 if i < 60 else 0) for i in range(300)})  # 20% pass@1 = pass@8
    v = decide(s, gap_threshold_pp=5, contamination_checked=True)
    assert v["verdict"] == GO_OTHER and "RL with a verifier" in v["alternative"]
    assert decide(s, has_tests=False, contamination_checked=True)["alternative"].startswith("SFT")


def test_small_real_gap_with_tests_is_verifier_aware():
    # 30 of 300 problems solved once in 8: pass@1 1.25%, pass@8 10% -> gap 8.75 pp: GO-SSD at threshold 5 ...
    s = summary_from({f"p{i}": (8, 1 if i < 30 else 0) for i in range(300)})
    assert decide(s, gap_threshold_pp=5)["verdict"] == GO_SSD
    # ... but with a stricter threshold the small, real headroom calls for verifier-aware SSD.
    v = decide(s, gap_threshold_pp=10, contamination_checked=True)
    assert v["verdict"] == GO_VERIFIER_AWARE and v["gaps"]["8"]["ci_low_pp"] > 0
    assert decide(s, gap_threshold_pp=10, has_tests=False)["verdict"] == GO_OTHER


def test_saturated_set():
    s = summary_from({f"p{i}": (8, 8 if i < 290 else 7) for i in range(300)})
    v = decide(s, gap_threshold_pp=5)
    assert v["verdict"] == GO_OTHER and "harder" in v["alternative"]


def test_weaknesses_are_listed():
    s = summary_from({f"p{i}": (2, 1) for i in range(50)}, ks=(1, 2, 8))
    v = decide(s, requested_k=[1, 8, 16])
    text = " ".join(v["weaknesses"])
    assert "only 50 held-out problems" in text and "contamination" in text and "k = [8, 16]" in text
    assert v["verdict"] == GO_SSD  # pass@2 - pass@1 = 25 pp


def test_no_k_above_one_is_not_a_crash():
    s = summary_from({f"p{i}": (1, i % 2) for i in range(10)}, ks=(1, 4))
    v = decide(s)
    assert v["verdict"] == GO_OTHER and "no k > 1" in v["reason"]
