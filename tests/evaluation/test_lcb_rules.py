"""LiveCodeBench's rules as pure functions (no sandbox): comparisons, the stdin program rewrite, row decoding, the
grader choice and its time limits. Each test names the lcb_runner line it pins (testing_util.py unless stated)."""
from __future__ import annotations

import base64
import json
import pickle
import zlib

import pytest

from megatron_ssd.config.schema import SSDConfig
from megatron_ssd.config.validate import validate
from megatron_ssd.errors import ConfigError, DataError
from megatron_ssd.evaluation.sandbox import harness
from megatron_ssd.evaluation.sandbox.compare import lcb_json, lcb_stdout_matches, lcb_value_matches
from megatron_ssd.evaluation.sandbox.isolation import BWRAP, Isolation
from megatron_ssd.evaluation.sandbox.jobs import build_job, resolve_grader
from megatron_ssd.evaluation.sandbox.protocol import ProtocolDecoder
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig, SandboxJob, _job_payload
from megatron_ssd.problems import Problem, TestCase as Case
from megatron_ssd.prompts.sources import decode_private_tests, load_source


def enc(value) -> str:
    return json.dumps(harness.encode_value(value, numbers=True))


# --------------------------------------------------------------------------------- stdout (grade_stdio 370-423)
@pytest.mark.parametrize("got,expected,same", [
    ("3\n", "3", True),                       # get_stripped_lines 222-226: whole text stripped
    ("3.0", "3", True),                       # 407-419: Decimal equality
    ("3E0", "3", True),
    ("1_000", "1000", True),                  # Decimal accepts underscores
    ("0.3333333333", "0.3333333333333333", False),  # no tolerance
    ("1  2\t3", "1 2 3", True),               # 216: line.split() when every element is a number
    ("a  b", "a b", False),                   # 398: text lines match exactly
    ("a b  ", "a b", True),                   # 226: each line stripped
    ("1\r\n2\r\n", "1\n2", True),             # split("\n") then strip
    ("1\r2", "1\n2", False),                  # a lone "\r" ends no line (unlike str.splitlines)
    ("1\x0c2", "1\n2", False),
    ("\n\n1\n2\n\n", "1\n2\n", True),
    ("1\n\n2", "1\n2", False),                # 384-387: line counts
    ("", "", True),
    ("nan", "nan", True),                     # exact text first
    ("nan 1", "nan  1", False),               # Decimal('NaN') equals nothing
    ("sNaN 1", "sNaN  1", False),             # comparing a signalling NaN raises there: a failure
    ("1 x", "1 x", True),
])
def test_stdout_rules(got, expected, same):
    assert lcb_stdout_matches(got, expected) is same


# ------------------------------------------------------------------------ values (grade_call_based 249, 259-268)
@pytest.mark.parametrize("value,expected,same", [
    (1, "true", True),                        # 268: Python ==
    (True, "1", True),
    (0, "false", True),
    ("true", "true", False),
    (2, "2.0", True),
    ((1, 2), "[1, 2]", True),                 # 265-266: a top-level tuple becomes a list
    ([(1, 2)], "[[1, 2]]", False),            # ...only the top level
    ({"a": (1,)}, '{"a": [1]}', False),
    ({1: 2}, '{"1": 2}', False),              # JSON keys are strings
    (float("nan"), "NaN", False),
    (None, "null", True),
    ({1, 2}, "[1, 2]", False),
    (b"ab", '"ab"', False),
    ([1, 2], "[1, 2", False),                 # 249: an expected output that is not JSON fails every program
])
def test_value_rules(value, expected, same):
    assert lcb_value_matches(enc(value), expected) is same


def test_value_numbers_compare_by_value():
    from decimal import Decimal
    from fractions import Fraction

    assert lcb_value_matches(enc(Fraction(5, 2)), "2.5") and lcb_value_matches(enc(Decimal("0.5")), "0.5")
    assert not lcb_value_matches(enc(Decimal("0.1")), "0.1")  # Decimal == float is exact in Python: as there
    assert lcb_value_matches(enc([Fraction(4, 2)]), "[2]")


def test_value_subclasses_are_read_as_their_base_type():
    class Lying(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    assert not lcb_value_matches(enc(Lying("no")), '"yes"') and lcb_value_matches(enc(Lying("yes")), '"yes"')
    with pytest.raises(TypeError):
        harness.encode_value(object(), numbers=True)  # a program object is no value (the harness says so)


def test_number_tags_only_where_asked():
    from fractions import Fraction

    with pytest.raises(TypeError):  # the humaneval path is unchanged: a Fraction is no builtin value there
        harness.encode_value(Fraction(1, 2))
    with pytest.raises(ValueError):
        harness.decode_value(["fraction", [1, 2]])
    with pytest.raises(ValueError):
        harness.decode_value(["fraction", [1, 0]], numbers=True)


def test_big_integers_as_livecodebench_parses_them():
    text = "1" + "0" * 6000  # over Python's default 4300-digit limit, under LiveCodeBench's 50000 (metrics.py:7)
    assert lcb_json(text) == 10 ** 6000 and lcb_json("-" + text) == -10 ** 6000
    assert lcb_value_matches(text, text) and not lcb_value_matches(text, text[:-1] + "1")
    with pytest.raises(ValueError):
        lcb_json("9" * 50001)


# ------------------------------------------------------------- the stdin rewrite (clean_if_name, make_function)
def _body(source: str) -> str:
    assert source.startswith(harness.LCB_PRELUDE)
    return source[len(harness.LCB_PRELUDE):]


def test_prelude_is_import_string():
    assert harness.LCB_PRELUDE == (  # testing_util.py:27, verbatim
        "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
        "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
        "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
        "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
        "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\n"
        "import math\nimport random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
        "import io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n")


def test_last_main_block_is_unwrapped_and_imports_hoisted():
    body = _body(harness.lcb_stdin_module("import sys\ndef main():\n    print(1)\nif __name__ == \"__main__\":\n"
                                          "    main()\n"))
    assert body == "\nimport sys\ndef wrapped_function():\n\n    def main():\n        print(1)\n    main()"


def test_main_block_that_is_not_last_stays():
    body = _body(harness.lcb_stdin_module("if __name__ == '__main__':\n    print(1)\nx = 2\n"))
    assert "if __name__ == '__main__':" in body and body.index("def wrapped_function") < body.index("if __name__")


def test_unparsable_program_has_no_module():
    assert harness.lcb_stdin_module("def f(:\n") is None
    assert harness.lcb_stdin_module("return 5\n") is not None  # ast.parse accepts it; inside the wrapper it is legal


# ------------------------------------------------------------------------------ rows (benchmarks/code_generation.py)
TESTS = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]


def test_private_tests_in_both_encodings():
    pickled = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(TESTS)))).decode()
    assert decode_private_tests(pickled, "row") == TESTS == decode_private_tests(json.dumps(TESTS), "row")
    assert decode_private_tests(TESTS, "row") == TESTS and decode_private_tests("", "row") == []
    with pytest.raises(DataError, match="could not be decoded safely"):
        decode_private_tests("not json and not base64!", "row")
    with pytest.raises(DataError, match="JSON list"):
        decode_private_tests('{"input": "1"}', "row")


def _row(**kw):
    row = {"question_id": "q", "question_content": "text", "public_test_cases": json.dumps(TESTS), "metadata": "{}",
           "private_test_cases": "[]"}
    row.update(kw)
    return row


def test_function_call_exactly_when_metadata_names_one(tmp_path):
    f = tmp_path / "rows.jsonl"
    functional = json.dumps([{"input": "[1]", "output": "1", "testtype": "functional"}])
    rows = [_row(question_id="a"), _row(question_id="b", public_test_cases=functional,
                                        metadata=json.dumps({"func_name": "f"}))]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    a, b = load_source("livecodebench", str(f))
    assert (a.style, b.style, b.entry_point) == ("stdin", "functional", "f")
    for bad, match in ((_row(metadata="{oops"), "metadata is not a JSON object"),
                       (_row(metadata=json.dumps({"func_name": ""})), "not a function name"),
                       (_row(public_test_cases=functional), "no metadata.func_name")):
        f.write_text(json.dumps(bad))
        with pytest.raises(DataError, match=match):
            load_source("livecodebench", str(f))


# ------------------------------------------------------------------------------------ choosing the grader, limits
def _problem(source: str, style: str) -> Problem:
    cases = [Case("1", "1")] if style in ("stdin", "functional") else []
    return Problem(problem_id="p", source=source, question="q", style=style, entry_point="f", test_cases=cases,
                   test_code="assert f(1) == 1" if style == "assert" else "")


@pytest.mark.parametrize("source,style,grader,expected", [
    ("livecodebench", "stdin", "auto", "livecodebench"),
    ("livecodebench", "functional", "auto", "livecodebench"),
    ("livecodebench", "stdin", "native", "native"),
    ("jsonl", "stdin", "auto", "native"),
    ("jsonl", "functional", "livecodebench", "livecodebench"),
    ("jsonl", "assert", "livecodebench", "native"),  # LiveCodeBench has no assert/humaneval problems
])
def test_grader_choice(source, style, grader, expected):
    assert resolve_grader(_problem(source, style), grader) == expected
    job, _ = build_job(_problem(source, style), "def f(x):\n    return x\n", completion=True, grader=grader)
    assert job.grader == expected
    with pytest.raises(ValueError):
        resolve_grader(_problem(source, style), "lcb")


def test_time_limits_and_no_expected_outputs_in_the_payload():
    cfg = SandboxConfig(timeout_s=10.0, lcb_timeout_s=6)
    job = SandboxJob(style="stdin", program="", cases=["1", "2", "3"], expected=["SECRET-1", "SECRET-2", "SECRET-3"],
                     grader="livecodebench")
    assert cfg.time_limits(job) == (6.0, 26.0)  # (timeout + 1) * tests + 5: compute_code_generation_metrics.py:43
    native = SandboxJob(style="stdin", program="", cases=["1"] * 20)
    assert cfg.time_limits(native) == (10.0, 120.0)
    payload = _job_payload(job, cfg, Isolation(BWRAP, "/usr/bin/python3"))
    assert payload["grader"] == "livecodebench" and "SECRET" not in json.dumps(payload)


def test_config_keys():
    cfg = SSDConfig()
    assert (cfg.eval.grader, cfg.eval.lcb_timeout_s) == ("auto", 6)
    assert SandboxConfig.from_eval(cfg.eval).grader == "auto"
    cfg.eval.grader = "lcb"
    cfg.eval.lcb_timeout_s = 0
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "eval.grader='lcb'" in str(err.value) and "eval.lcb_timeout_s=0" in str(err.value)


# ------------------------------------------------------------------------------------------- the decoder
def _decoder(style="stdin", expected=("3",)):
    return ProtocolDecoder(style, list(expected), "n", 6.0, grader="livecodebench")


def _msg(**m):
    return {"ev": "msg", "child": 0, "msg": m}


def test_captured_output_is_compared_outside():
    d = _decoder(expected=("3", "4"))
    for rec in ({"ev": "ready"}, _msg(ev="start", phase="load"), _msg(ev="stdout", i=0, text="3.0\n"),
                _msg(ev="stdout", i=1, text="4"), _msg(ev="completed"),
                {"ev": "exit", "child": 0, "case": None, "exit_code": 0, "signal": None, "killed_for": None},
                {"ev": "done", "nonce": "n"}):
        d.feed(rec)
    assert d.finish(timed_out=False, returncode=0).passed


def test_output_messages_that_do_not_fit_are_violations():
    d = _decoder()
    d.feed(_msg(ev="stdout", i=0, text="3"))
    d.feed(_msg(ev="stdout", i=0, text="3"))
    assert d.sample_outcome.outcome == "sandbox-violation"
    native = ProtocolDecoder("stdin", ["3"], "n", 6.0)
    native.feed(_msg(ev="stdout", i=0, text="3"))
    assert native.sample_outcome.outcome == "sandbox-violation"


def test_exit_before_the_tests_completed_fails():
    d = _decoder(expected=("3", "4"))
    d.feed({"ev": "ready"})
    d.feed(_msg(ev="stdout", i=0, text="3"))
    d.feed({"ev": "exit", "child": 0, "case": None, "exit_code": 0, "signal": None, "killed_for": None})
    d.feed({"ev": "done", "nonce": "n"})
    out = d.finish(timed_out=False, returncode=0)
    assert out.outcome == "failed" and "before the tests completed" in out.reason
