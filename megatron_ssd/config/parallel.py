"""`parallel` group: the Megatron parallel layout. DP is whatever remains of the world size."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParallelConfig:
    tensor: int = 1
    pipeline: int = 1
    virtual_pipeline: int | None = None
    context: int = 1
    expert: int = 1
    sequence_parallel: bool = False
    # Processes per node and nodes for training (torchrun --nproc-per-node / --nnodes).
    nproc_per_node: int = 1
    nnodes: int = 1
    # Distributed optimizer (ZeRO-1 style sharding of optimizer state over DP).
    distributed_optimizer: bool = True
