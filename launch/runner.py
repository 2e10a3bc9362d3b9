"""Runs one stage or an arm's chain against a run directory: skips finished stages, times the rest."""
from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from megatron_ssd.config import SSDConfig
from megatron_ssd.errors import SSDError, StageUnavailable
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext

from megatron_ssd.generation.engine import release_engines

from .stages import CHAINS, GENERATING_STAGES, STAGES, requirements


@dataclass
class StageOutcome:
    stage: str
    status: str  # ran | done-before | incomplete | not-available | blocked
    seconds: float = 0.0
    note: str = ""


def run_stage(name: str, cfg: SSDConfig, run: RunDir, console: Console) -> StageOutcome:
    info = run.done_info(name)
    if info is not None:
        console.print(f"[dim]{name}: already done at {info['finished']} ({info['seconds']:.1f} s); nothing to do.[/]")
        return StageOutcome(name, "done-before", info["seconds"])
    missing = [r for r in requirements(name, cfg.arm) if not run.is_done(r)]
    if missing:
        raise SSDError(f"stage '{name}' reads the output of {', '.join(missing)}, which has not finished in "
                       f"{run.path}; run `ssd stage={missing[0]} run_dir={run.path}` first (or `ssd run`).")
    module = STAGES[name].load()
    if name not in GENERATING_STAGES:
        release_engines()  # give the cores and memory of an idle vLLM engine back before CPU-heavy stages
    console.rule(f"[bold]{name}[/]: {STAGES[name].description}")
    start = time.perf_counter()
    summary = module.run(cfg, StageContext(run=run, console=console))
    seconds = time.perf_counter() - start
    if summary.get("incomplete"):
        return StageOutcome(name, "incomplete", seconds, f"waiting for {summary.get('missing_shards', '?')}")
    run.mark_done(name, summary, seconds)
    return StageOutcome(name, "ran", seconds)


def run_chain(cfg: SSDConfig, run: RunDir, console: Console) -> list[StageOutcome]:
    outcomes: dict[str, StageOutcome] = {}
    for name in CHAINS[cfg.arm]:
        blocked_by = [r for r in requirements(name, cfg.arm) if outcomes.get(r) and outcomes[r].status not in
                      ("ran", "done-before")]
        if blocked_by:
            outcomes[name] = StageOutcome(name, "blocked", note=f"needs {', '.join(blocked_by)}")
            continue
        try:
            outcomes[name] = run_stage(name, cfg, run, console)
        except StageUnavailable as exc:
            console.print(f"[yellow]{exc}[/]")
            outcomes[name] = StageOutcome(name, "not-available", note=STAGES[name].arrives_with)
    return list(outcomes.values())


def outcome_table(outcomes: list[StageOutcome], run: RunDir) -> Table:
    table = Table(title=f"run {run.path}")
    for col in ("stage", "status", "seconds", "note"):
        table.add_column(col)
    style = {"ran": "green", "done-before": "green", "incomplete": "yellow", "not-available": "red", "blocked": "red"}
    for o in outcomes:
        table.add_row(o.stage, f"[{style[o.status]}]{o.status}[/]", f"{o.seconds:.1f}", o.note)
    return table


def chain_complete(outcomes: list[StageOutcome]) -> bool:
    return all(o.status in ("ran", "done-before") for o in outcomes)
