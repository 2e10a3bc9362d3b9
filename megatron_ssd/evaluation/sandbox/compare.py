"""How a program's output is compared with the expected output, outside the sandbox.

stdin problems: whitespace-normalised, line by line. Leading/trailing blank lines and trailing spaces are ignored,
runs of spaces inside a line count as one separator, ``\\r\\n`` equals ``\\n``; a line whose tokens differ textually
still matches when every token parses as a number and the numbers are equal as decimals ("1.0" == "1"), which is
what LiveCodeBench's own grader accepts. No floating-point tolerance beyond that.

functional problems: the expected output is JSON; the returned value (JSON-encoded inside the sandbox, so tuples
became lists) must be equal as a JSON value. Python's ``==`` is used except that booleans never equal numbers
(``true`` is not ``1``), as a JSON judge would see it. When the expected text is not valid JSON the two texts are
compared after stripping whitespace.

grader=livecodebench (`lcb_stdout_matches`, `lcb_value_matches`): LiveCodeBench's own rules, line for line as
lcb_runner/evaluation/testing_util.py applies them (cited at each function); they differ from the two above.
"""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from .harness import LCB_INT_DIGITS, decode_value


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


# ------------------------------------------------------------------------- LiveCodeBench's comparisons
def lcb_stdout_lines(text: str) -> list[str]:
    """get_stripped_lines (testing_util.py:222-226): the whole text stripped, split at "\n" only, each line
    stripped ("\r\n" endings are fine; a lone "\r" or a form feed does not end a line)."""
    return [line.strip() for line in text.strip().split("\n")]


def lcb_stdout_matches(got: str, expected: str) -> bool:
    """grade_stdio's verdict on one test (testing_util.py:372-423): as many lines as expected, and each line equal
    as text or, failing that, every whitespace-separated element equal as a `Decimal` ("3.0" == "3", "1  2" ==
    "1 2", but "a  b" != "a b" and "0.3333333333" != "0.3333333333333333"; no tolerance)."""
    have, want = lcb_stdout_lines(got), lcb_stdout_lines(expected)
    return len(have) == len(want) and all(a == b or _lcb_decimal_line(a, b) for a, b in zip(have, want))


def _lcb_decimal_line(a: str, b: str) -> bool:
    try:  # convert_line_to_decimals (lines 214-219) fails on any element; comparing a signalling NaN raises
        return [Decimal(x) for x in a.split()] == [Decimal(x) for x in b.split()]
    except (InvalidOperation, ValueError, ArithmeticError):
        return False


def lcb_value_matches(got: str, expected: str) -> bool:
    """grade_call_based's verdict on one test (testing_util.py:249, 259-268): the expected output is json.loads'ed,
    a returned tuple becomes a list (at the top level only), and Python's == decides: 1 == true, 1.0 == 1, but a
    tuple inside a list is not a list and NaN equals nothing. `got` is the harness's tagged encoding of the exact
    value returned (numbers=True), rebuilt here as our own objects, so no __eq__ the program defined runs. An
    expected output that is not JSON fails every program, as it does there."""
    try:
        want = lcb_json(expected)
        have = decode_value(lcb_json(got), numbers=True)
    except (TypeError, ValueError, RecursionError):
        return False
    if type(have) is tuple:
        have = list(have)
    try:
        return bool(have == want)
    except (ArithmeticError, RecursionError):  # e.g. a Decimal signalling NaN: an error there, a failure here
        return False


def lcb_value_text(got: str) -> str:
    """The returned value of a `lcb_value_matches` message as Python would print it (for failure reasons)."""
    try:
        return repr(decode_value(lcb_json(got), numbers=True))
    except (TypeError, ValueError, RecursionError):
        return got


def lcb_json(text: str) -> Any:
    """json.loads as LiveCodeBench's process runs it: integers of up to 50000 digits (its int limit, see
    harness.LCB_INT_DIGITS), whatever this process's own limit is."""
    return json.loads(text, parse_int=_lcb_int)


def _lcb_int(text: str) -> int:
    if len(text) <= 600:
        return int(text)
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if len(digits) > LCB_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (LiveCodeBench's limit is {LCB_INT_DIGITS})")
    value = 0
    for start in range(0, len(digits), 600):  # chunks under the smallest int-from-text limit Python allows (640)
        chunk = digits[start:start + 600]
        value = value * 10 ** len(chunk) + int(chunk)
    return -value if negative else value


def preview(text: str, limit: int = 120) -> str:
    """A one-line excerpt for failure reasons."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
