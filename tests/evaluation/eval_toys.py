"""Small problems of every style and skip markers, shared by the evaluation tests (imported as `eval_toys`)."""
import os

import pytest

from megatron_ssd.evaluation.sandbox import isolation
from megatron_ssd.problems import Problem, TestCase


def bwrap_works() -> bool:
    try:
        return isolation.detect(isolation.BWRAP).mode == isolation.BWRAP
    except Exception:
        return False


needs_bwrap = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap/user namespaces unavailable here")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop to 65534 needs root")


def double_problem(pid: str = "toy/double") -> Problem:
    return Problem(problem_id=pid, source="test", question="double x", style="humaneval",
                   starter_code="def f(x):\n    '''Return 2*x.'''\n", entry_point="f",
                   test_code="def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == -6\n")


def assert_problem() -> Problem:
    return Problem(problem_id="toy/add", source="test", question="add", style="assert",
                   test_code="assert add(1, 2) == 3\nassert add(-1, 1) == 0")


def stdin_problem() -> Problem:
    return Problem(problem_id="toy/sum", source="test", question="sum the numbers", style="stdin",
                   test_cases=[TestCase("1 2\n", "3\n"), TestCase("10 20\n", "30"), TestCase("5 -5\n", "0\n")])


def functional_problem(solution_class: bool = True) -> Problem:
    starter = "class Solution:\n    def twoSum(self, nums, target):\n        " if solution_class else \
        "def twoSum(nums, target):\n    "
    return Problem(problem_id=f"toy/twosum-{solution_class}", source="test", question="two sum", style="functional",
                   starter_code=starter, entry_point="twoSum",
                   test_cases=[TestCase("[2, 7, 11, 15]\n9", "[0, 1]"), TestCase("[3, 2, 4]\n6", "[1, 2]")])
