"""`ssd-eval-samples` end to end: HumanEval canonical solutions, sample formats, and clear input errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_ssd.evaluation import cli
from megatron_ssd.prompts.sources import load_humaneval

pytestmark = pytest.mark.timeout(600)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def results_of(samples: Path) -> list[dict]:
    return [json.loads(line) for line in Path(f"{samples}_results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass_and_wrong_ones_fail(tmp_path):
    problems = load_humaneval()
    rows = []
    for p in problems:
        rows.append({"task_id": p.problem_id, "completion": p.metadata["canonical_solution"]})
        rows.append({"task_id": p.problem_id, "completion": "    return None\n"})
    samples = write_jsonl(tmp_path / "canonical.jsonl", rows)
    assert cli.main(["--problems", "humaneval", "--samples", str(samples), "--k", "1,2", "--quiet",
                     "--timeout", "30"]) == 0
    results = results_of(samples)
    assert len(results) == 2 * len(problems) == 328
    canonical, wrong = results[0::2], results[1::2]
    failed = [(r["task_id"], r["reason"]) for r in canonical if not r["passed"]]
    assert failed == []
    assert not any(r["passed"] for r in wrong)
    summary = json.loads(Path(f"{samples}_summary.json").read_text())
    assert summary["pass_at_k"]["1"]["estimate"] == pytest.approx(0.5)
    assert summary["pass_at_k"]["2"]["estimate"] == pytest.approx(1.0)
    assert summary["outcomes"]["passed"] == 164


def test_console_script_on_a_few_problems(tmp_path):
    problems = load_humaneval()[:4]
    rows = [{"task_id": p.problem_id, "completion": p.metadata["canonical_solution"]} for p in problems]
    rows += [{"task_id": p.problem_id, "completion": "    return 0\n"} for p in problems]
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    proc = subprocess.run([sys.executable, "-m", "megatron_ssd.evaluation.cli", "--problems", "humaneval",
                           "--samples", str(samples), "--k", "1,2,10", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pass@k" in proc.stdout and "k=[10] skipped" in proc.stdout
    summary = json.loads(Path(f"{samples}_summary.json").read_text())
    assert summary["k"] == [1, 2] and summary["k_skipped"] == [10]
    assert summary["pass_at_k"]["1"]["estimate"] == pytest.approx(0.5)
    res = results_of(samples)
    assert [r["sample_idx"] for r in res[:4]] == [0, 0, 0, 0] and res[4]["sample_idx"] == 1
    assert res[0]["result"] == "passed" and res[4]["result"].startswith("failed:")


def test_response_records_are_extracted(tmp_path):
    p = load_humaneval()[0]
    body = p.metadata["canonical_solution"]
    response = f"Here is my solution:\n```python\n{p.starter_code}{body}```\nIt works."
    samples = write_jsonl(tmp_path / "r.jsonl", [{"task_id": p.problem_id, "response": response},
                                                 {"task_id": p.problem_id, "response": "I don't know."}])
    summary = cli.run(["--problems", "humaneval", "--samples", str(samples), "--k", "1", "--quiet"])
    res = results_of(samples)
    assert res[0]["passed"] and res[0]["extraction"] == "fenced-python+context"
    assert not res[1]["passed"] and res[1]["extraction"] == "whole+prompt"
    assert summary["num_samples"] == 2


def test_problems_from_a_file(tmp_path):
    probs = write_jsonl(tmp_path / "mbpp.jsonl", [
        {"task_id": "m1", "text": "add two numbers", "test_list": ["assert add(1, 2) == 3"]},
        {"task_id": "m2", "text": "negate", "test_list": ["assert neg(1) == -1"]},
    ])
    samples = write_jsonl(tmp_path / "g.jsonl", [
        {"task_id": "m1", "response": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"task_id": "m2", "response": "```python\ndef neg(a):\n    return a\n```"},
    ])
    summary = cli.run(["--problems", str(probs), "--samples", str(samples), "--k", "1", "--quiet"])
    assert summary["pass_at_k"]["1"]["estimate"] == pytest.approx(0.5)


@pytest.mark.parametrize("line, message", [
    ('{"task_id": "HumanEval/0", "completion": ', "malformed JSON"),
    ('{"task_id": "HumanEval/0"}', "needs an id"),
    ('{"completion": "x"}', "needs an id"),
    ('{"task_id": "HumanEval/0", "completion": 5}', "must be a string"),
    ('["HumanEval/0", "x"]', "expected a JSON object"),
    ('{"task_id": "Nope/1", "completion": "x"}', "not in the problem set"),
])
def test_malformed_records_name_file_and_line(tmp_path, line, message, capsys):
    samples = tmp_path / "bad.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/1", "completion": "    return []\n"}) + "\n" + line + "\n")
    assert cli.main(["--problems", "humaneval", "--samples", str(samples), "--quiet"]) == 2
    err = capsys.readouterr().err
    # the console wraps at its width: at a space (the space becomes the line break) or inside a long path
    assert message in " ".join(err.split())
    assert f"{samples}:2" in err.replace("\n", "")
    assert not Path(f"{samples}_results.jsonl").exists()


def test_bad_arguments(tmp_path, capsys):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    return 1\n"}])
    assert cli.main(["--problems", "humaneval", "--samples", str(samples), "--k", "0"]) == 2
    assert cli.main(["--problems", str(tmp_path / "missing.jsonl"), "--samples", str(samples)]) == 2
    mixed = write_jsonl(tmp_path / "m.jsonl", [{"task_id": "HumanEval/0", "completion": "x"},
                                               {"task_id": "HumanEval/0", "response": "x"}])
    assert cli.main(["--problems", "humaneval", "--samples", str(mixed)]) == 2
    assert "mixes" in capsys.readouterr().err


def lcb_private(tests) -> str:
    import base64
    import pickle
    import zlib

    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test_livecodebench_file_stdin_and_functional(tmp_path):
    rows = [
        {"question_id": "abc001", "question_title": "sum", "question_content": "Print a+b.", "platform": "atcoder",
         "contest_id": "abc", "contest_date": "2025-03-01T00:00:00", "starter_code": "", "difficulty": "easy",
         "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
         "private_test_cases": lcb_private([{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}]),
         "metadata": "{}"},
        {"question_id": "lc42", "question_title": "max", "question_content": "Return the maximum.",
         "platform": "leetcode", "contest_id": "w1", "contest_date": "2025-04-01T00:00:00", "difficulty": "medium",
         "starter_code": "class Solution:\n    def biggest(self, nums: List[int]) -> int:\n        ",
         "public_test_cases": json.dumps([{"input": "[1, 5, 2]", "output": "5", "testtype": "functional"}]),
         "private_test_cases": lcb_private([{"input": "[-3]", "output": "-3", "testtype": "functional"}]),
         "metadata": json.dumps({"func_name": "biggest"})},
        {"question_id": "old", "question_content": "out of the window", "contest_date": "2024-01-01T00:00:00",
         "public_test_cases": "[]", "metadata": "{}"},
    ]
    problems = write_jsonl(tmp_path / "lcb.jsonl", rows)
    samples = write_jsonl(tmp_path / "gen.jsonl", [
        {"task_id": "abc001", "response": "```python\na, b = map(int, input().split())\nprint(a + b)\n```"},
        {"task_id": "abc001", "response": "```python\nprint(3)\n```"},
        {"task_id": "lc42", "response": "```python\nclass Solution:\n    def biggest(self, nums):\n"
                                        "        return max(nums)\n```"},
        {"task_id": "lc42", "response": "```python\nclass Solution:\n    def biggest(self, nums):\n"
                                        "        return nums[0]\n```"},
    ])
    summary = cli.run(["--problems", str(problems), "--problems-kind", "livecodebench", "--date-start",
                       "2025-01-01", "--samples", str(samples), "--k", "1,2", "--quiet"])
    res = results_of(samples)
    assert [r["passed"] for r in res] == [True, False, True, False]
    assert "wrong answer on test 1" in res[1]["reason"] and "wrong answer on test 0" in res[3]["reason"]
    assert summary["num_problems"] == 2 and summary["difficulty_method"] == "source"
    assert set(summary["per_difficulty"]) == {"easy", "medium"}
    assert summary["pass_at_k"]["2"]["estimate"] == pytest.approx(1.0)


def test_grader_flag_chooses_livecodebench_or_native_rules(tmp_path):
    """`--grader`: a LeetCode answer using the starter code's bare `List` passes under LiveCodeBench's prelude (auto
    picks it for LiveCodeBench rows) and fails natively with a NameError; `--lcb-timeout` reaches the sandbox."""
    rows = Path(__file__).parent / "lcb_rows" / "parity.jsonl"
    answer = "class Solution:\n    def sumList(self, nums: List[int]) -> int:\n        return sum(nums)\n"
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "weekly1_a", "completion": answer}])
    outcomes = {}
    for grader in ("auto", "native"):
        assert cli.main(["--problems", str(rows), "--problems-kind", "livecodebench", "--samples", str(samples),
                         "--k", "1", "--quiet", "--grader", grader, "--lcb-timeout", "3"]) == 0
        (row,) = results_of(samples)
        outcomes[grader] = (row["grader"], row["passed"], row["reason"])
    assert outcomes["auto"][:2] == ("livecodebench", True)
    assert outcomes["native"][:2] == ("native", False) and "List" in outcomes["native"][2]


def test_thinking_flag_reads_the_answer_after_the_reasoning(tmp_path):
    """`--thinking` (what `model.thinking=true` passes to scoring): Qwen3-*-Thinking-2507 templates open `<think>` in
    the prompt, so a generation carries only `</think>`. The answer after it is scored; a generation cut inside its
    reasoning has no program (`reasoning-unterminated`), where tag-less scoring would run the reasoning's draft."""
    rows = Path(__file__).parent / "lcb_rows" / "parity.jsonl"
    good = "class Solution:\n    def sumList(self, nums: List[int]) -> int:\n        return sum(nums)\n"
    draft = "```python\n" + good + "```\n"
    answered = ("Let me try a wrong draft first.\n```python\nclass Solution:\n    def sumList(self, nums):\n"
                "        return 0\n```\nNo, sum them.\n</think>\n\n```python\n" + good + "```\n")
    cut = "I could write\n" + draft + "but let me check the edge cases"  # max_tokens hit inside the reasoning
    samples = write_jsonl(tmp_path / "t.jsonl", [{"task_id": "weekly1_a", "response": answered},
                                                 {"task_id": "weekly1_a", "response": cut}])
    verdicts = {}
    for flags in ([], ["--thinking"]):
        assert cli.main(["--problems", str(rows), "--problems-kind", "livecodebench", "--samples", str(samples),
                         "--k", "1", "--quiet", *flags]) == 0
        verdicts[bool(flags)] = [(r["passed"], r["extraction"]) for r in results_of(samples)]
    assert verdicts[True] == [(True, "lcb-last-block+after-think"), (False, "reasoning-unterminated")]
    assert verdicts[False] == [(True, "lcb-last-block+after-think"), (True, "lcb-last-block")]
