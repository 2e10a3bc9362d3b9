"""`ssd`: the Hydra entry point. Hydra lives only in this process; stage workers and training ranks read the
resolved config stored in the run directory.

    ssd run [overrides]                 the whole chain of `arm` on `experiment` (default: cpu_default)
    ssd <stage> [overrides]             one stage, e.g. `ssd sample run_dir=runs/...`
    ssd stage=<stage> run_dir=<dir>     the same in Hydra's own spelling
    ssd --cfg job                       print the composed config
    ssd run -m sample.temperature=1.2,1.6   a Hydra multirun sweep (one run directory per point)
"""
from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.logging import RichHandler

from megatron_ssd.config import OPERATIONAL_KEYS, SSDConfig, register, validate
from megatron_ssd.errors import SSDError
from megatron_ssd.rounds import check_round2_gate
from megatron_ssd.rundir import RunDir

from .results_table import final_panel
from .runner import chain_complete, outcome_table, run_chain, run_stage
from .stages import STAGE_NAMES

register()
console = Console(stderr=True)
EXIT_USER_ERROR = 2
EXIT_INCOMPLETE = 3


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def resolve_config(cfg: DictConfig, task_overrides: list[str]) -> SSDConfig:
    """Validate the composed config; reopening an existing run with no semantic overrides uses its stored config."""
    composed = validate(cfg, STAGE_NAMES)
    semantic = [o for o in task_overrides if _override_key(o) not in OPERATIONAL_KEYS]
    if composed.run_dir and not semantic:
        run = RunDir(composed.run_dir)
        if run.read_manifest() is not None:
            stored = OmegaConf.merge(OmegaConf.structured(SSDConfig), run.stored_config())
            for key in OPERATIONAL_KEYS:  # this invocation's operational choices win
                OmegaConf.update(stored, key, OmegaConf.select(OmegaConf.structured(composed), key), merge=False)
            return validate(stored, STAGE_NAMES)
    return composed


def execute(cfg: SSDConfig) -> int:
    if cfg.round == 2:
        gate = check_round2_gate(cfg)
        console.print("[green]round-2 gate passed:[/] " + "; ".join(gate["reasons"]))
    run = RunDir.open(cfg)
    console.print(f"run directory: [bold]{run.path}[/]  (experiment {cfg.experiment}, arm {cfg.arm})")
    if cfg.stage == "run":
        outcomes = run_chain(cfg, run, console)
        console.print(outcome_table(outcomes, run))
        if any(o.stage == "evaluate" and o.status in ("ran", "done-before") for o in outcomes):
            console.print(final_panel(cfg, run.path))
        if not chain_complete(outcomes):
            console.print("[bold yellow]PIPELINE INCOMPLETE:[/] the stages marked above did not run; "
                          "their outputs do not exist.")
            return EXIT_INCOMPLETE
        return 0
    outcome = run_stage(cfg.stage, cfg, run, console)
    if outcome.status == "incomplete":
        # e.g. one engine of a Slurm array finished its shards while others still run: success for this task.
        console.print(f"[yellow]{cfg.stage}: this process's part is done; the stage is not complete yet "
                      f"({outcome.note}). Rerun `ssd {cfg.stage} run_dir={run.path}` once the rest has finished.[/]")
    return 0


@hydra.main(version_base="1.3", config_path="pkg://megatron_ssd.hydra_conf", config_name="config")
def hydra_main(cfg: DictConfig) -> None:
    try:
        resolved = resolve_config(cfg, list(HydraConfig.get().overrides.task))
        code = execute(resolved)
    except SSDError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        console.print(f"[bold red]error:[/] {exc}")
        console.print("[dim](set HYDRA_FULL_ERROR=1 for the traceback)[/]")
        code = EXIT_USER_ERROR
    if code:
        sys.exit(code)


def _translate_argv(argv: list[str]) -> list[str]:
    """Accept `ssd run ...` and `ssd <stage> ...` besides Hydra's `stage=<stage>`."""
    if argv and not argv[0].startswith("-") and "=" not in argv[0]:
        word = argv[0]
        if word != "run" and word not in STAGE_NAMES:
            console.print(f"[bold red]error:[/] unknown command {word!r}; use `run` or a stage: {', '.join(STAGE_NAMES)}"
                          " (see `ssd --help`).")
            sys.exit(EXIT_USER_ERROR)
        return [f"stage={word}", *argv[1:]]
    return argv


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console)])
    sys.argv = [sys.argv[0], *_translate_argv(sys.argv[1:])]
    hydra_main()


if __name__ == "__main__":
    main()
