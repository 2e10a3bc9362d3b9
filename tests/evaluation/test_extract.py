"""Code extraction rules: ours, LiveCodeBench's, HumanEval's convention, and reasoning models' answers."""
from megatron_ssd.evaluation.extract import (AFTER_REASONING, CONTEXT_SUFFIX, FENCED_PLAIN, FENCED_PYTHON,
                                             FENCED_UNTERMINATED, LCB_LAST_BLOCK, LCB_NO_BLOCK, PROMPT_SUFFIX,
                                             REASONING_UNTERMINATED, WHOLE, answer_part, defines, extract_code,
                                             extract_program, humaneval_program, lcb_code)
from megatron_ssd.evaluation.sandbox.jobs import build_job
from megatron_ssd.problems import Problem
from megatron_ssd.problems import TestCase as Case


def test_last_python_or_plain_block_wins():
    text = ("Here:\n```python\ndef a(): return 1\n```\nand better:\n```py\ndef a(): return 2\n```\n"
            "run:\n```bash\nls\n```\n")
    ex = extract_code(text)
    assert ex.method == FENCED_PYTHON and "return 2" in ex.code and "ls" not in ex.code
    plain = extract_code("x\n```\nprint(1)\n```\n")
    assert plain.method == FENCED_PLAIN and plain.code == "print(1)\n"


def test_unterminated_fence_and_whole_text():
    cut = extract_code("Sure.\n```python\ndef f(x):\n    return x +")
    assert cut.method == FENCED_UNTERMINATED and cut.code.startswith("def f(x):")
    whole = extract_code("def f(x):\n    return x\n")
    assert whole.method == WHOLE and whole.code == "def f(x):\n    return x\n"
    only_other = extract_code("```bash\nls\n```")
    assert only_other.method == WHOLE


def test_longer_fences_and_tildes():
    ex = extract_code("````python\nprint('```')\n````\n")
    assert ex.method == FENCED_PYTHON and ex.code == "print('```')\n"
    assert extract_code("~~~python\nx = 1\n~~~\n").code == "x = 1\n"


def test_defines():
    assert defines("import os\ndef entry(a):\n  pass", "entry")
    assert defines("async def entry():\n  pass", "entry")
    assert defines("entry = lambda x: x", "entry")
    assert not defines("def entry_point(a): pass", "entry")
    assert not defines("    def entry(self): pass", "entry")  # a method, not top level


PROMPT = "from typing import List\n\ndef helper(x):\n    return x\n\ndef f(xs: List[int]) -> int:\n    '''doc'''\n"


def test_humaneval_prepends_prompt_for_a_body():
    ex = humaneval_program(PROMPT, "    return sum(xs)\n", "f")
    assert ex.method == WHOLE + PROMPT_SUFFIX and ex.code == PROMPT + "    return sum(xs)\n"


def test_humaneval_keeps_prompt_as_context_for_a_full_definition():
    ex = humaneval_program(PROMPT, "```python\ndef f(xs: List[int]) -> int:\n    return helper(sum(xs))\n```", "f")
    assert ex.method == FENCED_PYTHON + CONTEXT_SUFFIX
    assert ex.code.startswith(PROMPT.rstrip()) and ex.code.rstrip().endswith("return helper(sum(xs))")


# ------------------------------------------------------------------ LiveCodeBench's rule and reasoning models
# Expected values are derived by hand from lcb_runner/utils/extraction_utils.py:4-17 (lines containing ```, the
# lines strictly between the last two, "" when fewer than two) and checked here against our implementation.


def lcb_problem(**kw):
    return Problem(problem_id="lcb1", source="livecodebench", question="Add.", style="stdin",
                   test_cases=[Case(input="1 2\n", output="3\n")], **kw)


def test_lcb_rule_takes_the_lines_between_the_last_two_fence_lines():
    text = "Plan:\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone."
    assert lcb_code(text) == type(lcb_code(text))("print(2)", LCB_LAST_BLOCK)  # no trailing newline: "\n".join
    # any line containing ``` counts, whatever its tag or position in the line: bash blocks too
    assert lcb_code("```python\nx = 1\n```\nrun it:\n```bash\npython a.py\n```").code == "python a.py"
    assert lcb_code("see ```here``` and\ncode\nend ``` ok").code == "code"


def test_lcb_rule_with_fewer_than_two_fence_lines_is_no_program():
    assert lcb_code("def f():\n    return 1\n") == type(lcb_code(""))("", LCB_NO_BLOCK)
    assert lcb_code("```python\nprint(1)").code == ""  # cut inside its only block: LiveCodeBench scores ""


def test_lcb_rule_pairs_a_closing_fence_with_a_later_unterminated_one():
    # three fence lines: the last two are A's closing fence and B's opening fence, so the prose between them is
    # "the program" (LiveCodeBench's convention, kept for comparability; it fails the tests)
    assert lcb_code("```python\nA\n```\nmore words\n```python\nB").code == "more words"


def test_extract_program_uses_lcb_rule_for_livecodebench_and_the_fenced_rule_elsewhere():
    text = "Sure.\n```python\nprint(input())"
    assert extract_program(lcb_problem(), text).method == LCB_NO_BLOCK
    other = Problem(problem_id="j1", source="jsonl", question="Echo.", style="stdin")
    assert extract_program(other, text).method == FENCED_UNTERMINATED
    # the sandbox job of an LCB problem gets LiveCodeBench's program (the build_job call site)
    job, ex = build_job(lcb_problem(), "x\n```python\nprint(3)\n```\n")
    assert ex.method == LCB_LAST_BLOCK and job.program == "print(3)"


REASONED = ("Let me think.\n```python\nprint('draft')\n```\nNo, better:\n</think>\n\n"
            "Final:\n```python\nprint('final')\n```\n")


def test_reasoning_model_program_comes_from_the_answer_after_the_last_close_tag():
    ex = extract_program(lcb_problem(), REASONED)
    assert ex.code == "print('final')" and ex.method == LCB_LAST_BLOCK + AFTER_REASONING
    # two </think> (a model that "thinks again"): the answer after the last one
    assert extract_program(lcb_problem(), "a</think>```python\nx\n```\n</think>\n```python\ny\n```").code == "y"


def test_answer_without_code_is_no_program_even_with_a_draft_in_the_reasoning():
    text = "```python\nprint('draft')\n```\n</think>\n\nI could not solve it."
    ex = extract_program(lcb_problem(), text)
    assert ex.code == "" and ex.method == LCB_NO_BLOCK + AFTER_REASONING
    assert lcb_code(text).code == "print('draft')"  # lcb_runner scans the whole output and would score the draft


def test_generation_cut_inside_the_reasoning_has_no_program():
    # Qwen3-*-Thinking-2507 opens <think> in the prompt, so a cut generation carries no tag: the caller says so
    cut = "We need to read n.\n```python\nprint('draft')\n```\nHmm, but for large n"
    ex = extract_program(lcb_problem(), cut, reasoning=True)
    assert ex == type(ex)("", REASONING_UNTERMINATED)
    # an opening tag in the text without its close: recognised without being told
    assert extract_program(lcb_problem(), "<think>\n" + cut).method == REASONING_UNTERMINATED
    # not a reasoning model: the same text is an ordinary (LiveCodeBench-rule) answer
    assert extract_program(lcb_problem(), cut, reasoning=False).code == "print('draft')"
    assert extract_program(lcb_problem(), cut).code == "print('draft')"  # unknown model, no tags: as LCB would


def test_answer_part_contract():
    assert answer_part("a</think>b") == ("b", True)
    assert answer_part("a</think>b", reasoning=False) == ("a</think>b", False)
    assert answer_part("plain", reasoning=True) == (None, True)
    assert answer_part("plain") == ("plain", False)


def test_humaneval_answer_after_reasoning_keeps_the_humaneval_convention():
    he = Problem(problem_id="HumanEval/x", source="humaneval", question="", style="humaneval", starter_code=PROMPT,
                 entry_point="f", test_code="def check(c): pass")
    ex = extract_program(he, "thinking</think>\n    return sum(xs)\n")
    assert ex.method == WHOLE + PROMPT_SUFFIX + AFTER_REASONING and ex.code == PROMPT + "\n    return sum(xs)\n"
