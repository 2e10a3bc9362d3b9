"""`score_samples` rows and the `summarize` schema (difficulty slices, no-tests, isolation, lengths)."""
import pytest

from megatron_ssd.errors import DataError
from megatron_ssd.evaluation.scoring import ROW_FIELDS, SCHEMA, paired_passk, score_samples, slice_table, summarize
from megatron_ssd.problems import Problem


def rows_for(counts: dict[str, tuple[int, int]], isolation="bwrap", tokens=None):
    rows = []
    for pid, (n, c) in counts.items():
        for i in range(n):
            rows.append({"prompt_id": pid, "sample_idx": i, "passed": i < c, "outcome": "passed" if i < c else "failed",
                         "reason": "", "isolation": isolation, "num_tokens": tokens})
    return rows


def toy_problems(ids, difficulty=None):
    return [Problem(problem_id=p, source="t", question="q", style="assert", test_code="assert True",
                    difficulty=difficulty(p) if difficulty else None) for p in ids]


def test_summary_schema_and_numbers():
    counts = {f"p{i}": (4, i % 5) for i in range(20)}  # c in 0..4
    s = summarize(rows_for(counts, tokens=100), toy_problems(counts), [1, 2, 4, 8], n=4, ci_level=0.9,
                  bootstrap_samples=500, seed=3)
    assert s["schema"] == SCHEMA and s["num_problems"] == 20 and s["num_samples"] == 80
    assert s["k"] == [1, 2, 4] and s["k_skipped"] == [8]
    assert s["pass_at_k"]["1"]["estimate"] == pytest.approx(sum(c for _, c in counts.values()) / 80)
    assert s["pass_at_k"]["4"]["estimate"] == pytest.approx(16 / 20)
    for est in s["pass_at_k"].values():
        assert est["ci_low"] <= est["estimate"] <= est["ci_high"] and est["ci_level"] == 0.9
    assert s["difficulty_method"] == "base-heldout" and len(s["per_difficulty"]) >= 2
    assert "even-numbered" in s["difficulty_note"]
    assert sum(v["num_problems"] for v in s["per_difficulty"].values()) == 20
    # the held-out (odd) samples are what slices compare: samples 1 and 3 of each problem
    assert s["per_problem_heldout"]["p3"] == {"n": 2, "c": 1} and s["per_problem_heldout"]["p4"] == {"n": 2, "c": 2}
    assert all(v["samples"] == "heldout" and set(v["pass_at_k"]) <= {"1", "2"} for v in s["per_difficulty"].values())
    assert s["per_problem"]["p3"] == {"n": 4, "c": 3}
    assert s["isolation"] == ["bwrap"] and s["isolation_warning"] is None
    assert s["length"]["num_tokens"]["median"] == 100
    assert s["incomplete_problems"]["count"] == 0
    again = summarize(rows_for(counts, tokens=100), toy_problems(counts), [1, 2, 4, 8], 4, 0.9, 500, 3)
    assert again == s  # seeded: reproducible


def test_source_labels_given_mapping_and_reuse():
    counts = {"a": (2, 2), "b": (2, 0), "c": (2, 1)}
    labels = {"a": "easy", "b": "hard", "c": "hard"}
    s = summarize(rows_for(counts), toy_problems(counts, labels.get), [1], 2, 0.95, 200, 0)
    assert s["difficulty_method"] == "source" and set(s["per_difficulty"]) == {"easy", "hard"}
    assert s["per_difficulty"]["hard"]["pass_at_k"]["1"]["ci_low"] is None  # under 10 problems: no interval
    meta = [Problem(problem_id=p, source="t", question="q", style="assert", test_code="assert True",
                    metadata={"difficulty": labels[p]}) for p in counts]
    assert summarize(rows_for(counts), meta, [1], 2, 0.95, 200, 0)["difficulty_method"] == "source"
    single = summarize(rows_for({"a": (1, 1), "b": (1, 0)}), toy_problems(["a", "b"]), [1], 1, 0.95, 200, 0)
    assert single["difficulty_method"] == "none" and single["per_difficulty"] == {}
    base = summarize(rows_for(counts), toy_problems(counts), [1], 2, 0.95, 200, 0)
    other = summarize(rows_for({"a": (2, 0), "b": (2, 2), "c": (2, 1)}), toy_problems(counts), [1], 2, 0.95, 200, 0,
                      difficulty_of=base["difficulty_of"])
    assert other["difficulty_method"] == "given" and other["difficulty_of"] == base["difficulty_of"]


def test_incomplete_fallback_and_no_tests():
    rows = rows_for({"a": (3, 1), "b": (1, 1)}, isolation="fallback-rlimits")
    rows.append({"prompt_id": "z", "sample_idx": 0, "passed": False, "outcome": "no-tests", "isolation": "none"})
    s = summarize(rows, toy_problems(["a", "b", "z"]), [1, 2], 3, 0.95, 100, 0)
    assert s["num_problems"] == 2 and s["outcomes"]["no-tests"] == 1
    assert s["k"] == [1] and s["incomplete_problems"] == {"count": 1, "ids": ["b"]}
    assert "fallback" in s["isolation_warning"]


def test_unknown_problem_in_rows():
    with pytest.raises(DataError, match="not in the problem set"):
        summarize(rows_for({"x": (1, 1)}), toy_problems(["a"]), [1], 1, 0.95, 10, 0)


def test_paired_passk_between_summaries():
    ids = [f"p{i}" for i in range(40)]
    a = summarize(rows_for({p: (4, 1) for p in ids}), toy_problems(ids), [1], 4, 0.95, 500, 0)
    b = summarize(rows_for({p: (4, 3) for p in ids}), toy_problems(ids), [1], 4, 0.95, 500, 0)
    d = paired_passk(a, b, 1)
    assert d["delta"] == pytest.approx(0.5) and d["ci_low"] > 0 and d["num_problems"] == 40
    assert d["ci_level"] == 0.95 and paired_passk(a, b, 1, ci_level=0.8)["ci_level"] == 0.8
    b90 = summarize(rows_for({p: (4, 3) for p in ids}), toy_problems(ids), [1], 4, 0.9, 500, 0)
    assert paired_passk(a, b90, 1)["ci_level"] == 0.9  # the configured level recorded in the summary


def test_slice_table_holds_out_the_base_samples_and_corrects_for_the_family():
    import numpy as np

    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(200)]
    p = rng.beta(0.5, 0.5, len(ids))
    base_counts = {pid: (10, int(rng.binomial(10, q))) for pid, q in zip(ids, p)}
    same_counts = {pid: (10, int(rng.binomial(10, q))) for pid, q in zip(ids, p)}  # no true effect

    def shuffled(counts):  # samples are i.i.d.: which of them pass is random
        rows = rows_for(counts)
        for pid in counts:
            mine = [r for r in rows if r["prompt_id"] == pid]
            for r, passed in zip(mine, rng.permutation([r["passed"] for r in mine])):
                r.update(passed=bool(passed), outcome="passed" if passed else "failed")
        return rows

    base = summarize(shuffled(base_counts), toy_problems(ids), [1], 10, 0.95, 200, 0)
    other = summarize(shuffled(same_counts), toy_problems(ids), [1], 10, 0.95, 200, 0,
                      difficulty_of=base["difficulty_of"])
    table = slice_table(base, other)
    assert table["method"] == "base-heldout" and table["correction"] == "holm" and table["ci_level"] == 0.95
    assert sum(r["num_problems"] for r in table["slices"]) == 200
    for row in table["slices"]:
        assert row["p_holm"] >= row["p_value"] and not row["significant"]
    with pytest.raises(DataError, match="re-summarise"):
        slice_table({**base, "difficulty_method": "base-quartiles"}, other)


def test_score_samples_rows_and_errors(sandbox_cfg, problems):
    recs = [{"prompt_id": "toy/add", "sample_idx": 0, "text": "def add(a, b):\n    return a + b\n"},
            {"prompt_id": "toy/untested", "sample_idx": 0, "text": "print(1)"}]
    probs = dict(problems)
    probs["toy/untested"] = Problem(problem_id="toy/untested", source="t", question="q")
    rows = score_samples(probs, recs, sandbox_cfg)
    assert set(ROW_FIELDS) <= set(rows[0])
    assert rows[0]["passed"] and rows[1]["outcome"] == "no-tests" and rows[1]["isolation"] == "none"
    with pytest.raises(DataError, match="sample record 0: missing field 'text'"):
        score_samples(probs, [{"prompt_id": "toy/add", "sample_idx": 0}], sandbox_cfg)
    with pytest.raises(DataError, match="x.jsonl:3: prompt_id 'nope'"):
        score_samples(probs, [{"prompt_id": "nope", "sample_idx": 0, "text": "", "_where": "x.jsonl:3"}], sandbox_cfg)
