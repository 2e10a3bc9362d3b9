"""Code extraction rules and the HumanEval prompt convention."""
from megatron_ssd.evaluation.extract import (CONTEXT_SUFFIX, FENCED_PLAIN, FENCED_PYTHON, FENCED_UNTERMINATED,
                                             PROMPT_SUFFIX, WHOLE, defines, extract_code, humaneval_program)


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
