"""The precondition verdict: is there room for SSD on this model and this eval set, and how sure are we?

SSD reshapes the model's own distribution toward solutions it already samples; it cannot add capability. Its
headroom is visible *before training* as pass@k − pass@1 of the base model on held-out problems. The headroom is
measured at one pre-declared k* (`headroom_k`, default 2: pass@2 − pass@1 = mean p(1 − p), estimated without
bias by c(n − c)/(n(n − 1)) from any n >= 2), never at "the best k": every problem's gap grows with k, so the best
k is always the largest feasible one and the verdict would depend on n. The rules, in order (gaps in percentage
points, pp; L and U are the one-sided lower and upper bounds at `confidence`, default 95 %, of the headroom over
the population of similar problems, statistics/intervals.py):

1. INCONCLUSIVE: no scored problems, or n < 2 samples per problem (no headroom can be measured at all).
2. GO-SSD: L ≥ `gap_threshold_pp` (default 5, `eval.gap_threshold_pp`).
3. GO-OTHER (saturated): pass@1 ≥ `saturated_pass1` (default 0.9): evaluate on harder problems first.
4. UNDECIDED: L < threshold ≤ U: the data cannot tell; `to_decide` says how many problems (at this n) would,
   if the estimate held. Callers do not train on UNDECIDED unless forced.
5. Clearly below the threshold (U < threshold):
   GO-VERIFIER-AWARE-SSD when tests exist and L ≥ `min_headroom_pp` (default 1 pp): real but small headroom, so
   keep only samples that pass their tests before training; else GO-OTHER: "RL with a verifier" with tests and
   pass@k* ≥ `rl_min_passk` (default 0.05), otherwise "SFT on external data".

`provisional` is true under `MIN_HELDOUT` (200) problems: the verdict stands, but a reader should treat it as
provisional. Weaknesses are listed with every verdict (never hidden in a footnote).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

from ..statistics.bootstrap import mean_ci
from ..statistics.intervals import mean_interval
from ..statistics.passk import headroom_array, pass_at_k_array

GO_SSD = "GO-SSD"
GO_VERIFIER_AWARE = "GO-VERIFIER-AWARE-SSD"
GO_OTHER = "GO-OTHER"
UNDECIDED = "UNDECIDED"
INCONCLUSIVE = "INCONCLUSIVE"
VERDICTS = (GO_SSD, GO_VERIFIER_AWARE, GO_OTHER, UNDECIDED, INCONCLUSIVE)
MIN_HELDOUT = 200
DEFAULT_HEADROOM_K = 2


def _counts(summary: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    per = summary.get("per_problem") or {}
    ids = sorted(per)
    return np.array([per[i]["n"] for i in ids], dtype=np.int64), np.array([per[i]["c"] for i in ids], dtype=np.int64)


def gap_table(summary: Mapping[str, Any], ci_level: float = 0.95) -> dict[str, dict[str, float]]:
    """pass@k − pass@1 (pp) per feasible k > 1 with its two-sided interval over problems (descriptive only)."""
    n, c = _counts(summary)
    out: dict[str, dict[str, float]] = {}
    if not n.size:
        return out
    for k in summary.get("k", []):
        if int(k) <= 1 or int(k) > n.min():
            continue
        est = mean_ci(headroom_array(n, c, int(k)), ci_level, max_per_problem=max(1, int(n.min()) // int(k)))
        out[str(k)] = {"gap_pp": 100 * est["estimate"], "ci_low_pp": 100 * est["ci_low"],
                       "ci_high_pp": 100 * est["ci_high"]}
    return out


def headroom(summary: Mapping[str, Any], k: int = DEFAULT_HEADROOM_K, confidence: float = 0.95) -> dict[str, Any]:
    """pass@k − pass@1 at the declared k with one-sided `confidence` bounds (pp); None when n < k."""
    n, c = _counts(summary)
    if not n.size or n.min() < max(2, k):
        return {}
    values = headroom_array(n, c, k)
    per = max(1, int(n.min()) // k)
    lower, upper = mean_interval(values, 1.0 - 2.0 * (1.0 - confidence), per)  # two-sided 1-2a: one-sided 1-a
    return {"k": int(k), "gap_pp": 100 * float(values.mean()), "lower_pp": 100 * lower, "upper_pp": 100 * upper,
            "confidence": confidence, "sided": "one-sided bounds", "num_problems": int(n.size),
            "n_min": int(n.min())}


def problems_to_decide(h: Mapping[str, Any], threshold_pp: float) -> int | None:
    """Problems (at this n) whose interval would clear or miss the threshold if the estimate held; None if never."""
    gap, dist = h["gap_pp"], abs(h["gap_pp"] - threshold_pp)
    half = (gap - h["lower_pp"]) if gap >= threshold_pp else (h["upper_pp"] - gap)
    if dist <= 1e-9:
        return None
    return int(math.ceil(h["num_problems"] * (half / dist) ** 2))


def decide(summary: Mapping[str, Any], *, gap_threshold_pp: float = 5.0, has_tests: bool = True,
           contamination_checked: bool = False, requested_k: Iterable[int] = (), saturated_pass1: float = 0.9,
           min_headroom_pp: float = 1.0, rl_min_passk: float = 0.05, ci_level: float = 0.95,
           headroom_k: int = DEFAULT_HEADROOM_K, confidence: float = 0.95, bootstrap_samples: int | None = None,
           seed: int | None = None) -> dict[str, Any]:
    """The verdict for a base-model summary (`scoring.summarize` schema) on the held-out set.

    ci_level: the two-sided level of the descriptive `gaps` table; confidence: the one-sided level of the
    decision's bounds. bootstrap_samples/seed are accepted for callers of the older signature; no decision here
    resamples.
    """
    del bootstrap_samples, seed  # the intervals are closed-form (statistics/intervals.py)
    gaps = gap_table(summary, ci_level)
    passk = summary.get("pass_at_k") or {}
    pass1 = passk.get("1", {}).get("estimate")
    num = int(summary.get("num_problems", 0) or 0)
    h = headroom(summary, headroom_k, confidence)
    weaknesses = _weaknesses(summary, h, gap_threshold_pp, contamination_checked, requested_k)
    base = {"gap_threshold_pp": gap_threshold_pp, "gaps": gaps, "pass_at_k": dict(passk), "pass1": pass1,
            "num_problems": num, "n": summary.get("n_min"), "has_tests": has_tests,
            "contamination_checked": contamination_checked, "weaknesses": weaknesses, "headroom_k": int(headroom_k),
            "headroom": h or None, "confidence": confidence, "provisional": num < MIN_HELDOUT, "to_decide": None,
            "best_k": int(headroom_k) if h else None}
    if pass1 is None or not num:
        return {**base, "verdict": INCONCLUSIVE, "alternative": "fix the evaluation first",
                "reason": "no pass@1 could be measured (no scored problems); the precondition cannot be tested."}
    if not h:
        return {**base, "verdict": INCONCLUSIVE, "alternative": f"evaluate with n >= {max(2, headroom_k)} samples",
                "reason": (f"with n = {summary.get('n_min')} sample(s) per problem no k > 1 is estimable, so the "
                           f"headroom pass@{headroom_k} − pass@1 was not measured: nothing is known about it.")}
    bounds = (f"pass@{headroom_k} − pass@1 = {h['gap_pp']:.2f} pp, one-sided {100 * confidence:g}% bounds "
              f"[{h['lower_pp']:.2f}, {h['upper_pp']:.2f}] pp over {num} problems")
    if h["lower_pp"] >= gap_threshold_pp:
        return {**base, "verdict": GO_SSD, "alternative": None,
                "reason": (f"{bounds}: the lower bound clears {gap_threshold_pp:g} pp; the base model already "
                           "samples solutions it does not rank first, and SSD can move probability mass toward them.")}
    if pass1 >= saturated_pass1:
        return {**base, "verdict": GO_OTHER, "alternative": "evaluate on harder problems (the set is saturated)",
                "reason": f"pass@1 = {100 * pass1:.1f}% is near the ceiling and {bounds}."}
    if h["upper_pp"] >= gap_threshold_pp:
        need = problems_to_decide(h, gap_threshold_pp)
        more = (f"about {need} problems at n = {h['n_min']} would decide it if the estimate held"
                if need is not None else "the estimate sits on the threshold: no sample size would decide it")
        return {**base, "verdict": UNDECIDED, "alternative": "evaluate more problems (or force the arm)",
                "to_decide": {"problems": need, "n": h["n_min"]},
                "reason": (f"{bounds}: the interval contains the {gap_threshold_pp:g} pp threshold, so the data "
                           f"cannot tell; {more}.")}
    below = f"{bounds}: clearly below {gap_threshold_pp:g} pp"
    if has_tests and h["lower_pp"] >= min_headroom_pp:
        return {**base, "verdict": GO_VERIFIER_AWARE, "alternative": None,
                "reason": (f"{below}, but the lower bound clears {min_headroom_pp:g} pp and tests exist: keep only "
                           "samples that pass their tests (verifier-aware SSD) so training concentrates on the rare "
                           "correct ones.")}
    n_arr, c_arr = _counts(summary)
    passk_star = float(pass_at_k_array(n_arr, c_arr, headroom_k).mean())
    if has_tests and passk_star >= rl_min_passk:
        alternative = "RL with a verifier (or verifier-based rejection sampling)"
        why = (f"tests exist and pass@{headroom_k} = {100 * passk_star:.1f}% gives a reward signal, but sampling "
               "alone shows no headroom for self-distillation")
    else:
        alternative = "SFT on external data (e.g. distillation from a stronger model)"
        why = ("the model rarely solves these problems" if has_tests else "there are no tests to verify samples with")
    return {**base, "verdict": GO_OTHER, "alternative": alternative,
            "reason": f"{below}; {why}. Suggested: {alternative}."}


def _weaknesses(summary: Mapping[str, Any], h: Mapping[str, Any], threshold: float, contamination_checked: bool,
                requested_k: Iterable[int]) -> list[str]:
    out = []
    num = int(summary.get("num_problems", 0) or 0)
    if num < MIN_HELDOUT:
        out.append(f"only {num} held-out problems (< {MIN_HELDOUT}): intervals are wide; the verdict is provisional.")
    if not contamination_checked:
        out.append("no contamination check between training prompts and the eval set was recorded.")
    requested = sorted(set(int(k) for k in requested_k) | set(int(k) for k in summary.get("k_skipped", [])))
    n_min = summary.get("n_min") or 0
    too_big = [k for k in requested if k > n_min]
    if too_big:
        out.append(f"n = {n_min} samples per problem is smaller than k = {too_big}: those pass@k were not estimated.")
    if h and h["lower_pp"] < threshold <= h["upper_pp"]:
        out.append(f"the pass@{h['k']} headroom bounds [{h['lower_pp']:.1f}, {h['upper_pp']:.1f}] pp straddle the "
                   f"{threshold:g} pp threshold.")
    if summary.get("isolation_warning"):
        out.append(str(summary["isolation_warning"]))
    return out
