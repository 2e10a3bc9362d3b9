"""How a program's output is compared with the expected output, outside the sandbox.

stdin problems: whitespace-normalised, line by line. Leading/trailing blank lines and trailing spaces are ignored,
runs of spaces inside a line count as one separator, ``\\r\\n`` equals ``\\n``; a line whose tokens differ textually
still matches when every token parses as a number and the numbers are equal as decimals ("1.0" == "1"), which is
what LiveCodeBench's own grader accepts. No floating-point tolerance beyond that.

functional problems: the expected output is JSON; the returned value (JSON-encoded inside the sandbox, so tuples
became lists) must be equal as a JSON value. Python's ``==`` is used except that booleans never equal numbers
(``true`` is not ``1``), as a JSON judge would see it. When the expected text is not valid JSON the two texts are
compared after stripping whitespace.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any


def normalise_stdout(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def stdout_matches(got: str, expected: str) -> bool:
    a, b = normalise_stdout(got), normalise_stdout(expected)
    if len(a) != len(b):
        return False
    return all(x == y or _numeric_equal(x, y) for x, y in zip(a, b))


def _numeric_equal(a: list[str], b: list[str]) -> bool:
    if len(a) != len(b):
        return False
    try:
        return all(Decimal(x) == Decimal(y) for x, y in zip(a, b))
    except (InvalidOperation, ValueError):
        return False


def json_value_matches(got: str, expected: str) -> bool:
    try:
        want = json.loads(expected)
    except (TypeError, ValueError):
        return got.strip() == str(expected).strip()
    try:
        have = json.loads(got)
    except (TypeError, ValueError):
        return False
    return _json_equal(have, want)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def preview(text: str, limit: int = 120) -> str:
    """A one-line excerpt for failure reasons."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
