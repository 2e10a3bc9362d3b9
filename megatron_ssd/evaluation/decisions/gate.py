"""The round-2 gate: only sample a second round from the round-1 model when round 1 clearly helped and nothing
collapsed (docs/CONTRACTS.md, "eval/").

Pass iff all of:
1. lift: round-1 pass@1 − base pass@1 ≥ `min_lift_pp` (default 2 pp) on the held-out set;
2. significance: the two pass@1 CIs do not overlap, *or* the paired interval of the difference (same
   problems, `scoring.paired_passk`) excludes 0 — the paired test is the more powerful of the two and is enough;
3. no alerts from the anti-collapse battery (`collapse.run_battery`); a battery that was not run fails the gate,
   because "all probes in tolerance" must be shown, not assumed.

Console use (exit status 0 = pass, 1 = fail, 2 = inputs missing/invalid):

    python -m megatron_ssd.evaluation.decisions.gate RUN_DIR [--min-lift-pp 2] [--base base] [--model ssd]

It reads RUN_DIR/eval/<base>/summary.json, RUN_DIR/eval/<model>/summary.json and the battery from
RUN_DIR/eval/<model>/collapse.json (or computes it when both arms' results.jsonl rows carry `text`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping

from ...errors import SSDError
from ...rundir import RunDir
from ..scoring import paired_passk
from .collapse import probe_stats, run_battery

DEFAULT_MIN_LIFT_PP = 2.0


def evaluate_gate(base: Mapping[str, Any], round1: Mapping[str, Any], collapse: Mapping[str, Any] | None, *,
                  min_lift_pp: float = DEFAULT_MIN_LIFT_PP, ci_level: float | None = None,
                  bootstrap_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Gate decision from two summaries (`scoring.summarize` schema) and a collapse battery result.

    CI settings default to the ones recorded in round1's summary (`bootstrap`: the run's configuration).
    """
    reasons: list[str] = []
    b1, r1 = (base.get("pass_at_k") or {}).get("1"), (round1.get("pass_at_k") or {}).get("1")
    if b1 is None or r1 is None:
        return {"passed": False, "reasons": ["pass@1 missing from the base or round-1 summary"], "lift_pp": None}
    lift_pp = 100 * (r1["estimate"] - b1["estimate"])
    paired = paired_passk(base, round1, 1, ci_level, bootstrap_samples, seed)
    overlap = not (r1["ci_low"] > b1["ci_high"] or b1["ci_low"] > r1["ci_high"])
    lift_ok = lift_pp >= min_lift_pp
    paired_ok = paired["ci_low"] > 0
    significant = (not overlap and r1["estimate"] > b1["estimate"]) or paired_ok
    reasons.append(f"{'ok' if lift_ok else 'FAIL'}: pass@1 lift {lift_pp:+.2f} pp "
                   f"({100 * b1['estimate']:.2f}% -> {100 * r1['estimate']:.2f}%; need >= {min_lift_pp:g} pp)")
    reasons.append(f"{'ok' if significant else 'FAIL'}: CIs {'overlap' if overlap else 'do not overlap'} "
                   f"(base [{100 * b1['ci_low']:.2f}, {100 * b1['ci_high']:.2f}], round 1 "
                   f"[{100 * r1['ci_low']:.2f}, {100 * r1['ci_high']:.2f}]); paired Δ CI "
                   f"[{100 * paired['ci_low']:+.2f}, {100 * paired['ci_high']:+.2f}] pp "
                   f"{'excludes' if paired_ok else 'includes'} 0 over {paired['num_problems']} problems")
    if collapse is None:
        probes_ok = False
        reasons.append("FAIL: the anti-collapse battery was not run for round 1")
    else:
        alerts = list(collapse.get("alerts", []))
        probes_ok = not alerts
        reasons.append("ok: all collapse probes in tolerance" if probes_ok else
                       f"FAIL: {len(alerts)} collapse alert(s): " + "; ".join(a["message"] for a in alerts))
    return {"passed": bool(lift_ok and significant and probes_ok), "reasons": reasons, "lift_pp": lift_pp,
            "min_lift_pp": min_lift_pp, "ci_overlap": overlap, "paired": paired,
            "collapse_alerts": None if collapse is None else len(collapse.get("alerts", []))}


# ------------------------------------------------------------------------------------------ run-dir loading
def load_collapse(run: RunDir, base_label: str, model_label: str) -> dict[str, Any] | None:
    """The stored battery result, or one computed from both arms' results.jsonl texts, or None."""
    stored = run.collapse(model_label)
    if stored is not None:
        return stored
    arms = []
    for label in (base_label, model_label):
        rows = run.eval_results(label)
        if not rows or any("text" not in r for r in rows):
            return None
        arms.append(probe_stats([r["text"] for r in rows], [r.get("num_tokens") for r in rows],
                                [r["prompt_id"] for r in rows]))
    base_summary, model_summary = (_summary(run, label) for label in (base_label, model_label))
    return run_battery(arms[0], arms[1], base_summary=base_summary, model_summary=model_summary)


def gate_run_dir(run_dir: str | Path, *, base_label: str = "base", model_label: str = "ssd",
                 min_lift_pp: float | None = None) -> dict[str, Any]:
    run = RunDir(run_dir)
    base, model = _summary(run, base_label), _summary(run, model_label)
    if min_lift_pp is None:
        min_lift_pp = configured_min_lift(run)
    return evaluate_gate(base, model, load_collapse(run, base_label, model_label), min_lift_pp=min_lift_pp)


def configured_min_lift(run: RunDir) -> float:
    """`eval.gate_min_lift_pp` from the run's stored config when it has one, else the default."""
    try:
        return float(run.config_value("eval.gate_min_lift_pp", DEFAULT_MIN_LIFT_PP))
    except (SSDError, TypeError, ValueError):
        return DEFAULT_MIN_LIFT_PP


def _summary(run: RunDir, label: str) -> dict[str, Any]:
    summary = run.eval_summary(label)
    if summary is None:
        raise SSDError(f"{run.eval_dir(label) / 'summary.json'} is missing; run the evaluate stage for this arm "
                       "first.")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_ssd.evaluation.decisions.gate", description="the round-2 gate")
    p.add_argument("run_dir")
    p.add_argument("--min-lift-pp", type=float, default=None)
    p.add_argument("--base", default="base", help="eval label of the base model")
    p.add_argument("--model", default="ssd", help="eval label of the round-1 model")
    args = p.parse_args(argv)
    try:
        result = gate_run_dir(args.run_dir, base_label=args.base, model_label=args.model,
                              min_lift_pp=args.min_lift_pp)
    except SSDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"round-2 gate: {'PASS' if result['passed'] else 'FAIL'}")
    for reason in result["reasons"]:
        print(f"  - {reason}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
