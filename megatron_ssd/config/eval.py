"""`eval` group: evaluation decoding (the model's official setting), k values, sweeps, sandbox."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MechanismConfig:
    """`eval.mechanism`: does SSD sharpen locks and keep forks, beyond what a temperature change of the base does?
    (megatron_ssd/evaluation/mechanism, docs/MECHANISM.md). Off by default: it runs both models teacher-forced
    over the eval samples of eval/base and eval/ssd once more."""
    enabled: bool = False
    # exact: transformers forward passes, the full vocabulary (entropy and tail mass exact; small models) |
    # vllm: vLLM prompt_logprobs with the top `top_k` (scales like the rest; full-vocabulary quantities bounded).
    backend: str = "vllm"
    # Log-probabilities kept per position (and vLLM's prompt_logprobs); at least sample.top_k so the frontier is
    # exact. With backend=vllm the run's engines are started with max_logprobs = max(20, top_k).
    top_k: int = 20
    # Position classes, from the base model's distribution at temperature 1: lock = top-1 probability >= lock_p;
    # fork = not a lock and (>= 2 tokens above plausible_p, or entropy >= fork_entropy nats).
    lock_p: float = 0.9
    plausible_p: float = 0.15
    fork_entropy: float = 1.0
    # The temperature frontier: the base model at each temperature with the training truncation (sample.top_k,
    # sample.top_p, sample.min_p); the SSD model's point at tuned_temperature with the same truncation.
    temperatures: list[float] = field(default_factory=lambda: [round(0.3 + 0.05 * i, 2) for i in range(35)])
    tuned_temperature: float = 1.0
    # "Beyond the frontier" needs the CI of the tail excess (frontier tail at SSD's fork entropy minus SSD's lock
    # tail) to clear min_excess (tail mass, absolute): below it the difference is too small to mean anything.
    min_excess: float = 0.005
    # Declared subsampling (recorded in eval/mechanism.json): problems (seeded choice), samples per problem and
    # model, and completion tokens per sample (the first ones). 0 = all.
    max_problems: int = 0
    max_samples_per_problem: int = 0
    max_completion_tokens: int = 0
    examples: int = 3  # lock and fork examples shown in the report
    seed: int = 0


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
    # Locks and forks: the mechanism probe (eval/mechanism.json; docs/MECHANISM.md).
    mechanism: MechanismConfig = field(default_factory=MechanismConfig)
