"""Difficulty slices that cannot manufacture an effect, and the family-wise correction of a slice table.

Cutting quartiles from the base model's pass rates and then comparing the same base samples inside each quartile
is regression to the mean: with no true effect the hardest quartile "improves" and the easiest "worsens" (99 % and
37 % of replicates at P=164, n=10). Difficulty must be independent of the samples compared, so the sources are,
in order of preference: the dataset's own labels (LiveCodeBench easy/medium/hard), else a held-out part of the
base samples: each problem's samples with an even `sample_idx` decide its difficulty (`DIFFICULTY_SAMPLES`), the
odd ones are the base arm of every slice comparison. Samples are i.i.d. within a problem, so the two parts are
independent given the problem and the label says nothing about the compared part's noise.

A slice table is a family of tests: `holm` adjusts its p-values (Holm, 1979) so the chance of any false "significant"
slice stays at the nominal level. A slice of fewer than `MIN_SLICE_PROBLEMS` problems gets no interval at all.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

QUARTILE_LABELS = ("Q1 (hardest)", "Q2", "Q3", "Q4 (easiest)")
MIN_SLICE_PROBLEMS = 10
DIFFICULTY_SAMPLES = "even sample_idx"  # which base samples decide difficulty; the rest are compared

METHOD_NOTES = {
    "source": "the dataset's own difficulty labels (independent of every sample)",
    "base-heldout": ("quartiles of the base model's pass rate on its even-numbered samples; the base arm of every "
                     "slice comparison uses only its odd-numbered samples"),
    "given": "labels handed in by the caller (the base model's summary)",
    "none": "no slices: no dataset labels, and fewer than 2 base samples per problem to hold one out",
}


def is_difficulty_sample(sample_idx: int) -> bool:
    """True for the base samples that decide difficulty (and are therefore never compared)."""
    return int(sample_idx) % 2 == 0


def difficulty_quartiles(pass_rate: Mapping[str, float]) -> dict[str, str]:
    """Difficulty labels from per-problem pass rates (c/n) of samples that are *not* compared afterwards.

    Bins are cut at the 25/50/75th percentiles of the rate; problems with equal rates always share a bin, so with
    many ties (e.g. lots of 0 % problems) bins can be unequal or empty.
    """
    if not pass_rate:
        return {}
    rates = np.array(list(pass_rate.values()), dtype=np.float64)
    edges = np.quantile(rates, [0.25, 0.5, 0.75])
    return {pid: QUARTILE_LABELS[int(np.searchsorted(edges, r, side="left"))] for pid, r in pass_rate.items()}


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm step-down adjusted p-values: reject where adjusted p < alpha controls the family-wise error at alpha."""
    order = sorted(p_values, key=lambda key: p_values[key])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[key])))
        adjusted[key] = running
    return adjusted
