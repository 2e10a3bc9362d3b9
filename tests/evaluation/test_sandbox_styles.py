"""Every problem style end to end through `score_samples` (real sandboxed processes)."""
import pytest

from megatron_ssd.evaluation.scoring import score_samples

from eval_toys import assert_problem, double_problem, functional_problem, stdin_problem

pytestmark = pytest.mark.timeout(180)

CASES = [
    # (problem id, generation, expected outcome, reason fragment)
    ("toy/double", "```python\ndef f(x):\n    return 2 * x\n```", "passed", ""),
    ("toy/double", "    return x + x\n", "passed", ""),
    ("toy/double", "def f(x):\n    return x\n", "failed", "assertion failed"),
    ("toy/double", "def f(x) return x", "failed", "SyntaxError"),
    ("toy/double", "def g(x):\n    return 2 * x\n", "failed", "assertion failed"),  # prompt body returns None
    ("toy/add", "def add(a, b):\n    return a + b\n", "passed", ""),
    ("toy/add", "def add(a, b):\n    return a - b\n", "failed", "assertion failed"),
    ("toy/add", "def plus(a, b):\n    return a + b\n", "failed", "NameError"),
    ("toy/sum", "a, b = map(int, input().split())\nprint(a + b)\n", "passed", ""),
    ("toy/sum", "import sys\nprint(sum(map(int, sys.stdin.read().split())))\nsys.exit(0)\n", "passed", ""),
    ("toy/sum", "a, b = map(int, input().split())\nprint(a * b if a == 10 else a + b)\n", "failed",
     "wrong answer on test 1"),
    ("toy/sum", "raise ValueError('boom')\n", "failed", "ValueError"),
    ("toy/sum", "import time\na, b = map(int, input().split())\nif a == 5: time.sleep(60)\nprint(a + b)\n",
     "timeout", "test 2"),
    ("toy/twosum-True", "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
                        "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
                        "                return [seen[target - x], i]\n            seen[x] = i\n", "passed", ""),
    ("toy/twosum-True", "class Solution:\n    def twoSum(self, nums, target):\n        return (0, 1)\n", "failed",
     "wrong answer on test 1"),
    ("toy/twosum-True", "class Solution:\n    def twoSum(self, nums, target):\n        return {0, 1}\n", "failed",
     "not JSON"),
    ("toy/twosum-False", "def twoSum(nums, target):\n    return [i for i in range(len(nums)) for j in range(i)"
                         " if nums[i] + nums[j] == target and False] or [0, 1] if nums[0] == 2 else [1, 2]\n",
     "passed", ""),
    ("toy/twosum-False", "def other(nums, target):\n    return [0, 1]\n", "failed", "neither"),
]


@pytest.fixture(scope="module")
def scored(sandbox_cfg):
    problems = [double_problem(), assert_problem(), stdin_problem(), functional_problem(True),
                functional_problem(False)]
    records = [{"prompt_id": pid, "sample_idx": i, "text": text, "num_tokens": 7} for i, (pid, text, _, _) in
               enumerate(CASES)]
    return score_samples(problems, records, sandbox_cfg)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{c[2]}-{n}" for n, c in enumerate(CASES)])
def test_style_outcome(scored, i):
    pid, _, outcome, fragment = CASES[i]
    row = scored[i]
    assert row["prompt_id"] == pid and row["sample_idx"] == i
    assert row["outcome"] == outcome, row
    assert row["passed"] == (outcome == "passed")
    assert fragment in row["reason"], row
    assert row["isolation"] in ("bwrap", "fallback-rlimits")
    assert row["memory_limit"] in ("cgroup-v2", "cgroup-v1", "accounting")
    assert row["num_tokens"] == 7 and row["duration_s"] > 0


def test_extraction_is_recorded(scored):
    assert scored[0]["extraction"] == "fenced-python+context"
    assert scored[1]["extraction"] == "whole+prompt"
    assert scored[8]["extraction"] == "whole"
