"""`cluster` group: where stages run (local processes or Slurm) and experiment tracking."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClusterConfig:
    # local: torchrun on this machine | slurm: srun torchrun with rendezvous from Slurm variables
    launcher: str = "local"
    # Print the commands a stage would run instead of running them.
    dry_run: bool = False
    wandb_mode: str = "offline"
    wandb_project: str = "megatron-ssd"
    wandb_entity: str | None = None
