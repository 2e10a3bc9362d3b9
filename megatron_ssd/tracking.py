"""wandb naming conventions, derived from the config so that every process of a run lands in the same dashboard.

    project   cluster.wandb_project: one project per experiment family (all presets of a paper, a CPU study)
    group     the experiment, or the sweep: runs whose runs_root is not the default "runs" (a sweep's folder,
              `ssd -m runs_root=runs/tgrid ...`) are grouped as "sweep-<folder name>", so the points and their
              sweep summary sit together
    job_type  the stage ("sample", "train", "evaluate", "report", "sweep-summary")
    name      "<run directory name>/<stage>"; id the same (stable: a resumed stage continues its wandb run)
    config    the resolved config, as `ssd --cfg job` prints it
    mode      cluster.wandb_mode, "offline" by default: nothing leaves the machine until `wandb sync` (docs/WANDB.md)

Config layer: reads only the config; `start_run` imports wandb when called, because wandb is optional and slow to
import. docs/WANDB.md has the dashboard recipe.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .config.schema import SSDConfig

DEFAULT_RUNS_ROOT = "runs"
WANDB_MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class RunSpec:
    """Everything `wandb.init` needs, decided from the config alone."""

    project: str
    group: str
    job_type: str
    name: str
    run_id: str
    mode: str
    entity: str | None
    directory: str
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    def init_kwargs(self) -> dict[str, Any]:
        return {"project": self.project, "group": self.group, "job_type": self.job_type, "name": self.name,
                "id": self.run_id, "mode": self.mode, "entity": self.entity, "dir": self.directory,
                "tags": list(self.tags), "config": self.config, "resume": "allow"}


def _slug(text: str, limit: int = 128) -> str:
    """wandb ids and groups: letters, digits, '-', '_', '.', '/' only."""
    return re.sub(r"[^A-Za-z0-9_./-]+", "-", text)[:limit]


def group_of(cfg: SSDConfig, sweep: str | None = None) -> str:
    if sweep:
        return _slug(f"sweep-{sweep}")
    root = Path(cfg.runs_root)
    if root.name and root.as_posix().rstrip("/") != DEFAULT_RUNS_ROOT:
        return _slug(f"sweep-{root.name}")
    return _slug(cfg.experiment)


def run_spec(cfg: SSDConfig, stage: str, *, run_dir: str | Path, sweep: str | None = None) -> RunSpec:
    """The wandb identity of `stage` of the run in `run_dir` (see the module docstring for the conventions)."""
    run_name = Path(run_dir).name
    resolved = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    tags = (f"arm:{cfg.arm}", f"model:{cfg.model.name}", f"round:{cfg.round}",
            f"T_train:{cfg.sample.temperature:g}", f"top_p:{cfg.sample.top_p:g}", f"T_eval:{cfg.eval.temperature:g}")
    return RunSpec(project=cfg.cluster.wandb_project, group=group_of(cfg, sweep), job_type=stage,
                   name=f"{run_name}/{stage}", run_id=_slug(f"{run_name}-{stage}", 64), mode=cfg.cluster.wandb_mode,
                   entity=cfg.cluster.wandb_entity, directory=str(Path(run_dir)), tags=tags, config=resolved)


def eval_table(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of a wandb.Table of eval summaries: one row per label and k, with the CI bounds."""
    columns = ["label", "model", "temperature", "top_p", "top_k", "k", "pass_at_k", "ci_low", "ci_high",
               "num_problems"]
    rows = []
    for label, s in summaries.items():
        for k, est in sorted(s.get("pass_at_k", {}).items(), key=lambda kv: int(kv[0])):
            rows.append([label, s.get("model"), s.get("temperature"), s.get("top_p"), s.get("top_k"), int(k),
                         est.get("estimate"), est.get("ci_low"), est.get("ci_high"), s.get("num_problems")])
    return columns, rows


def start_run(spec: RunSpec):
    """`wandb.init` with the spec, or None with mode "disabled" (wandb is then never imported)."""
    if spec.mode == "disabled":
        return None
    import wandb  # optional dependency, slow to import: only when a run is started

    Path(spec.directory).mkdir(parents=True, exist_ok=True)
    return wandb.init(**spec.init_kwargs())
