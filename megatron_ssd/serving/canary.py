"""The canary report: the promotion router's telemetry summarised per checkpoint (`ssd canary-report`).

Written to `serve/canary_report.json` (schema below) and shown in the run's report as its Promotion section.

- Per checkpoint, over every answer it gave (served, or logged as a shadow): latency p50/p95 (and time to first
  chunk for streams), completion tokens, finish reasons, and the empty and refusal rates with score intervals
  (`statistics.bootstrap.mean_ci` over answers; the refusal and empty tests are the anti-collapse battery's,
  `decisions.collapse.probe_stats`, so the report's two places call the same thing a refusal).
- Canary calls: the share of routing keys that went to SSD, with its interval, against the declared share: the
  routing check on real traffic.
- Shadow calls are pairs (base and SSD answered the same request): the battery compares them paired by request
  (length, repetition, refusals, empty answers, with bootstrap or score intervals) and the pairs are listed.
- Answers that carry a known problem (`metadata.ssd_problem_id`, e.g. `ssd canary-replay`) are run against the
  problem's tests in the sandbox (`scoring.score_samples`): pass rate per checkpoint over problems with its score
  interval, the paired difference over the problems both answered (`statistics.bootstrap.paired_difference`), and
  the offline eval's pass@1 beside them: what the endpoint serves should score like what was evaluated.

Latency percentiles are the observed ones (no interval): they depend on the machine and the load at the time.
"""
from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..evaluation.decisions.collapse import probe_stats, run_battery
from ..evaluation.sandbox.runner import SandboxConfig
from ..evaluation.scoring import score_samples
from ..evaluation.statistics.bootstrap import mean_ci, paired_difference
from ..problems import Problem
from .routing import BASE, CANARY, CHECKPOINTS, SHADOW, SSD

SCHEMA = "megatron-ssd/canary-report/v1"
MAX_PAIRS_LISTED = 200
MAX_REASONS = 5


def answers_of(calls: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every answer a checkpoint gave, one row per call and role ("served" | "shadow")."""
    out = []
    for call in calls:
        if call.get("status") == 200 and call.get("checkpoint") in CHECKPOINTS and not call.get("error"):
            out.append(_answer(call, call, call["checkpoint"], "served"))
        shadow = call.get("shadow")
        if isinstance(shadow, dict) and shadow.get("status") == 200 and not shadow.get("error"):
            out.append(_answer(call, shadow, SSD, "shadow"))
    return out


def _answer(call: Mapping[str, Any], part: Mapping[str, Any], checkpoint: str, role: str) -> dict[str, Any]:
    outputs = part.get("outputs") or []
    first = outputs[0] if outputs else {}
    text = first.get("text")
    return {"request_id": call.get("request_id"), "checkpoint": checkpoint, "role": role, "mode": call.get("mode"),
            "latency_s": part.get("latency_s"), "ttft_s": part.get("ttft_s"),
            "completion_tokens": part.get("completion_tokens"), "finish_reason": part.get("finish_reason"),
            "text": text, "empty": (not text.strip()) if isinstance(text, str) else first.get("empty"),
            "problem_id": call.get("problem_id"), "sample_idx": call.get("sample_idx")}


def build_report(calls: list[dict[str, Any]], events: list[dict[str, Any]], *,
                 problems: Mapping[str, Problem] | None = None, splits: Mapping[str, str] | None = None,
                 sandbox: SandboxConfig | None = None, offline: Mapping[str, Any] | None = None,
                 ci_level: float = 0.95, bootstrap_samples: int = 2000, seed: int = 0,
                 notes: list[str] | None = None, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The report's dict. `problems` + `sandbox` enable the pass rates (`sandbox` None: not scored);
    `offline`: label -> eval summary, for the offline pass@1 beside the served one."""
    notes = list(notes or [])
    answers = answers_of(calls)
    times = sorted(str(c.get("time")) for c in calls if c.get("time"))
    report: dict[str, Any] = {
        "schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ci_level": ci_level,
        "telemetry": {"records": len(calls), "answered": sum(1 for c in calls if c.get("status") == 200),
                      "first": times[0] if times else None, "last": times[-1] if times else None},
        "modes": dict(Counter(str(c.get("mode")) for c in calls)),
        "mode_changes": [{k: e.get(k) for k in ("time", "mode", "share", "previous", "source", "reason")}
                         for e in events if e.get("event") == "mode"],
        "upstream_down": [{k: e.get(k) for k in ("time", "checkpoint", "reason")}
                          for e in events if e.get("event") == "upstream-down"],
        "errors": dict(Counter(str(c.get("status")) for c in calls if c.get("status") != 200)),
        "fallbacks": _fallbacks(calls),
        "checkpoints": {name: _checkpoint_stats([a for a in answers if a["checkpoint"] == name], ci_level)
                        for name in CHECKPOINTS},
        "canary": _canary(calls, ci_level),
    }
    scores = _score(answers, problems, sandbox, notes, progress) if problems is not None else None
    report["shadow"] = _shadow(calls, answers, scores, ci_level, bootstrap_samples, seed)
    report["pass_rates"] = _pass_rates(answers, scores, splits or {}, offline or {}, ci_level, bootstrap_samples,
                                       seed, sandbox is not None, problems is not None)
    report["notes"] = notes
    return report


# ------------------------------------------------------------------------------------------------ per checkpoint
def _checkpoint_stats(answers: list[dict[str, Any]], ci_level: float) -> dict[str, Any]:
    if not answers:
        return {"answers": 0}
    roles = Counter(a["role"] for a in answers)
    out: dict[str, Any] = {"answers": len(answers), "served": roles.get("served", 0),
                           "shadow": roles.get("shadow", 0),
                           "latency_s": _percentiles([a["latency_s"] for a in answers]),
                           "ttft_s": _percentiles([a["ttft_s"] for a in answers]),
                           "completion_tokens": _percentiles([a["completion_tokens"] for a in answers]),
                           "finish_reasons": dict(Counter(str(a["finish_reason"]) for a in answers))}
    empty = [float(bool(a["empty"])) for a in answers if a["empty"] is not None]
    out["empty"] = _rate(empty, ci_level)
    texts = [a["text"] for a in answers if isinstance(a["text"], str)]
    if texts:
        stats = probe_stats(texts)
        refused = round(stats["refusal_rate"] * len(texts))  # a mean of 0/1 flags: the count, exactly
        out["refusal"] = _rate([1.0] * refused + [0.0] * (len(texts) - refused), ci_level)
        out["repetition_4gram"] = stats["repetition_4gram"]
    else:
        out["refusal"] = None  # log_text=false: no texts to test
    return out


def _percentiles(values: Iterable[Any]) -> dict[str, Any] | None:
    v = np.array([float(x) for x in values if isinstance(x, (int, float))], dtype=np.float64)
    if not v.size:
        return None
    return {"n": int(v.size), "p50": float(np.quantile(v, 0.5)), "p95": float(np.quantile(v, 0.95)),
            "mean": float(v.mean()), "max": float(v.max())}


def _rate(values: list[float], ci_level: float) -> dict[str, Any] | None:
    if not values:
        return None
    return {"count": int(sum(values)), "of": len(values), **mean_ci(values, ci_level)}


def _fallbacks(calls: list[dict[str, Any]]) -> dict[str, Any]:
    reasons = Counter(str((c.get("fallback") or {}).get("reason"))[:160] for c in calls if c.get("fallback"))
    return {"count": sum(reasons.values()), "reasons": dict(reasons.most_common(MAX_REASONS))}


def _canary(calls: list[dict[str, Any]], ci_level: float) -> dict[str, Any] | None:
    """Share of distinct routing keys routed to SSD in canary mode, per declared share."""
    by_share: dict[float, dict[str, str]] = defaultdict(dict)
    for c in calls:
        if c.get("mode") == CANARY and c.get("routed") in CHECKPOINTS and c.get("key_hash"):
            by_share[float(c.get("share") or 0.0)][c["key_hash"]] = c["routed"]
    if not by_share:
        return None
    out = []
    for share, keys in sorted(by_share.items()):
        to_ssd = [float(v == SSD) for v in keys.values()]
        calls_at = [c for c in calls if c.get("mode") == CANARY and float(c.get("share") or 0.0) == share]
        out.append({"declared_share": share, "keys": len(keys), "keys_to_ssd": int(sum(to_ssd)),
                    "calls": len(calls_at), "realised": mean_ci(to_ssd, ci_level)})
    return {"by_share": out}


# --------------------------------------------------------------------------------------------------- scoring
def scorable(answers: list[dict[str, Any]], problems: Mapping[str, Problem]) -> int:
    """How many answers `build_report` would run in the sandbox (for a progress bar)."""
    return sum(1 for a in answers if a["problem_id"] is not None and str(a["problem_id"]) in problems
               and isinstance(a["text"], str))


def _score(answers: list[dict[str, Any]], problems: Mapping[str, Problem], sandbox: SandboxConfig | None,
           notes: list[str], progress: Callable[[int], None] | None) -> dict[int, dict[str, Any]] | None:
    """answer index -> sandbox row, for the answers with a known problem and a text; None when not scored."""
    tagged = [(i, a) for i, a in enumerate(answers) if a["problem_id"] is not None]
    if not tagged:
        return None
    unknown = sorted({str(a["problem_id"]) for _, a in tagged if str(a["problem_id"]) not in problems})
    if unknown:
        notes.append(f"{len(unknown)} problem id(s) in the telemetry are not problems of this run (e.g. "
                     f"{', '.join(unknown[:3])}); their answers are not scored.")
    textless = sum(1 for _, a in tagged if not isinstance(a["text"], str))
    if textless:
        notes.append(f"{textless} tagged answer(s) were logged without text (log_text=false); not scored.")
    todo = [(i, a) for i, a in tagged if str(a["problem_id"]) in problems and isinstance(a["text"], str)]
    if sandbox is None or not todo:
        return None
    records = [{"prompt_id": str(a["problem_id"]), "sample_idx": j, "text": a["text"],
                "num_tokens": a["completion_tokens"], "_where": f"telemetry request {a['request_id']}"}
               for j, (_, a) in enumerate(todo)]
    rows = score_samples({str(a["problem_id"]): problems[str(a["problem_id"])] for _, a in todo}, records, sandbox,
                         progress=progress)
    return {i: row for (i, _), row in zip(todo, rows)}


def _pass_rates(answers: list[dict[str, Any]], scores: dict[int, dict[str, Any]] | None,
                splits: Mapping[str, str], offline: Mapping[str, Any], ci_level: float, samples: int, seed: int,
                sandbox_on: bool, problems_known: bool) -> dict[str, Any]:
    tagged = sum(1 for a in answers if a["problem_id"] is not None)
    if not tagged:
        return {"status": "none", "note": "no answer carried a problem id (replay the eval set with "
                                          "`ssd canary-replay`)."}
    if scores is None:
        why = ("scoring was turned off (score=false)" if problems_known and not sandbox_on
               else "no tagged answer could be scored (see notes)")
        return {"status": "not scored", "tagged_answers": tagged, "note": why}
    counts: dict[str, dict[str, list[int]]] = {name: defaultdict(lambda: [0, 0]) for name in CHECKPOINTS}
    for i, row in scores.items():
        if row.get("outcome") == "no-tests":
            continue
        entry = counts[answers[i]["checkpoint"]][row["prompt_id"]]
        entry[0] += 1
        entry[1] += int(bool(row.get("passed")))
    by_checkpoint = {}
    for name, per in counts.items():
        if not per:
            continue
        values = [c / n for n, c in per.values()]
        by_checkpoint[name] = {"problems": len(per), "answers": sum(n for n, _ in per.values()),
                               "passed": sum(c for _, c in per.values()),
                               **mean_ci(values, ci_level, max_per_problem=min(n for n, _ in per.values()))}
    common = sorted(set(counts[BASE]) & set(counts[SSD]))
    paired = None
    if common:
        a = [counts[BASE][p][1] / counts[BASE][p][0] for p in common]
        b = [counts[SSD][p][1] / counts[SSD][p][0] for p in common]
        per = min(min(counts[BASE][p][0], counts[SSD][p][0]) for p in common)
        paired = paired_difference(a, b, ci_level, samples, seed, max_per_problem=per)
    rows = list(scores.values())
    split_counts = Counter(splits.get(str(answers[i]["problem_id"]), "?") for i in scores)
    return {"status": "scored", "tagged_answers": tagged, "scored_answers": len(scores),
            "isolation": sorted({str(r.get("isolation")) for r in rows}),
            "outcomes": dict(Counter(str(r.get("outcome")) for r in rows)), "splits": dict(split_counts),
            "by_checkpoint": by_checkpoint, "paired_ssd_minus_base": paired,
            "offline_pass@1": {label: (s.get("pass_at_k") or {}).get("1") for label, s in offline.items() if s}}


# ---------------------------------------------------------------------------------------------------- shadow
def _shadow(calls: list[dict[str, Any]], answers: list[dict[str, Any]], scores: dict[int, dict[str, Any]] | None,
            ci_level: float, samples: int, seed: int) -> dict[str, Any] | None:
    shadow_calls = [c for c in calls if c.get("mode") == SHADOW]
    if not shadow_calls:
        return None
    passed = {}
    for i, row in (scores or {}).items():
        passed[(answers[i]["request_id"], answers[i]["role"])] = bool(row.get("passed"))
    by_request: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for a in answers:
        if a["mode"] == SHADOW:
            by_request[a["request_id"]][a["role"]] = a
    pairs = [(rid, r["served"], r["shadow"]) for rid, r in by_request.items() if "served" in r and "shadow" in r]
    skipped = Counter(str((c.get("shadow") or {}).get("skipped") or (c.get("shadow") or {}).get("error"))[:120]
                      for c in shadow_calls if isinstance(c.get("shadow"), dict)
                      and (c["shadow"].get("skipped") or c["shadow"].get("error")))
    out: dict[str, Any] = {"calls": len(shadow_calls), "pairs": len(pairs),
                           "shadow_missing": dict(skipped.most_common(MAX_REASONS))}
    if not pairs:
        return out
    with_text = [(rid, b, s) for rid, b, s in pairs if isinstance(b["text"], str) and isinstance(s["text"], str)]
    out["identical_text"] = sum(1 for _, b, s in with_text if b["text"] == s["text"]) if with_text else None
    tokens = [(b["completion_tokens"], s["completion_tokens"]) for _, b, s in pairs
              if isinstance(b["completion_tokens"], int) and isinstance(s["completion_tokens"], int)]
    if tokens:
        diff = np.array([s - b for b, s in tokens], dtype=np.float64)
        out["completion_tokens_change"] = {"mean": float(diff.mean()), "median": float(np.median(diff)),
                                           "n": int(diff.size)}
    if len(with_text) >= 2:
        ids = [rid for rid, _, _ in with_text]
        base_stats = probe_stats([b["text"] for _, b, _ in with_text],
                                 [b["completion_tokens"] for _, b, _ in with_text], prompt_ids=ids, seed=seed)
        ssd_stats = probe_stats([s["text"] for _, _, s in with_text],
                                [s["completion_tokens"] for _, _, s in with_text], prompt_ids=ids, seed=seed)
        battery = run_battery(base_stats, ssd_stats, ci_level=ci_level, bootstrap_samples=samples, seed=seed)
        out["battery"] = {"alerts": battery["alerts"], "probes": battery["probes"], "method": battery["method"]}
    out["listed"] = [{"request_id": rid, "problem_id": b["problem_id"],
                      "base": _pair_side(b, passed.get((rid, "served"))),
                      "ssd": _pair_side(s, passed.get((rid, "shadow"))),
                      "same_text": (b["text"] == s["text"]) if isinstance(b["text"], str) else None}
                     for rid, b, s in pairs[:MAX_PAIRS_LISTED]]
    return out


def _pair_side(a: Mapping[str, Any], passed: bool | None) -> dict[str, Any]:
    return {"completion_tokens": a["completion_tokens"], "finish_reason": a["finish_reason"],
            "latency_s": a["latency_s"], "empty": a["empty"], "passed": passed}
