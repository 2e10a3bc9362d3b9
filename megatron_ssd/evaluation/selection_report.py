"""Best-of-N by likelihood against grounding, per eval label: `eval/<label>/selection.json`.

With `eval.selection_diagnostic` and n > 1 samples per problem, each problem's samples are programs (extracted as
the sandbox runs them, `sandbox/jobs.py`) with one declared scalar: the mean token log-probability,
`cumulative_logprob / num_tokens` from the sample shards. `selection.diagnose_code_samples` keeps the top-1 by that
scalar and grounds every program's imports and calls in the standard library and the problem's starter code; this
module aggregates over problems: how often the likelihood pick is less grounded than another sample on some section
(by at least the gap threshold), which unresolved names the samples use most, and one row per problem.
It observes: nothing here feeds pass@k, the verdict or training. docs/SELECTION.md has the grounding rules.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

from ..errors import SSDError
from ..problems import Problem
from ..selection import diagnose_code_samples
from ..selection.gaps import DEFAULT_THRESHOLD, GapReport
from .sandbox.jobs import build_job
from .scoring import problem_index

SCHEMA = "megatron-ssd/selection/v1"
SCALAR = "mean_logprob"
PICKED_BY = "mean token log-probability"
TOP_NAMES = 20  # unresolved names listed in the aggregate, most frequent first
MAX_IDS = 20  # problem ids listed for the skipped / scalar-missing counts


def selection_enabled(eval_cfg: Any) -> bool:
    """Whether a label's samples get the diagnostic (and so are generated with their log-probabilities)."""
    return bool(getattr(eval_cfg, "selection_diagnostic", False)) and int(eval_cfg.n) > 1


def mean_logprob(sample: Mapping[str, Any]) -> float | None:
    """The sample's mean token log-probability; None when its shard has no `cumulative_logprob` or it is empty."""
    total, tokens = sample.get("cumulative_logprob"), sample.get("num_tokens")
    if total is None or not tokens:
        return None
    value = float(total) / int(tokens)
    return value if math.isfinite(value) else None


def selection_report(problems: Iterable[Problem] | Mapping[str, Problem], samples: Sequence[Mapping[str, Any]],
                     scored_rows: Sequence[Mapping[str, Any]] = (), *,
                     threshold: float = DEFAULT_THRESHOLD, reasoning: bool | None = None) -> dict[str, Any]:
    """The JSON-able diagnostic of one label. `samples`: the label's shard rows; `scored_rows`: its sandbox rows
    (`score_samples`), used only to show whether each sample passed; `reasoning`: as for `score_samples`."""
    index = problem_index(problems)
    passed = {(r["prompt_id"], r["sample_idx"]): bool(r["passed"]) for r in scored_rows}
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in samples:
        groups[s["prompt_id"]].append(s)
    rows, no_scalar, skipped = [], [], []
    for pid in sorted(groups):
        group = sorted(groups[pid], key=lambda s: s["sample_idx"])
        if pid not in index or len(group) < 2:
            skipped.append(pid)
        elif any(mean_logprob(s) is None for s in group):
            no_scalar.append(pid)
        else:
            rows.append(_problem_row(index[pid], group, passed, threshold, reasoning))
    return _aggregate(rows, no_scalar, skipped, threshold)


def _problem_row(problem: Problem, group: list[Mapping[str, Any]], passed: Mapping[tuple[str, int], bool],
                 threshold: float, reasoning: bool | None = None) -> dict[str, Any]:
    width = len(str(group[-1]["sample_idx"]))  # zero-padded ids, so the tie-break by smallest id is by index
    sid = {s["sample_idx"]: f"{s['sample_idx']:0{width}d}" for s in group}
    records = [{"id": sid[s["sample_idx"]], "code": build_job(problem, s["text"], reasoning=reasoning)[1].code, SCALAR: mean_logprob(s)}
               for s in group]
    row: dict[str, Any] = {"prompt_id": problem.problem_id}
    try:
        report = diagnose_code_samples(records, problem.starter_code, scalar=SCALAR, threshold=threshold,
                                       picked_by=PICKED_BY)
    except (SSDError, RecursionError) as exc:  # one odd program must not sink the label's evaluation
        return {**row, "error": f"{type(exc).__name__}: {exc}"}
    selected = report.selected
    gaps = _meaningful_gaps(report)
    row.update({
        "selected": selected,
        "tied": list(report.selection.tied) if len(report.selection.tied) > 1 else [],
        SCALAR: {k: report.selection.scores[k] for k in report.selection.ranking},
        "passed": {sid[s["sample_idx"]]: passed.get((problem.problem_id, s["sample_idx"])) for s in group},
        "less_grounded": bool(gaps),
        "gaps": gaps,
        "disagreements": report.disagreements,
        "notes": report.notes,
        "selected_unresolved": sorted({u["name"] for u in report.unresolved if u["sample"] == selected}),
        "unresolved": report.unresolved,
    })
    return row


def _meaningful_gaps(report: GapReport) -> list[dict[str, Any]]:
    """The sections where another sample is better grounded than the pick by at least the threshold."""
    return [{"section": s.section, "metric": m.metric, "selected": _ratio(m.selected), "best": _ratio(m.best),
             "best_sample": m.best_sample, "gap": m.gap} for s in report.sections for m in s.metrics if m.meaningful]


def _ratio(r: Any) -> str | None:
    return None if r is None else f"{r.hit}/{r.total}"


def _aggregate(rows: list[dict[str, Any]], no_scalar: list[str], skipped: list[str],
               threshold: float) -> dict[str, Any]:
    diagnosed = [r for r in rows if "error" not in r]
    samples_using: Counter[str] = Counter()
    problems_using: dict[str, set[str]] = defaultdict(set)
    for r in diagnosed:
        for _, name in sorted({(u["sample"], u["name"]) for u in r["unresolved"]}):
            samples_using[name] += 1
            problems_using[name].add(r["prompt_id"])
    names = sorted(samples_using, key=lambda n: (-samples_using[n], n))[:TOP_NAMES]
    less = sum(r["less_grounded"] for r in diagnosed)
    known = [r["passed"][r["selected"]] for r in diagnosed if r["passed"].get(r["selected"]) is not None]
    if diagnosed:
        status, note = "ok", None
    elif no_scalar:
        status, note = "scalar-missing", (
            "no sample carries `cumulative_logprob`: the shards were generated without eval.selection_diagnostic "
            "(or before the column existed). Delete this label's eval folder and rerun the stage to regenerate it.")
    else:
        status, note = "no-problems", "no problem has two or more scored samples with a known scalar."
    return {
        "schema": SCHEMA, "status": status, "note": note,
        "scalar": f"{SCALAR}: {PICKED_BY} (cumulative_logprob / num_tokens, the model's raw distribution)",
        "threshold": threshold,
        "problems": len(diagnosed),
        "top1_less_grounded": less,
        "top1_less_grounded_fraction": less / len(diagnosed) if diagnosed else None,
        "top1_with_unresolved": sum(bool(r["selected_unresolved"]) for r in diagnosed),
        "top1_passed": sum(known) if known else None,
        "unresolved_names": [{"name": n, "samples": samples_using[n], "problems": len(problems_using[n])}
                             for n in names],
        "scalar_missing": {"problems": len(no_scalar), "ids": no_scalar[:MAX_IDS]},
        "skipped": {"problems": len(skipped), "ids": skipped[:MAX_IDS],
                    "why": "fewer than two samples, or not in the problem set"},
        "errors": {"problems": len(rows) - len(diagnosed),
                   "ids": [r["prompt_id"] for r in rows if "error" in r][:MAX_IDS]},
        "per_problem": rows,
    }
