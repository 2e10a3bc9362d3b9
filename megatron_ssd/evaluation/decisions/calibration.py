"""Simulated benchmarks with known pass probabilities, to measure the statistics the report uses.

Problems draw p ~ Beta(mean·κ, (1 − mean)·κ) (κ = 1: the U-shaped spread of real code benchmarks, many problems
never or always solved) and each problem's n samples pass with probability p. The truth is a population mean, so
it is known in closed form: E[pass@k] = 1 − E[(1 − p)^k] = 1 − Π_{i<k} (b + i)/(a + b + i). Every function here
runs `replicates` independent benchmarks through the project's own code path (`scoring.passk_block`,
`scoring.paired_passk`, `scoring.summarize` + `scoring.slice_table`, `verdict.decide`, `gate.evaluate_gate`,
`collapse.run_battery`) and returns the observed rate with its binomial
standard error, so callers (tests/evaluation/test_calibration.py, benchmarks/bench_calibration.py) can set
tolerances from the simulation's own error.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...problems import Problem
from ..scoring import paired_passk, passk_block, slice_table, summarize
from .collapse import probe_stats, run_battery
from .gate import evaluate_gate
from .verdict import decide


def beta_params(mean: float, concentration: float) -> tuple[float, float]:
    return mean * concentration, (1.0 - mean) * concentration


def true_passk(mean: float, concentration: float, k: int) -> float:
    """E[1 − (1 − p)^k] for p ~ Beta(mean·κ, (1 − mean)·κ)."""
    a, b = beta_params(mean, concentration)
    return 1.0 - math.prod((b + i) / (a + b + i) for i in range(k))


def concentration_for_headroom(mean: float, headroom: float) -> float:
    """κ such that E[p(1 − p)] = pass@2 − pass@1 equals `headroom` at this mean (headroom < mean(1 − mean))."""
    r = headroom / (mean * (1.0 - mean))
    if not 0 < r < 1:
        raise ValueError(f"headroom {headroom} is not reachable at mean {mean}")
    return r / (1.0 - r)


def rate(hits: int, replicates: int) -> dict[str, float]:
    p = hits / replicates
    return {"rate": p, "replicates": replicates, "se": math.sqrt(max(p * (1 - p), 1e-12) / replicates)}


def binomial_limit(nominal: float, replicates: int, z: float = 3.29) -> float:
    """Upper limit for an observed rate whose true value is at most `nominal` (one-sided, ~0.05 % flake rate)."""
    return nominal + z * math.sqrt(nominal * (1 - nominal) / replicates) + 1.0 / replicates


def coverage_floor(nominal: float, replicates: int, z: float = 3.29) -> float:
    """Lower limit for an observed coverage whose true value is at least `nominal`."""
    return nominal - z * math.sqrt(nominal * (1 - nominal) / replicates) - 1.0 / replicates


def _counts(rng: np.random.Generator, p: np.ndarray, n: int) -> dict[str, dict[str, int]]:
    return {f"p{i}": {"n": n, "c": int(c)} for i, c in enumerate(rng.binomial(n, p))}


def _summary(counts: dict[str, dict[str, int]], ci_level: float) -> dict[str, Any]:
    return {"per_problem": counts, "bootstrap": {"ci_level": ci_level, "samples": 200, "seed": 0}}


def _rows(rng: np.random.Generator, counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    rows = []
    for pid, c in counts.items():
        passed = rng.permutation(np.arange(c["n"]) < c["c"])  # i.i.d. samples: which ones pass is random
        rows += [{"prompt_id": pid, "sample_idx": j, "passed": bool(x), "outcome": "passed" if x else "failed",
                  "isolation": "bwrap"} for j, x in enumerate(passed)]
    return rows


def _problems(num: int) -> list[Problem]:
    return [Problem(problem_id=f"p{i}", source="sim", question="q", style="assert", test_code="assert True")
            for i in range(num)]


def passk_coverage(P: int, n: int, k: int, mean: float, concentration: float = 1.0, ci_level: float = 0.95,
                   replicates: int = 200, seed: int = 0) -> dict[str, Any]:
    """How often `scoring.passk_block`'s interval for pass@k covers the population value."""

    rng = np.random.default_rng(seed)
    truth = true_passk(mean, concentration, k)
    hits = zero_width = 0
    for _ in range(replicates):
        block = passk_block(_counts(rng, rng.beta(*beta_params(mean, concentration), P), n), [k], ci_level)[str(k)]
        hits += block["ci_low"] <= truth <= block["ci_high"]
        zero_width += block["ci_high"] - block["ci_low"] <= 0.0
    return {**rate(hits, replicates), "truth": truth, "zero_width": zero_width}


def paired_coverage(P: int, n: int, k: int, mean: float, lift: float = 0.0, concentration: float = 1.0,
                    ci_level: float = 0.95, replicates: int = 200, seed: int = 0) -> dict[str, Any]:
    """How often `scoring.paired_passk`'s interval covers the true paired difference of pass@k.

    Model B solves what A solves plus a fraction `lift` of the rest: p_b = p + lift·(1 − p); for k = 1 the true
    difference is lift·(1 − mean), for k > 1 it is E[(1 − p)^k](1 − (1 − lift)^k).
    """

    rng = np.random.default_rng(seed)
    a, b = beta_params(mean, concentration)
    truth = (1.0 - true_passk(mean, concentration, k)) * (1.0 - (1.0 - lift) ** k)
    hits = zero_width = 0
    for _ in range(replicates):
        p = rng.beta(a, b, P)
        d = paired_passk(_summary(_counts(rng, p, n), ci_level), _summary(_counts(rng, p + lift * (1 - p), n),
                                                                           ci_level), k)
        hits += d["ci_low"] <= truth <= d["ci_high"]
        zero_width += d["ci_high"] - d["ci_low"] <= 0.0
    return {**rate(hits, replicates), "truth": truth, "zero_width": zero_width}


def slice_false_positives(P: int, n: int, mean: float = 0.3, concentration: float = 1.0, ci_level: float = 0.95,
                          replicates: int = 100, seed: int = 0) -> dict[str, Any]:
    """Null (both arms draw from the same p): how often a slice, and how often any slice after Holm, is
    "significant" in `scoring.slice_table` on slices from `scoring.summarize`."""

    rng = np.random.default_rng(seed)
    problems = _problems(P)
    any_sig = per_slice = slices = 0
    hardest = []
    for _ in range(replicates):
        p = rng.beta(*beta_params(mean, concentration), P)
        base = summarize(_rows(rng, _counts(rng, p, n)), problems, [1], n, ci_level, 200, 0)
        other = summarize(_rows(rng, _counts(rng, p, n)), problems, [1], n, ci_level, 200, 0,
                          difficulty_of=base["difficulty_of"])
        rows = [r for r in slice_table(base, other)["slices"] if r["ci_low"] is not None]
        any_sig += any(r["significant"] for r in rows)
        per_slice += sum(r["ci_low"] > 0 or r["ci_high"] < 0 for r in rows)
        slices += len(rows)
        if rows:
            hardest.append(rows[0]["delta"])
    return {"family_wise": rate(any_sig, replicates), "per_slice": rate(per_slice, max(1, slices)),
            "hardest_slice_mean_delta": float(np.mean(hardest)) if hardest else None,
            "method": base["difficulty_method"]}


def verdict_rates(P: int, n: int, headroom: float, threshold_pp: float = 5.0, mean: float = 0.3,
                  replicates: int = 200, seed: int = 0) -> dict[str, Any]:
    """Verdict frequencies of `decisions.verdict.decide` when the true pass@2 − pass@1 is `headroom`."""

    rng = np.random.default_rng(seed)
    a, b = beta_params(mean, concentration_for_headroom(mean, headroom))
    seen: dict[str, int] = {}
    for _ in range(replicates):
        counts = _counts(rng, rng.beta(a, b, P), n)
        summary = {"per_problem": counts, "num_problems": P, "n_min": n, "k": [1, 2] if n >= 2 else [1],
                   "pass_at_k": {"1": {"estimate": float(np.mean([c["c"] / n for c in counts.values()]))}}}
        verdict = decide(summary, gap_threshold_pp=threshold_pp, contamination_checked=True)["verdict"]
        seen[verdict] = seen.get(verdict, 0) + 1
    return {"true_headroom_pp": 100 * headroom, "threshold_pp": threshold_pp,
            "verdicts": {v: rate(c, replicates) for v, c in sorted(seen.items())}}


def gate_false_pass(P: int, n: int, mean: float = 0.3, concentration: float = 1.0, min_lift_pp: float = 2.0,
                    replicates: int = 200, seed: int = 0) -> dict[str, Any]:
    """Null (round 1 = base): how often `decisions.gate.evaluate_gate` passes with a quiet battery."""

    rng = np.random.default_rng(seed)
    passes = 0
    for _ in range(replicates):
        p = rng.beta(*beta_params(mean, concentration), P)
        arms = []
        for _arm in range(2):
            counts = _counts(rng, p, n)
            arms.append({**_summary(counts, 0.95), "pass_at_k": passk_block(counts, [1], 0.95)})
        passes += evaluate_gate(arms[0], arms[1], {"alerts": []}, min_lift_pp=min_lift_pp)["passed"]
    return rate(passes, replicates)


_WORDS = ("def", "return", "for", "in", "range", "if", "else", "x", "y", "i", "n", "result", "append", "len", "sum",
          "sorted", "key", "value", "items", "while", "break", "#", "import", "math", "list", "dict")


def prompt_vocabularies(rng: np.random.Generator, prompts: int, size: int = 12) -> list[np.ndarray]:
    """One small vocabulary per probe prompt: what a prompt's generations have in common."""
    return [rng.choice(_WORDS, size=size, replace=False) for _ in range(prompts)]


def synthetic_generations(rng: np.random.Generator, vocabularies: list[np.ndarray],
                          per_prompt: int) -> tuple[list[str], list[str]]:
    """Short code-like generations per prompt with random lengths, for null comparisons of the battery."""
    texts, ids = [], []
    for prompt, vocab in enumerate(vocabularies):
        for _ in range(per_prompt):
            lines = [("    " if j else "") + " ".join(rng.choice(vocab, size=int(rng.integers(2, 7))))
                     for j in range(int(rng.integers(2, 7)))]
            texts.append("\n".join(lines))
            ids.append(f"q{prompt}")
    return texts, ids


def probe_false_alarms(prompts: int = 30, per_prompt: int = 4, replicates: int = 40,
                       seed: int = 0) -> dict[str, Any]:
    """Null (both arms from the same generator on the same prompts): per-probe and any-probe alarm rates of
    `collapse.run_battery` on `probe_stats` of each arm."""
    rng = np.random.default_rng(seed)
    per_probe: dict[str, int] = {}
    any_alarm = 0
    for r in range(replicates):
        vocab = prompt_vocabularies(rng, prompts)
        arms = []
        for _arm in range(2):
            texts, ids = synthetic_generations(rng, vocab, per_prompt)
            arms.append(probe_stats(texts, None, ids, seed=r))
        out = run_battery(arms[0], arms[1], bootstrap_samples=300, seed=r)
        any_alarm += bool(out["alerts"])
        for name, probe in out["probes"].items():
            per_probe[name] = per_probe.get(name, 0) + int(probe["alarm"])
    return {"any": rate(any_alarm, replicates), "per_probe": {k: rate(v, replicates) for k, v in per_probe.items()}}
