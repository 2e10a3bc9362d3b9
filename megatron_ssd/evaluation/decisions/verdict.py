"""The precondition verdict: is there room for SSD on this model and this eval set?

SSD reshapes the model's own distribution toward solutions it already samples; it cannot add capability. Its
headroom is therefore visible *before training* as the gap between pass@k and pass@1 of the base model on held-out
problems: solutions the model can produce but rarely ranks first. The rules, in order (all gaps in percentage
points, pp; thresholds are arguments with the defaults below):

1. GO-SSD: pass@k − pass@1 ≥ `gap_threshold_pp` (default 5, `eval.gap_threshold_pp`) for some feasible k > 1.
2. GO-OTHER (saturated): pass@1 ≥ `saturated_pass1` (default 0.9): too little left to gain on this set; evaluate on
   harder problems before spending compute.
3. GO-VERIFIER-AWARE-SSD: tests are available and the best gap is at least `min_headroom_pp` (default 1 pp) with a
   bootstrap CI above zero: the headroom is real but small, so keep only samples that pass their tests before
   training (the `filter` stage) instead of training on raw samples.
4. GO-OTHER (capability): otherwise. The alternative named depends on what exists: with tests and pass@k_max ≥
   `rl_min_passk` (default 0.05) → "RL with a verifier" (there is signal to reinforce); with tests but almost no
   solved problems, or without tests → "SFT on external data (e.g. distillation from a stronger model)".

Weaknesses are listed with every verdict (never hidden in a footnote): fewer than 200 held-out problems, no
contamination check, n smaller than the largest requested k, gap CIs that straddle the threshold, sandbox runs
without bubblewrap.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from ..statistics.passk import pass_at_k_array
from ..statistics.bootstrap import paired_bootstrap

GO_SSD = "GO-SSD"
GO_VERIFIER_AWARE = "GO-VERIFIER-AWARE-SSD"
GO_OTHER = "GO-OTHER"
MIN_HELDOUT = 200


def gap_table(summary: Mapping[str, Any], ci_level: float = 0.95, bootstrap_samples: int = 2000,
              seed: int = 0) -> dict[str, dict[str, float]]:
    """pass@k − pass@1 (pp) per feasible k > 1, with a paired bootstrap CI over problems."""
    per = summary.get("per_problem") or {}
    ids = sorted(per)
    out: dict[str, dict[str, float]] = {}
    if not ids:
        return out
    n = np.array([per[i]["n"] for i in ids])
    c = np.array([per[i]["c"] for i in ids])
    p1 = pass_at_k_array(n, c, 1)
    for k in summary.get("k", []):
        if int(k) <= 1:
            continue
        pk = pass_at_k_array(n, c, int(k))
        boot = paired_bootstrap(p1, pk, ci_level, bootstrap_samples, seed + int(k))
        out[str(k)] = {"gap_pp": 100 * boot["delta"], "ci_low_pp": 100 * boot["ci_low"],
                       "ci_high_pp": 100 * boot["ci_high"]}
    return out


def decide(summary: Mapping[str, Any], *, gap_threshold_pp: float = 5.0, has_tests: bool = True,
           contamination_checked: bool = False, requested_k: Iterable[int] = (), saturated_pass1: float = 0.9,
           min_headroom_pp: float = 1.0, rl_min_passk: float = 0.05, ci_level: float = 0.95,
           bootstrap_samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The verdict for a base-model summary (`results.summarize` schema) on the held-out set."""
    gaps = gap_table(summary, ci_level, bootstrap_samples, seed)
    passk = summary.get("pass_at_k") or {}
    pass1 = passk.get("1", {}).get("estimate")
    weaknesses = _weaknesses(summary, gaps, gap_threshold_pp, contamination_checked, requested_k)
    base = {"gap_threshold_pp": gap_threshold_pp, "gaps": gaps, "pass_at_k": dict(passk), "pass1": pass1,
            "num_problems": summary.get("num_problems", 0), "n": summary.get("n_min"), "has_tests": has_tests,
            "contamination_checked": contamination_checked, "weaknesses": weaknesses}
    if pass1 is None or not summary.get("num_problems"):
        return {**base, "verdict": GO_OTHER, "alternative": "fix the evaluation first",
                "reason": "no pass@1 could be measured (no scored problems); the precondition cannot be tested."}
    best_k, best = max(gaps.items(), key=lambda kv: kv[1]["gap_pp"], default=(None, None))
    kmax = str(max(int(k) for k in passk)) if passk else "1"
    passk_max = passk[kmax]["estimate"]
    if best is not None and best["gap_pp"] >= gap_threshold_pp:
        return {**base, "verdict": GO_SSD, "best_k": int(best_k), "alternative": None,
                "reason": (f"pass@{best_k} − pass@1 = {best['gap_pp']:.1f} pp ≥ {gap_threshold_pp:g} pp: the base "
                           "model already samples solutions it does not rank first; SSD can move probability mass "
                           "toward them.")}
    gap_text = (f"the largest gap is pass@{best_k} − pass@1 = {best['gap_pp']:.1f} pp < {gap_threshold_pp:g} pp"
                if best is not None else f"no k > 1 is estimable from n={summary.get('n_min')} samples, so no gap "
                                         "could be measured")
    if pass1 >= saturated_pass1:
        return {**base, "verdict": GO_OTHER, "best_k": _int(best_k),
                "alternative": "evaluate on harder problems (the set is saturated)",
                "reason": f"pass@1 = {100 * pass1:.1f}% is near the ceiling and {gap_text}."}
    if has_tests and best is not None and best["gap_pp"] >= min_headroom_pp and best["ci_low_pp"] > 0:
        return {**base, "verdict": GO_VERIFIER_AWARE, "best_k": int(best_k), "alternative": None,
                "reason": (f"{gap_text}, but the headroom is real (CI [{best['ci_low_pp']:.1f}, "
                           f"{best['ci_high_pp']:.1f}] pp excludes 0) and tests exist: keep only samples that pass "
                           "their tests (verifier-aware SSD) so training concentrates on the rare correct ones.")}
    if has_tests and passk_max >= rl_min_passk:
        alternative = "RL with a verifier (or verifier-based rejection sampling)"
        why = (f"tests exist and pass@{kmax} = {100 * passk_max:.1f}% gives a reward signal, but sampling alone "
               "shows no headroom for self-distillation")
    else:
        alternative = "SFT on external data (e.g. distillation from a stronger model)"
        why = ("the model rarely solves these problems at any k" if has_tests else
               "there are no tests to verify samples with")
    return {**base, "verdict": GO_OTHER, "best_k": _int(best_k), "alternative": alternative,
            "reason": f"{gap_text}; {why}. Suggested: {alternative}."}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _weaknesses(summary: Mapping[str, Any], gaps: Mapping[str, Mapping[str, float]], threshold: float,
                contamination_checked: bool, requested_k: Iterable[int]) -> list[str]:
    out = []
    num = int(summary.get("num_problems", 0))
    if num < MIN_HELDOUT:
        out.append(f"only {num} held-out problems (< {MIN_HELDOUT}): CIs are wide; treat the verdict as provisional.")
    if not contamination_checked:
        out.append("no contamination check between training prompts and the eval set was recorded.")
    requested = sorted(set(int(k) for k in requested_k) | set(int(k) for k in summary.get("k_skipped", [])))
    n_min = summary.get("n_min") or 0
    too_big = [k for k in requested if k > n_min]
    if too_big:
        out.append(f"n = {n_min} samples per problem is smaller than k = {too_big}: those pass@k were not estimated.")
    for k, g in gaps.items():
        if g["ci_low_pp"] < threshold <= g["ci_high_pp"]:
            out.append(f"the pass@{k} gap CI [{g['ci_low_pp']:.1f}, {g['ci_high_pp']:.1f}] pp straddles the "
                       f"{threshold:g} pp threshold.")
    if summary.get("isolation_warning"):
        out.append(str(summary["isolation_warning"]))
    return out
