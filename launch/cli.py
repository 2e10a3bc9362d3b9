"""`ssd`: the Hydra entry point. Hydra lives only in this process; stage workers and training ranks read the
resolved config stored in the run directory.

    ssd run [overrides]                 the whole chain of `arm` on `experiment` (default: cpu_default)
    ssd <stage> [overrides]             one stage, e.g. `ssd sample run_dir=runs/...`
    ssd stage=<stage> run_dir=<dir>     the same in Hydra's own spelling
    ssd --cfg job                       print the composed config
    ssd run -m sample.temperature=1.2,1.6   a Hydra multirun sweep (one run directory per point)
    ssd sweep-summary DIR               one table over a sweep's run directories (launch/sweep_summary.py)
    ssd select ...                      choose a decoding from a sweep (megatron_ssd/selection/cli.py)
    ssd serve run_dir=DIR [mode=shadow]  base and SSD behind one OpenAI endpoint (launch/serve.py, docs/SERVING.md);
                                        ssd serve-mode, ssd canary-replay, ssd canary-report: flip, replay, summarise
    ssd preflight experiment=... [--strict]   check a GPU node before sbatch: one table, exit 0/1 (launch/preflight.py)
    ssd -v run ...                      show everything libraries print live (default: <run>/logs/<stage>.log)

Exit status: 0 done; 2 user error (one paragraph, no traceback); 3 incomplete (a stage could not run or waits
for other engines); 4 stopped by the precondition verdict (training not allowed for the arm; `force_train=true`
overrides); anything else is a failure.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from megatron_ssd.config import OPERATIONAL_KEYS, SSDConfig, register, validate
from megatron_ssd.errors import SSDError
from megatron_ssd.rounds import check_round2_gate
from megatron_ssd.rundir import RunDir

from .console import attach_to_terminal
from . import rehearsal
from .overrides import check_overrides, is_override, override_key
from .results_table import final_panel, stopped_panel
from .runner import chain_complete, gate_stop, outcome_table, run_chain, run_stage
from .stages import STAGE_NAMES

register()
console = Console(stderr=True)  # `main` points it at a duplicate of the terminal fd (launch/console.py)
EXIT_USER_ERROR = 2
EXIT_INCOMPLETE = 3
EXIT_STOPPED_BY_VERDICT = 4  # a clean stop, not a failure: scripts tell it apart from 1-3
# Subcommands with their own argparse entry points, dispatched before Hydra.
SUBCOMMANDS = {
    "sweep-summary": "megatron_ssd.launch.sweep_summary",
    "select": "megatron_ssd.selection.cli",
    "preflight": "megatron_ssd.launch.preflight",
    "serve": "megatron_ssd.launch.serve",
    "serve-mode": "megatron_ssd.launch.serve_mode",
    "canary-replay": "megatron_ssd.launch.canary_replay",
    "canary-report": "megatron_ssd.launch.canary_report",
    "mechanism": "megatron_ssd.launch.mechanism",
}
VERBOSE_FLAGS = ("-v", "--verbose")


def resolve_config(cfg: DictConfig, task_overrides: list[str]) -> SSDConfig:
    """Validate the composed config; reopening an existing run with no semantic overrides uses its stored config."""
    composed = validate(cfg, STAGE_NAMES)
    semantic = [o for o in task_overrides if override_key(o) not in OPERATIONAL_KEYS]
    if composed.run_dir and not semantic:
        run = RunDir(composed.run_dir)
        if run.read_manifest() is not None:
            stored = OmegaConf.structured(run.config())
            for key in OPERATIONAL_KEYS:  # this invocation's operational choices win
                OmegaConf.update(stored, key, OmegaConf.select(OmegaConf.structured(composed), key), merge=False)
            return validate(stored, STAGE_NAMES)
    return composed


def execute(cfg: SSDConfig, rehearsal_changes: list | None = None) -> int:
    if cfg.round == 2:
        gate = check_round2_gate(cfg)
        console.print("[green]round-2 gate passed:[/] " + "; ".join(gate["reasons"]))
    run = RunDir.open(cfg)
    rehearsal.record(run, cfg, rehearsal_changes or [])
    console.print(f"run directory: [bold]{run.path}[/]  (experiment {cfg.experiment}, arm {cfg.arm})")
    if cfg.stage == "run":
        outcomes = run_chain(cfg, run, console)
        console.print(outcome_table(outcomes, run))
        if any(o.stage == "evaluate" and o.status in ("ran", "done-before") for o in outcomes):
            console.print(final_panel(cfg, run))
        stop = gate_stop(outcomes)
        if stop is not None:
            console.print(stopped_panel(stop, run))
            return EXIT_STOPPED_BY_VERDICT
        if not chain_complete(outcomes):
            console.print("[bold yellow]PIPELINE INCOMPLETE:[/] the stages marked above did not run; "
                          "their outputs do not exist.")
            return EXIT_INCOMPLETE
        return 0
    outcome = run_stage(cfg.stage, cfg, run, console)
    if outcome.gate is not None:
        console.print(stopped_panel(outcome.gate, run))
        return EXIT_STOPPED_BY_VERDICT
    if outcome.status == "incomplete":
        # e.g. one engine of a Slurm array finished its shards while others still run: success for this task.
        console.print(f"[yellow]{cfg.stage}: this process's part is done; the stage is not complete yet "
                      f"({outcome.note}). Rerun `ssd {cfg.stage} run_dir={run.path}` once the rest has finished.[/]")
    return 0


def secondary_sweep_task(mode: RunMode | None, env: Mapping[str, str]) -> bool:
    """A sweep point on Slurm (hydra_conf/cluster/slurm.yaml) is one job of parallel.nnodes nodes, one task per
    node, and submitit calls the job function in every task: task 0 runs the point's chain, the others only hold
    their node for the `srun --overlap ... torchrun` step that task 0's train stage starts across the allocation."""
    return mode == RunMode.MULTIRUN and int(env.get("SLURM_PROCID") or 0) > 0


def hydra_task(cfg: DictConfig) -> None:
    if secondary_sweep_task(HydraConfig.get().mode, os.environ):
        console.print(f"[dim]sweep point {HydraConfig.get().job.num}, Slurm task {os.environ['SLURM_PROCID']}: this "
                      "node serves the training step that task 0 starts; task 0 runs the stages.[/]")
        return
    try:
        overrides = list(HydraConfig.get().overrides.task)
        # rehearsal=true: the preset rewritten into its CPU rehearsal, its files written (launch/rehearsal.py)
        changes = rehearsal.prepare(cfg, {override_key(o) for o in overrides})
        if changes:
            console.print(f"[bold yellow]REHEARSAL[/] of {cfg.experiment.removesuffix('-rehearsal')}: "
                          f"{len(changes)} values changed (manifest.json \"rehearsal\"); not a result.")
        code = execute(resolve_config(cfg, overrides), changes)
    except SSDError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        console.print(f"[bold red]error:[/] {exc}")
        console.print("[dim](set HYDRA_FULL_ERROR=1 for the traceback)[/]")
        code = EXIT_USER_ERROR
    if code:
        sys.exit(code)


# The task function stays a module attribute under its own name, so that submitit (`cluster=slurm` sweeps) pickles
# it by reference; reachable only as the decorated `hydra_main`, cloudpickle would send it by value with this
# module's console (a lock and the terminal's file) and the sweep would stop before submitting a point.
hydra_main = hydra.main(version_base="1.3", config_path="pkg://megatron_ssd.hydra_conf",
                        config_name="config")(hydra_task)


def _add_overrides(argv: list[str], extra: list[str]) -> list[str]:
    """`extra` after the overrides already in `argv`, in the same run: argparse takes the overrides as one run of
    positional arguments, so `ssd run a=1 --cfg job` must not become `a=1 --cfg job stage=run`."""
    at = next((i for i, a in enumerate(argv) if is_override(a)), len(argv))
    while at < len(argv) and is_override(argv[at]):
        at += 1
    return [*argv[:at], *extra, *argv[at:]]


def _translate_argv(argv: list[str]) -> list[str]:
    """Accept `ssd run ...`, `ssd <stage> ...` and `-v` besides Hydra's `stage=<stage>` and `verbose=true`."""
    if any(a in VERBOSE_FLAGS for a in argv):
        argv = _add_overrides([a for a in argv if a not in VERBOSE_FLAGS], ["verbose=true"])
    if argv and not argv[0].startswith("-") and "=" not in argv[0]:
        word = argv[0]
        if word != "run" and word not in STAGE_NAMES:
            console.print(f"[bold red]error:[/] unknown command {word!r}; use `run`, a stage ({', '.join(STAGE_NAMES)})"
                          f" or {' / '.join(SUBCOMMANDS)} (see `ssd --help`).")
            sys.exit(EXIT_USER_ERROR)
        return _add_overrides(argv[1:], [f"stage={word}"])
    return argv


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        # why: imported only when asked for; neither belongs on the start-up path of `ssd run`
        sys.exit(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]))
    attach_to_terminal(console)
    argv = _translate_argv(argv)
    try:
        check_overrides(argv)  # before Hydra: an unknown key, swept or not, is one paragraph (launch/overrides.py)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(EXIT_USER_ERROR)
    sys.argv = [sys.argv[0], *argv]
    hydra_main()


if __name__ == "__main__":
    main()
