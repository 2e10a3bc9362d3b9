"""`eval` group: evaluation decoding (the model's official setting), k values, sweeps, sandbox."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    n: int = 10
    k: list[int] = field(default_factory=lambda: [1, 4, 8, 16])
    temperature: float = 0.7
    top_k: int = 20
    top_p: float = 0.8
    min_p: float = 0.0
    max_tokens: int = 2048
    # Decode-only baseline arm: extra T_eval values for the base model (and the SSD model).
    temperature_sweep: list[float] = field(default_factory=list)
    # Precondition: GO-SSD needs pass@k - pass@1 >= gap_threshold_pp for some feasible k.
    gap_threshold_pp: float = 5.0
    bootstrap_samples: int = 2000
    ci_level: float = 0.95
    workers: int = 2
    timeout_s: float = 10.0
    memory_mb: int = 1024
    # Round-2 gate: round 1 must lift pass@1 by at least this many percentage points (with a CI excluding 0).
    gate_min_lift_pp: float = 2.0
    # Sandbox isolation: bwrap (the default: evaluation stops before any sample runs when bubblewrap cannot start) |
    # rlimits-only (the explicit opt-in to running model-written code without it; recorded in every row and summary).
    # docs/SANDBOX.md has what each guarantees.
    isolation: str = "bwrap"
    # How stdin/functional problems are judged: auto (problems of source livecodebench as LiveCodeBench's own harness
    # judges them, every other problem natively) | native | livecodebench (docs/SANDBOX.md). lcb_timeout_s: seconds
    # per test under livecodebench (lcb_runner's --timeout; eval.timeout_s is the native limit).
    grader: str = "auto"
    lcb_timeout_s: int = 6
    # With n > 1: per problem, compare the top-1 of the n samples by mean token log-probability with the samples'
    # grounding (imports and calls that resolve in the standard library and the starter code) and write
    # eval/<label>/selection.json. Observes only: pass@k and the verdict do not use it (docs/SELECTION.md).
    selection_diagnostic: bool = False
