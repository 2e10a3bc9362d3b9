"""The top-level structured config, registered in Hydra's ConfigStore as `ssd_schema`.

Hydra composes `hydra_conf/config.yaml` (and the user's overrides) on top of this schema, so unknown keys and
wrong types fail at composition time. Cross-field rules live in `megatron_ssd.config.validate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from .cluster import ClusterConfig
from .data import DataConfig
from .decision import DecisionConfig
from .eval import EvalConfig
from .model import ModelConfig
from .parallel import ParallelConfig
from .sample import SampleConfig
from .train import TrainConfig

ARMS = ("minimal", "verifier_aware", "decode_only")


@dataclass
class SSDConfig:
    # What to do: "run" (the whole chain for `arm`) or one stage name.
    stage: str = "run"
    # Run directory; default: <runs_root>/<experiment>-<config hash>.
    run_dir: str | None = None
    runs_root: str = "runs"
    # Name of the experiment preset (set by experiment/*.yaml).
    experiment: str = "custom"
    seed: int = 0
    arm: str = "minimal"
    round: int = 1
    # Train even when diagnose/verdict.json does not allow `arm` (megatron_ssd/stages/gate_training.py); the
    # override and `force_reason` are recorded in diagnose/override.json, the manifest and the report.
    force_train: bool = False
    force_reason: str = ""
    # Show everything libraries print live instead of only in <run>/logs/<stage>.log (`ssd -v`).
    verbose: bool = False
    # Rewrite the preset into its CPU rehearsal before validation: the same chain on a tiny random model of the
    # preset's class, scaled layout, data fixtures (config/rehearsal.py); the changes go to the manifest and report.
    rehearsal: bool = False
    # Round 2 only: the round-1 run directory (its SSD model, prompts and gate inputs).
    prev_run_dir: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    # What the run decides and against what: comparator, budget, rollback (config/decision.py).
    decision: DecisionConfig = field(default_factory=DecisionConfig)


# Keys that change how a run executes but not what it produces; they are left out of the config hash so that,
# e.g., `ssd stage=evaluate run_dir=...` or more sandbox workers reuse the same run directory.
OPERATIONAL_KEYS = (
    "stage",
    "run_dir",
    "runs_root",
    "sample.engine_rank",
    "sample.num_engines",
    "sample.max_inflight_requests",
    "sample.gpu_memory_utilization",
    "sample.cpu_kvcache_gib",
    "eval.workers",
    "cluster.dry_run",
    "cluster.launcher",
    "cluster.rdzv_join_timeout_s",
    "cluster.wandb_mode",
    "cluster.wandb_project",
    "cluster.wandb_entity",
    # Forcing training past the verdict decides whether stages run, not what they compute: a forced rerun
    # continues the same run directory (the override is recorded there instead).
    "force_train",
    "force_reason",
    "verbose",
)


def register() -> None:
    ConfigStore.instance().store(name="ssd_schema", node=SSDConfig)
