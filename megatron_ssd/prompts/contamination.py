"""Contamination check: training prompts that share a long word n-gram with any eval problem.

The standard decontamination test (13-gram overlap, as used for GPT-3 and most code-LLM reports): a training
prompt is contaminated if any of its `n`-word n-grams (normalised text) occurs in an eval problem's text.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..problems import Problem
from .dedup import words


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


@dataclass
class ContaminationResult:
    contaminated: dict[str, str]  # train id -> an eval id it overlaps
    checked: int
    eval_problems: int


def find_contamination(train: list[Problem], eval_set: list[Problem], n: int = 13) -> ContaminationResult:
    index: dict[tuple[str, ...], str] = {}
    for p in eval_set:
        for g in ngrams(p.question + "\n" + p.starter_code, n):
            index.setdefault(g, p.problem_id)
    hits: dict[str, str] = {}
    for p in train:
        for g in ngrams(p.question + "\n" + p.starter_code, n):
            if g in index:
                hits[p.problem_id] = index[g]
                break
    return ContaminationResult(contaminated=hits, checked=len(train), eval_problems=len(eval_set))
