"""ssd canary-report run_dir=DIR [score=true] [render=true]

Summarise what `ssd serve` logged for the run (DIR/serve/telemetry.jsonl) into DIR/serve/canary_report.json and
the run's report (its Promotion section): per checkpoint latency p50/p95, output length, empty and refusal rates
and finish reasons; the canary's realised share of routing keys; shadow pairs compared request by request; and,
for answers that carry an eval problem (`ssd canary-replay`), the pass rate per checkpoint in the sandbox with its
interval, beside the offline eval's. Reads while `ssd serve` runs (the telemetry is append-only).

Arguments:
  run_dir   the run directory (required)
  score     run tagged answers against their problem's tests in the sandbox (true; needs bubblewrap as the
            evaluation does, eval.isolation of the run)
  render    rewrite DIR/report/report.md and .html with the Promotion section (true)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.evaluation.report import render_report
from megatron_ssd.evaluation.report.formatting import estimate_with_ci
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig, resolve_isolation
from megatron_ssd.problems import Problem
from megatron_ssd.rundir import RunDir
from megatron_ssd.serving.canary import answers_of, build_report, scorable
from megatron_ssd.serving.routing import CHECKPOINTS

from .options import parse, wants_help

EXIT_USER_ERROR = 2


@dataclass
class CanaryReportOptions:
    run_dir: str = ""
    score: bool = True
    render: bool = True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv, __doc__):
        return 0
    console = Console(stderr=True)
    try:
        opts = parse(CanaryReportOptions, argv, "ssd canary-report")
        if not opts.run_dir:
            raise ConfigError("ssd canary-report: run_dir=... is required.")
        report = canary_report(RunDir(opts.run_dir), opts, console)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USER_ERROR
    console.print(summary_table(report))
    return 0


def canary_report(run: RunDir, opts: CanaryReportOptions, console: Console) -> dict[str, Any]:
    cfg = run.config()
    notes: list[str] = []
    calls = run.telemetry(notes)
    if not calls:
        raise SSDError(f"{run.telemetry_path}: no telemetry yet; serve the run first (`ssd serve run_dir={run.path}`)"
                       f" and send it traffic, or replay the eval set (`ssd canary-replay run_dir={run.path}`).")
    events = run.serve_events(notes) or []
    table = run.prompts()
    problems = {r["problem_id"]: Problem.from_row(r) for r in table.to_pylist()}
    splits = {r["problem_id"]: r["split"] for r in table.select(["problem_id", "split"]).to_pylist()}
    todo = scorable(answers_of(calls), problems)
    sandbox = None
    if opts.score and todo:
        sandbox = SandboxConfig.from_eval(cfg.eval)
        resolve_isolation(sandbox)  # bubblewrap missing: stops here with the fix (docs/SANDBOX.md), nothing written
    offline = {label: run.eval_summary(label, notes) for label in CHECKPOINTS}
    with Progress(TextColumn("sandbox: scoring tagged answers"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True, disable=sandbox is None) as bar:
        task = bar.add_task("score", total=todo)
        report = build_report(calls, events, problems=problems, splits=splits, sandbox=sandbox, offline=offline,
                              ci_level=cfg.eval.ci_level, bootstrap_samples=cfg.eval.bootstrap_samples,
                              seed=cfg.seed, notes=notes, progress=lambda n: bar.advance(task, n))
    run.write_canary_report(report)
    console.print(f"canary report: {run.canary_report_path}")
    if opts.render:
        result = render_report(run.path)
        console.print(f"report: {result['report_md']} (section Promotion)")
    return report


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"promotion telemetry: {report['telemetry']['records']} calls")
    for col in ("checkpoint", "answers (served/shadow)", "latency p50 / p95 (s)", "tokens p50", "empty", "refusal",
                "pass rate"):
        table.add_column(col)
    rates = (report.get("pass_rates") or {}).get("by_checkpoint") or {}
    for name, c in report["checkpoints"].items():
        if not c.get("answers"):
            table.add_row(name, "0", "—", "—", "—", "—", "—")
            continue
        lat, tok = c.get("latency_s") or {}, c.get("completion_tokens") or {}
        table.add_row(name, f"{c['answers']} ({c['served']}/{c['shadow']})",
                      f"{lat.get('p50', 0):.2f} / {lat.get('p95', 0):.2f}" if lat else "—",
                      f"{tok['p50']:.0f}" if tok else "—", estimate_with_ci(c.get("empty"), percent_sign=True),
                      estimate_with_ci(c.get("refusal"), percent_sign=True, missing="not logged"),
                      estimate_with_ci(rates.get(name), percent_sign=True, missing="—"))
    return table


if __name__ == "__main__":
    sys.exit(main())
