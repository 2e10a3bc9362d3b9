"""The chat messages a model sees for a problem: one builder for sampling, diagnosis and evaluation.

Training prompts and eval prompts must be rendered identically, otherwise SSD fine-tunes on one distribution and is
evaluated on another; the paper queries every model "in a single-turn chat format using their official chat
templates" for both (arXiv 2604.01193, App. C.1). The model family picks the wording (`model.prompt_style`, one of
`config.model.PROMPT_STYLES`); the chat template itself is applied by the engine (`generation.engine.render`).

- ``default``: HumanEval asks to complete the given function; other problems get an LCB-like instruction.
- ``lcb_generic``: LiveCodeBench's generic system message and "### Question / ### Format / ### Answer" user turn,
  the style lcb_runner gives Llama-3.1-Instruct (``LMStyle.LLaMa3``: lcb_runner/prompts/code_generation.py:14,
  :35-51, :252-276; lcb_runner/lm_styles.py:113-119), and the paper's "system message requesting a Python solution
  ... followed by the problem statement as the user turn".
- ``lcb_codeqwen``: LiveCodeBench's CodeQwenInstruct text, the style lcb_runner lists for Qwen3
  (lm_styles.py:688-694; code_generation.py:22-24, :129-139, :323-326). lcb_runner writes that one as a raw ChatML
  string; rendered through a Qwen chat template these messages give the same string, plus whatever the template adds
  to the generation prompt (Qwen3-Thinking-2507 adds ``<think>\\n``, which lcb_runner's raw string never has).

HumanEval problems keep HumanEval's completion prompt under every style (it is not a LiveCodeBench problem). Problems
without starter code get the stdin format, as LiveCodeBench decides by `starter_code` alone.
"""
from __future__ import annotations

from .config.model import PROMPT_STYLES
from .problems import Problem

DEFAULT, LCB_GENERIC, LCB_CODEQWEN = PROMPT_STYLES

_CODE_FORMAT = "Enclose your code within delimiters as follows.\n```python\n# YOUR CODE HERE\n```"

# LiveCodeBench's wording (lcb_runner/prompts/code_generation.py:14, :22-24, :35, :37): benchmark text, kept verbatim
# so that a prompt rendered here is the prompt LiveCodeBench sends.
LCB_SYSTEM_GENERIC = ("You are an expert Python programmer. You will be given a question (problem specification) and "
                      "will generate a correct Python program that matches the specification and passes all tests.")
LCB_SYSTEM_CODEQWEN = "You are a helpful assistant."
LCB_WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                    "code within delimiters.")
LCB_WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                       "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
                       "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
_LCB_TASK = ("You will be given a question (problem specification) and will generate a correct Python program that "
             "matches the specification and passes all tests. You will NOT return anything except for the program.")


def _is_humaneval(problem: Problem) -> bool:
    return problem.style == "humaneval" or problem.source == "humaneval"


def _humaneval_message(problem: Problem) -> str:
    return ("Complete the following Python function. Return the complete function, including the signature, "
            "in a single ```python code block.\n\n```python\n" + problem.starter_code.rstrip() + "\n```")


def user_message(problem: Problem) -> str:
    """The ``default`` style's user turn."""
    if _is_humaneval(problem):
        return _humaneval_message(problem)
    question = problem.question.strip()
    if problem.starter_code.strip():
        return (
            "You will be given a question (problem specification) and will generate a correct Python program that "
            f"matches the specification and passes all tests.\n\nQuestion: {question}\n\n### Format: You will use "
            "the following starter code to write the solution to the problem and enclose your code within "
            f"delimiters.\n```python\n{problem.starter_code.rstrip()}\n```\n\n### Answer: (use the provided format "
            "with backticks)\n"
        )
    if problem.style == "assert":
        first_test = problem.test_code.strip().splitlines()[-1] if problem.test_code.strip() else ""
        return f"{question}\nYour code should pass this test:\n{first_test}\n\n{_CODE_FORMAT}"
    return (
        "You will be given a question (problem specification) and will generate a correct Python program that "
        f"matches the specification and passes all tests.\n\nQuestion: {question}\n\n### Format: Read the inputs "
        "from stdin solve the problem and write the answer to stdout (do not directly test on the sample inputs). "
        f"{_CODE_FORMAT}\nEnsure that when the python program runs, it reads the inputs, runs the algorithm and "
        "writes output to STDOUT.\n\n### Answer: (use the provided format with backticks)\n"
    )


def lcb_generic_user_message(problem: Problem) -> str:
    """LiveCodeBench's generic question template (code_generation.py:40-51); the question and starter code as given."""
    text = f"### Question:\n{problem.question}\n\n"
    if problem.starter_code:
        text += f"### Format: {LCB_WITH_STARTER}\n```python\n{problem.starter_code}\n```\n\n"
    else:
        text += f"### Format: {LCB_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text + "### Answer: (use the provided format with backticks)\n\n"


def lcb_codeqwen_user_message(problem: Problem) -> str:
    """LiveCodeBench's CodeQwenInstruct text as a user turn: lcb_runner's raw string is
    ``<|im_start|>user`` + ``\\n\\n`` + this text's body + ``<|im_end|>\\n<|im_start|>assistant\\n``, so the turn's
    content is a newline, the body, and the blank line lcb_runner leaves before ``<|im_end|>`` (:129-139, :323-326)."""
    text = f"\n{_LCB_TASK}\n\nQuestion: {problem.question}\n\n"
    if problem.starter_code:
        return text + f"{LCB_WITH_STARTER}\n```python\n{problem.starter_code}\n```\n\n"
    return text + f"{LCB_WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"


def chat_messages(problem: Problem, style: str = DEFAULT) -> list[dict[str, str]]:
    """The messages for `problem` in `style` (one of PROMPT_STYLES); the caller applies the chat template."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style {style!r}: choose one of {', '.join(PROMPT_STYLES)} (model.prompt_style).")
    if style == DEFAULT or _is_humaneval(problem) or problem.style == "assert":
        return [{"role": "user", "content": user_message(problem)}]
    if style == LCB_GENERIC:
        return [{"role": "system", "content": LCB_SYSTEM_GENERIC},
                {"role": "user", "content": lcb_generic_user_message(problem)}]
    return [{"role": "system", "content": LCB_SYSTEM_CODEQWEN},
            {"role": "user", "content": lcb_codeqwen_user_message(problem)}]
