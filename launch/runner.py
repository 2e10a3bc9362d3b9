"""Runs one stage or an arm's chain against a run directory: skips finished stages, times the rest, asks the
training gate (`megatron_ssd.stages.gate_training`) before every training stage, and keeps the libraries' output
in each stage's log (`launch.console`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from megatron_ssd.config import SSDConfig
from megatron_ssd.errors import SSDError
from megatron_ssd.generation.engine import release_engines
from megatron_ssd.rundir import CHAINS, RunDir
from megatron_ssd.runlock import run_lock
from megatron_ssd.stages import StageContext
from megatron_ssd.stages.gate_training import TRAINING_STAGES, GateDecision, decide_training

from .console import print_log_tail, stage_output
from .stages import GENERATING_STAGES, STAGES, requirements


@dataclass
class StageOutcome:
    stage: str
    status: str  # ran | done-before | incomplete | blocked | stopped (by the verdict)
    seconds: float = 0.0
    note: str = ""
    gate: GateDecision | None = None  # set when the training gate stopped this stage


def run_stage(name: str, cfg: SSDConfig, run: RunDir, console: Console) -> StageOutcome:
    with run_lock(run.path, cfg):  # one owner per run directory (megatron_ssd/runlock.py); re-entrant
        return _run_stage(name, cfg, run, console)


def _run_stage(name: str, cfg: SSDConfig, run: RunDir, console: Console) -> StageOutcome:
    info = run.done_info(name)
    if info is not None:
        console.print(f"[dim]{name}: already done at {info['finished']} ({info['seconds']:.1f} s); nothing to do.[/]")
        return StageOutcome(name, "done-before", info["seconds"])
    missing = [r for r in requirements(name, cfg.arm) if not run.is_done(r)]
    if missing:
        raise SSDError(f"stage '{name}' reads the output of {', '.join(missing)}, which has not finished in "
                       f"{run.path}; run `ssd stage={missing[0]} run_dir={run.path}` first (or `ssd run`).")
    gate = decide_training(cfg, run) if name in TRAINING_STAGES else None
    if gate is not None and not gate.proceed:
        return StageOutcome(name, "stopped", note=f"verdict {gate.verdict}", gate=gate)
    if gate is not None and gate.allowed and gate.provisional and name == "sample":
        console.print(f"[yellow]{name}: the verdict {gate.verdict} allows arm={gate.arm}, provisionally (few held-out "
                      "problems; see its weaknesses).[/]")
    if gate is not None and gate.forced:
        run.write_training_override(gate.record())
        console.print(f"[bold yellow]{name}: training forced past verdict {gate.verdict}[/] (force_train=true"
                      + (f": {gate.force_reason}" if gate.force_reason else "") + ")")
    console.rule(f"[bold]{name}[/]: {STAGES[name].description}")
    summary, seconds = _execute(name, cfg, run, console)
    if summary.get("incomplete"):
        return StageOutcome(name, "incomplete", seconds, f"waiting for {summary.get('missing_shards', '?')}")
    if gate is not None and gate.forced:
        summary = {**summary, "forced": True, "overrode_verdict": gate.verdict}
    run.mark_done(name, summary, seconds)
    console.print(f"[green]{name}[/]: done in {seconds:.1f} s" + _headline(summary), highlight=False)
    return StageOutcome(name, "ran", seconds)


def _execute(name: str, cfg: SSDConfig, run: RunDir, console: Console) -> tuple[dict[str, Any], float]:
    """Run a stage's module with the libraries' output in its log; on a failure that is not an `SSDError` (whose
    one paragraph says what happened and names the log where it matters), show the log's tail."""
    module = STAGES[name].load()
    log = run.stage_log(name)
    start = time.perf_counter()
    try:
        with stage_output(log, verbose=cfg.verbose):
            if name not in GENERATING_STAGES:
                release_engines()  # give the cores and memory of an idle vLLM engine back before CPU-heavy stages
            summary = module.run(cfg, StageContext(run=run, console=console))
    except SSDError:
        raise
    except BaseException:
        if not cfg.verbose:
            print_log_tail(console, name, log)
        raise
    return summary, time.perf_counter() - start


def _headline(summary: dict[str, Any]) -> str:
    """A few scalar facts of a stage's summary for its one-line result."""
    facts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
             if k in ("verdict", "num_problems", "num_samples", "kept", "num_bins", "iterations", "final_loss",
                      "tokens_per_s", "labels", "report_md") and v is not None]
    return ("; " + ", ".join(facts)) if facts else ""


def run_chain(cfg: SSDConfig, run: RunDir, console: Console) -> list[StageOutcome]:
    with run_lock(run.path, cfg):  # held across the chain, so no other command slips in between two stages
        return _run_chain(cfg, run, console)


def _run_chain(cfg: SSDConfig, run: RunDir, console: Console) -> list[StageOutcome]:
    outcomes: dict[str, StageOutcome] = {}
    stopped: StageOutcome | None = None
    for name in CHAINS[cfg.arm]:
        if stopped is not None:
            outcomes[name] = StageOutcome(name, "stopped", note=f"verdict {stopped.gate.verdict}")
            continue
        blocked_by = [r for r in requirements(name, cfg.arm) if outcomes.get(r) and outcomes[r].status not in
                      ("ran", "done-before")]
        if blocked_by:
            outcomes[name] = StageOutcome(name, "blocked", note=f"needs {', '.join(blocked_by)}")
            continue
        outcomes[name] = run_stage(name, cfg, run, console)
        if outcomes[name].status == "stopped":
            stopped = outcomes[name]
    if stopped is not None and "report" in outcomes:
        write_partial_report(cfg, run, console)
        outcomes["report"].note += "; written from what exists"
    return list(outcomes.values())


def write_partial_report(cfg: SSDConfig, run: RunDir, console: Console) -> None:
    """The report of what exists when the verdict stopped the chain. Not marked done: a forced rerun that trains
    and evaluates writes the full report over it."""
    console.rule("[bold]report[/]: what exists (the verdict stopped the chain)")
    summary, seconds = _execute("report", cfg, run, console)
    console.print(f"[green]report[/]: written in {seconds:.1f} s" + _headline(summary), highlight=False)


def outcome_table(outcomes: list[StageOutcome], run: RunDir) -> Table:
    table = Table(title=f"run {run.path}")
    for col in ("stage", "status", "seconds", "note"):
        table.add_column(col)
    style = {"ran": "green", "done-before": "green", "incomplete": "yellow", "blocked": "red", "stopped": "yellow"}
    for o in outcomes:
        table.add_row(o.stage, f"[{style[o.status]}]{o.status}[/]", f"{o.seconds:.1f}", o.note)
    return table


def chain_complete(outcomes: list[StageOutcome]) -> bool:
    return all(o.status in ("ran", "done-before") for o in outcomes)


def gate_stop(outcomes: list[StageOutcome]) -> GateDecision | None:
    """The gate decision that stopped the chain, if the verdict stopped it."""
    return next((o.gate for o in outcomes if o.gate is not None), None)
