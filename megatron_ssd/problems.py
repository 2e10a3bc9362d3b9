"""One problem schema for every source (HumanEval, MBPP-style, LiveCodeBench, rSTARcoder, local files).

Every stage — prompts, sample, diagnose, evaluate, the verifier-aware filter — speaks `Problem`. Sources convert
their rows into it once (`megatron_ssd.prompts.sources`); the sandbox decides how to run a candidate from `style`:

- ``humaneval``: `test_code` defines ``check(candidate)``; the candidate program defines `entry_point`.
- ``assert``: `test_code` is a list of assert statements joined by newlines (MBPP ``test_list``).
- ``stdin``: `test_cases` give stdin text and the expected stdout.
- ``functional``: `test_cases` give JSON-encoded arguments (one per line, LiveCodeBench style) and the expected
  JSON-encoded return value of `entry_point` (a method of ``Solution`` when the starter code defines that class).
- ``none``: no tests (training-only prompts without a verifier).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

STYLES = ("humaneval", "assert", "stdin", "functional", "none")


@dataclass(frozen=True)
class TestCase:
    input: str
    output: str


@dataclass
class Problem:
    problem_id: str
    source: str
    question: str
    style: str = "none"
    starter_code: str = ""
    entry_point: str = ""
    test_code: str = ""
    test_cases: list[TestCase] = field(default_factory=list)
    difficulty: str | None = None
    contest_date: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"problem {self.problem_id!r}: style {self.style!r} is not one of {STYLES}")
        self.test_cases = [tc if isinstance(tc, TestCase) else TestCase(**tc) for tc in self.test_cases]

    @property
    def has_tests(self) -> bool:
        return bool(self.test_code.strip()) or bool(self.test_cases)

    # ---- flat row form for parquet (nested fields as JSON strings so every engine reads them) ----
    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["test_cases"] = json.dumps([asdict(tc) for tc in self.test_cases])
        row["metadata"] = json.dumps(self.metadata, sort_keys=True, default=str)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Problem":
        row = dict(row)
        row["test_cases"] = [TestCase(**tc) for tc in json.loads(row.get("test_cases") or "[]")]
        row["metadata"] = json.loads(row.get("metadata") or "{}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in row.items() if k in known})
