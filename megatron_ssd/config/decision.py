"""`decision` group: what a run is meant to decide, declared before it spends anything.

SSD is one option among several (curated SFT, rejection-sampling SFT, DPO, RL with a verifier); a team adopts it
when it beats what they would otherwise run on accuracy per device-hour, with a rollback ready. So a run declares,
up front: the task family and why it matters, the comparator (another arm of this tool, or an external result
file), the budget, the cost of failure and the rollback. The declaration is part of the config hash on purpose:
changing the comparator or the budget after seeing the numbers is exactly what declaring them up front prevents.

`DecisionConfig.problems()` is the only place these rules live; `config/validate.py` calls it. GPU presets set
`decision.required: true`, so an undeclared field refuses the run before any stage starts (the embedded CPU
default fills every field in). The ledger (`evaluation/decisions/ledger.py`) reads the comparator file through
`load_comparator`.

Comparator file (JSON, `decision.comparator.path`), the numbers of the alternative on the same eval set:

    {"name": "rejection-sampling SFT",          optional, shown in the report
     "pass_at_k": {"1": 0.41, "10": 0.62},      required: fractions in [0, 1]; "1" is required; a value may also be
                                                {"estimate": 0.41, "ci_low": 0.37, "ci_high": 0.45}
     "gpu_hours": 120.0,                        exactly one of gpu_hours / cpu_core_hours: what producing it cost
     "source": "internal run 2025-06-01"}       optional: where the numbers come from
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

COMPARATOR_KINDS = ("arm", "file")
# Arms of this tool a run can be compared against (`config.schema.ARMS`; decode_only is measured in every run).
COMPARATOR_ARMS = ("minimal", "verifier_aware", "decode_only")
COST_KEYS = {"gpu_hours": "gpu", "cpu_core_hours": "cpu"}


@dataclass
class ComparatorConfig:
    # "arm" (another arm of this tool) | "file" (an external result) | "" (not declared).
    kind: str = ""
    # kind=arm: minimal | verifier_aware | decode_only. decode_only is measured in every run (the base model at the
    # training decoding); the others come from their own run directory, `run_dir`, evaluated on the same problems.
    arm: str = ""
    run_dir: str | None = None
    # kind=file: the JSON result file described in this module's docstring.
    path: str | None = None


@dataclass
class RollbackConfig:
    # The checkpoint that serves today and that a failed adoption returns to (an HF folder, hub id or registry tag).
    base_checkpoint: str = ""
    # The one config change that restores it, written as the operator would apply it
    # (e.g. "serving.model=Qwen/Qwen3-4B-Instruct-2507").
    restore: str = ""


@dataclass
class DecisionConfig:
    # GPU presets set this: the run is refused while any field below is empty (`problems` names them).
    required: bool = False
    # The task family the decision is about and why it matters to the team.
    task_family: str = ""
    task_why: str = ""
    comparator: ComparatorConfig = field(default_factory=ComparatorConfig)
    # Device-hours the team will spend on this recipe: GPU-hours on GPU nodes, CPU core-hours on a CPU run (the
    # ledger's unit). null = not declared.
    budget_device_hours: float | None = None
    # What a failed adoption costs (regressions shipped, hours lost), in the team's words.
    failure_cost: str = ""
    rollback: RollbackConfig = field(default_factory=RollbackConfig)

    def problems(self, dry_run: bool = False) -> list[str]:
        """One message per problem, each naming its key and the fix; [] when the declaration is usable. A dry run
        (`cluster.dry_run`) spends nothing, so it may show the plan before the required fields are declared."""
        out: list[str] = []
        c = self.comparator
        if self.required and not dry_run:
            empty = [key for key, value in (
                ("decision.task_family", self.task_family), ("decision.task_why", self.task_why),
                ("decision.comparator.kind", c.kind), ("decision.failure_cost", self.failure_cost),
                ("decision.rollback.base_checkpoint", self.rollback.base_checkpoint),
                ("decision.rollback.restore", self.rollback.restore),
            ) if not str(value).strip()]
            if self.budget_device_hours is None:
                empty.append("decision.budget_device_hours")
            if c.kind == "arm" and not c.arm:
                empty.append("decision.comparator.arm")
            if c.kind == "file" and not c.path:
                empty.append("decision.comparator.path")
            if empty:
                out.append(
                    f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty, and this preset "
                    "(decision.required=true) refuses to start until the decision is declared: the task family and "
                    "why, the comparator (decision.comparator.kind=arm with .arm=verifier_aware|decode_only, or "
                    "kind=file with .path=<result JSON>), the budget in GPU-hours, the failure cost and the rollback "
                    "(the base checkpoint and the config flip that restores it). Set them on the command line "
                    "(e.g. decision.task_family='competitive programming') or in the preset.")
        if c.kind and c.kind not in COMPARATOR_KINDS:
            out.append(f"decision.comparator.kind={c.kind!r}: choose arm (another arm of this tool) or file (an "
                       "external result JSON), or leave it empty.")
        if c.kind == "arm" and c.arm and c.arm not in COMPARATOR_ARMS:
            out.append(f"decision.comparator.arm={c.arm!r}: choose one of {', '.join(COMPARATOR_ARMS)}.")
        if c.kind == "file" and c.path:
            out += comparator_file_problems(c.path)
        if self.budget_device_hours is not None and not (math.isfinite(self.budget_device_hours)
                                                         and self.budget_device_hours > 0):
            out.append(f"decision.budget_device_hours={self.budget_device_hours}: give a positive number of "
                       "device-hours (GPU-hours on GPU nodes), or null when there is no budget.")
        return out


def comparator_file_problems(path: str | Path) -> list[str]:
    """One message per problem of a comparator result file (see the module docstring); [] when it is usable."""
    p = Path(path).expanduser()
    where = f"decision.comparator.path={path}"
    if not p.is_file():
        return [f"{where}: no such file; point it at the comparator's result JSON (pass_at_k and gpu_hours)."]
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{where}: not readable JSON ({exc}); the file must be one JSON object with pass_at_k and gpu_hours."]
    if not isinstance(data, dict):
        return [f"{where}: expected one JSON object, got {type(data).__name__}."]
    out: list[str] = []
    passk = data.get("pass_at_k")
    if not isinstance(passk, dict) or not passk:
        out.append(f"{where}: missing pass_at_k; give the comparator's pass@k on the same eval set as fractions, "
                   'e.g. "pass_at_k": {"1": 0.41, "10": 0.62}.')
    else:
        if "1" not in passk:
            out.append(f"{where}: pass_at_k has no \"1\" (pass@1); the decision compares pass@1 first, so add it.")
        for k, v in passk.items():
            if not str(k).isdigit() or int(k) < 1:
                out.append(f"{where}: pass_at_k key {k!r} is not a positive integer k.")
                continue
            value = _estimate(v)
            if value is None:
                out.append(f"{where}: pass_at_k[{k!r}]={v!r} is not a number or an object with \"estimate\".")
            elif not 0.0 <= value <= 1.0:
                out.append(f"{where}: pass_at_k[{k!r}]={value} is outside [0, 1]; write pass rates as fractions "
                           "(0.41, not 41).")
    costs = [key for key in COST_KEYS if key in data]
    if not costs:
        out.append(f"{where}: missing gpu_hours; give what producing the comparator cost in GPU-hours (or "
                   "cpu_core_hours for a CPU-only comparator), measured the same way as this run's stages.")
    elif len(costs) > 1:
        out.append(f"{where}: has both gpu_hours and cpu_core_hours; keep the one it was measured in.")
    else:
        cost = data[costs[0]]
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
            out.append(f"{where}: {costs[0]}={cost!r} must be a non-negative number.")
    return out


def load_comparator(path: str | Path) -> dict[str, Any]:
    """The comparator file as {"name", "source", "pass_at_k": {k: {"estimate", "ci_low", "ci_high"}}, "device_hours",
    "device"}; raises ConfigError with one paragraph per problem."""
    problems = comparator_file_problems(path)
    if problems:
        raise ConfigError("\n\n".join(problems))
    data = json.loads(Path(path).expanduser().read_text())
    key = next(k for k in COST_KEYS if k in data)
    passk = {}
    for k, v in data["pass_at_k"].items():
        block = v if isinstance(v, dict) else {}
        passk[str(int(k))] = {"estimate": _estimate(v), "ci_low": block.get("ci_low"), "ci_high": block.get("ci_high")}
    return {"name": str(data.get("name") or Path(path).stem), "source": str(data.get("source") or path),
            "pass_at_k": passk, "device_hours": float(data[key]), "device": COST_KEYS[key]}


def _estimate(v: Any) -> float | None:
    if isinstance(v, dict):
        v = v.get("estimate")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)
