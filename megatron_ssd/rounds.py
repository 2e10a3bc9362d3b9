"""Rounds of SSD: round 2 samples from and fine-tunes round 1's SSD model on a fresh prompt pool.

The paper stops after one round; a second round is only worth GPU-hours when the first one demonstrably helped
and did not collapse, so a round-2 run is refused unless round 1 passes the gate (`evaluation.decisions.gate`): a pass@1 lift
of at least `eval.gate_min_lift_pp` with a CI that excludes no-change, and every collapse probe within tolerance.
Round 2 keeps round 1's held-out set (so the rounds compare on the same problems) and excludes every prompt round 1
trained on.
"""
from __future__ import annotations

from pathlib import Path

from .config import SSDConfig
from .errors import SSDError
from .evaluation.decisions.gate import gate_run_dir
from .models.base_model import resolve_base_model
from .rundir import RunDir


def policy_model(cfg: SSDConfig) -> Path:
    """The model SSD samples from and starts training from: the base model, or round 1's SSD model in round 2."""
    if cfg.round == 2:
        return previous_round(cfg).latest_export()
    return resolve_base_model(cfg.model)


def check_round2_gate(cfg: SSDConfig) -> dict:
    """Raise with the gate's reasons unless round 1 (cfg.prev_run_dir) passes; return the gate result."""
    prev = previous_round(cfg).path
    try:
        result = gate_run_dir(prev)
    except (OSError, ValueError, SSDError) as exc:
        raise SSDError(f"round=2 needs a finished round-1 run in prev_run_dir={prev} (eval/base and eval/ssd "
                       f"summaries): {exc}") from None
    if not result["passed"]:
        raise SSDError(f"round=2 refused: round 1 in {prev} does not pass the round-2 gate:\n  - " +
                       "\n  - ".join(result["reasons"]))
    return result


def previous_round(cfg: SSDConfig) -> RunDir:
    """Round 1's run directory (`prev_run_dir`), checked to be one."""
    if not cfg.prev_run_dir:
        raise SSDError("round=2 needs prev_run_dir=<the round-1 run directory>.")
    prev = RunDir(cfg.prev_run_dir)
    if not prev.manifest_path.exists():
        raise SSDError(f"prev_run_dir={prev.path} is not a megatron-ssd run directory (no manifest.json).")
    return prev
