"""The chat messages a model sees for a problem: one builder for sampling, diagnosis and evaluation.

Training prompts and eval prompts must be rendered identically, otherwise SSD fine-tunes on one distribution and is
evaluated on another. The formats follow the benchmarks' conventions: HumanEval asks to complete the given function;
LiveCodeBench-style problems get its stdin or starter-code format instruction.
"""
from __future__ import annotations

from .problems import Problem

_CODE_FORMAT = "Enclose your code within delimiters as follows.\n```python\n# YOUR CODE HERE\n```"


def user_message(problem: Problem) -> str:
    if problem.style == "humaneval" or (problem.source == "humaneval"):
        return (
            "Complete the following Python function. Return the complete function, including the signature, "
            "in a single ```python code block.\n\n```python\n" + problem.starter_code.rstrip() + "\n```"
        )
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


def chat_messages(problem: Problem) -> list[dict[str, str]]:
    return [{"role": "user", "content": user_message(problem)}]
