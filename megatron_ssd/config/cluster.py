"""`cluster` group: where stages run (local processes or Slurm) and experiment tracking."""
from __future__ import annotations

from dataclasses import dataclass

LAUNCHERS = ("local", "slurm")


@dataclass
class ClusterConfig:
    # local: torchrun on this machine | slurm: srun torchrun with rendezvous from Slurm variables
    launcher: str = "local"
    # Print the commands a stage would run instead of running them.
    dry_run: bool = False
    # Multi-node training (launcher=slurm): how long torchrun's agents wait for every node to join the c10d
    # rendezvous before the train stage gives up with one error naming the endpoint (training/launch.py). srun
    # starts the agents together, so a healthy allocation joins within the time to import torch on every node;
    # torch's own default is 600 s.
    rdzv_join_timeout_s: int = 300
    wandb_mode: str = "offline"
    wandb_project: str = "megatron-ssd"
    wandb_entity: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with this section, each naming its key and the fix."""
        e = []
        if self.launcher not in LAUNCHERS:
            e.append(f"cluster.launcher={self.launcher!r}: choose one of {', '.join(LAUNCHERS)}.")
        if self.rdzv_join_timeout_s < 1:
            e.append(f"cluster.rdzv_join_timeout_s={self.rdzv_join_timeout_s}: must be at least 1 (seconds torchrun "
                     "waits for every node to join the rendezvous).")
        return e
