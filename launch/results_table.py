"""The table `ssd run` ends with: pass@1 and pass@k with CIs for base, decode-only and SSD, the paired deltas, the
verdict, collapse alerts and the report's path, all read back from the run directory (so a rerun prints it again)."""
from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from megatron_ssd.config import SSDConfig
from megatron_ssd.evaluation.report.arms import arm_labels
from megatron_ssd.evaluation.report.formatting import delta_ci, estimate_with_ci, pp
from megatron_ssd.evaluation.report.sections import SMALL_RUN
from megatron_ssd.evaluation.scoring import paired_passk
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages.gate_training import GateDecision

DISPLAY = {"base": "base", "decode-only": "decode-only", "ssd": "SSD"}


def final_panel(cfg: SSDConfig, run: RunDir) -> Panel:
    by_label = {label: s for label in run.eval_labels() if (s := run.eval_summary(label)) is not None}
    labels = arm_labels(by_label, cfg.sample.temperature)
    shown = [arm for arm in DISPLAY if arm != "ssd" or cfg.arm != "decode_only"]
    summaries = {DISPLAY[arm]: by_label.get(labels.get(arm, "")) for arm in shown}
    ks = sorted({int(k) for s in summaries.values() if s for k in s.get("pass_at_k", {})})
    pct = int(100 * cfg.eval.ci_level)
    table = Table(title=f"{cfg.experiment}: pass@k (%) [{pct}% CI] on {_num_problems(summaries)} held-out problems, "
                        f"n={cfg.eval.n}")
    table.add_column("arm")
    table.add_column("decoding")
    for k in ks:
        table.add_column(f"pass@{k}")
    for arm, s in summaries.items():
        if s is None:
            table.add_row(arm, "not run", *["-"] * len(ks))
            continue
        decoding = f"T={s.get('temperature')} top-k={s.get('top_k')} top-p={s.get('top_p')}"
        table.add_row(arm, decoding, *[estimate_with_ci(s["pass_at_k"].get(str(k))) for k in ks])

    lines = []
    base = summaries.get("base")
    for arm in ("SSD", "decode-only"):
        other = summaries.get(arm)
        if base and other:
            for k in (ks[0], ks[-1]) if ks else ():
                d = paired_passk(base, other, k, cfg.eval.ci_level, cfg.eval.bootstrap_samples, cfg.seed)
                lines.append(f"{arm} - base, pass@{k}: {pp(d['delta'], signed=True)} pp {delta_ci(d)} "
                             f"(paired over {d['num_problems']} problems, {d['ci_method']}, p={d['p_value']:.3f})")
    if summaries.get("SSD") and summaries.get("decode-only"):
        d = paired_passk(summaries["decode-only"], summaries["SSD"], 1, cfg.eval.ci_level, cfg.eval.bootstrap_samples,
                         cfg.seed)
        lines.append(f"SSD - decode-only, pass@1: {pp(d['delta'], signed=True)} pp {delta_ci(d)}")
    forced = forced_line(run)
    if forced:
        lines.insert(0, f"[bold yellow]{forced}[/]")
    verdict = run.verdict()
    if verdict:
        lines.append(f"verdict (before training): {verdict.get('verdict')}: {verdict.get('reason', '')}")
    collapse = run.collapse("ssd")
    if collapse is not None:
        alerts = collapse.get("alerts", [])
        lines.append("collapse probes: " + ("all within tolerance" if not alerts else
                                            "; ".join(str(a.get("message", a)) for a in alerts)))
    report = run.report_dir / "report.md"
    lines.append(f"report: {report if report.exists() else 'not written'}")
    if (_num_problems(summaries) or 0) < SMALL_RUN:
        lines.append(f"note: fewer than {SMALL_RUN} eval problems: confidence intervals are wide; scale with "
                     "eval.n=... and data.max_eval_problems=... / another eval set.")
    return Panel(Group(table, *lines), title="SSD result", expand=False)


def forced_line(run: RunDir) -> str | None:
    """One sentence when training was forced past the verdict (`force_train`), else None."""
    record = run.training_override(problems=[])
    if not record:
        return None
    why = record.get("force_reason") or "no reason given"
    return (f"TRAINING FORCED: the verdict {record.get('overrode_verdict')} did not allow arm={record.get('arm')}; "
            f"force_train=true trained anyway ({why}). The SSD numbers are not a verdict-backed result.")


def stopped_panel(gate: GateDecision, run: RunDir) -> Panel:
    """What `ssd run` ends with when the verdict does not let the arm train."""
    report = run.report_dir / "report.md"
    lines = [f"[bold]verdict {gate.verdict}[/]: {gate.reason}",
             f"suggested instead: {gate.alternative or 'see the report'}",
             f"arm={gate.arm} trains on {gate.allowed_verdicts()}: sampling and training were not started "
             "(exit status 4: stopped by the verdict).",
             "to train anyway: rerun the same command with force_train=true force_reason='<why>' "
             "(recorded in the run directory and stated in the report).",
             f"report: {report if report.exists() else 'not written'}"]
    return Panel(Group(*lines), title="SSD stopped by the precondition verdict", expand=False)


def _num_problems(summaries: dict[str, Any]) -> int | None:
    return next((s.get("num_problems") for s in summaries.values() if s), None)
