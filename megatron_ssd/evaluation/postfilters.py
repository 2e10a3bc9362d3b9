"""Declared post-filters on raw samples: cheap rules applied before the sandbox, each counted separately.

- empty/stub: blank text, or code whose only statements are definitions with ``pass`` / ``...`` / docstrings /
  ``raise NotImplementedError`` (a model that "answers" with the starter code). Code that does not parse is not
  called a stub: the sandbox will fail it with the syntax error as the reason.
- truncated: ``finish_reason == "length"`` (cut at max_tokens; the text is not what the model meant to write).
- looping: the generation *ends* in a short block repeated at least 4 times (period <= 64 tokens, span >= 32
  tokens), the signature of degenerate repetition at high temperature. Ending-anchored, so repetitive but
  finished code (many similar ``elif`` lines) is not flagged.

These rules are declared, not tuned on outcomes; the verifier-aware filter stage reports how many samples each one
removed.
"""
from __future__ import annotations

import ast
from typing import Any, Mapping

from ..config.data import POSTFILTERS
from .decisions.collapse import tokenize
from .extract import extract_code

EMPTY_OR_STUB, TRUNCATED, LOOPING = POSTFILTERS
DECLARED = POSTFILTERS


def is_stub(text: str) -> bool:
    code = extract_code(text).code
    if not code.strip():
        return True
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return not any(_substantive(node) for node in ast.walk(tree) if isinstance(node, ast.stmt))


def _substantive(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Pass)):
        return False
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return False  # docstring or `...`
    if isinstance(node, ast.Raise) and node.exc is not None:
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return not (isinstance(target, ast.Name) and target.id == "NotImplementedError")
    return True


def is_looping(text: str, max_period: int = 64, min_repeats: int = 4, min_span: int = 32) -> bool:
    toks = tokenize(text)
    for period in range(1, max_period + 1):
        span = max(period * min_repeats, min_span)
        if span > len(toks):
            break
        tail = toks[-span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False


def declared_filter(sample: Mapping[str, Any], enabled: tuple[str, ...] | list[str] = DECLARED) -> str | None:
    """The first enabled post-filter (in `DECLARED` order) that drops this sample row, or None."""
    text = sample.get("text") or ""
    if EMPTY_OR_STUB in enabled and (not text.strip() or is_stub(text)):
        return EMPTY_OR_STUB
    if TRUNCATED in enabled and sample.get("finish_reason") == "length":
        return TRUNCATED
    if LOOPING in enabled and is_looping(text):
        return LOOPING
    return None
