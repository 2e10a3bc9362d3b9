"""Process groups for training: torch.distributed + Megatron's parallel state, from a validated layout.

Ranks are started by torchrun (or srun + torchrun), which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; `init_distributed` reads them (`env://`). Tests may pass a `file://` rendezvous instead.
Backend: NCCL on GPU, gloo on CPU (where `apply_cpu_compat()` makes megatron-core run; DESIGN.md §5).

The layout itself is checked against the model *before* any group exists (`megatron_ssd.models.layout.
check_layout`), so a layout that cannot shard the model fails with one clear message on every rank instead
of an assert deep inside a layer constructor or a hang.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from ..config.parallel import ParallelConfig
from ..models.cpu_compat import apply_cpu_compat


@dataclass(frozen=True)
class ParallelDims:
    """The sizes and this rank's coordinates; DP is what remains of the world after TP x PP x CP."""

    world: int
    rank: int
    local_rank: int
    tensor: int
    pipeline: int
    virtual_pipeline: int | None
    context: int
    expert: int
    data: int
    sequence_parallel: bool
    # This rank's coordinates (filled after Megatron's parallel state exists).
    tp_rank: int = 0
    pp_rank: int = 0
    cp_rank: int = 0
    dp_rank: int = 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pipeline - 1

    def layout(self) -> dict:
        """The parts that decide how checkpoints are sharded (compared on resume)."""
        return {"tensor": self.tensor, "pipeline": self.pipeline, "virtual_pipeline": self.virtual_pipeline,
                "context": self.context, "expert": self.expert, "data": self.data}

    def as_dict(self) -> dict:
        return asdict(self)


def on_gpu() -> bool:
    return torch.cuda.is_available()


def init_distributed(parallel: ParallelConfig, seed: int, *, init_method: str | None = None,
                     timeout_minutes: int = 30) -> ParallelDims:
    """Initialise torch.distributed and Megatron's parallel state (TP, PP, VPP, CP, EP; DP = the rest).

    `seed` seeds Python/NumPy/torch and Megatron's RNG tracker (`model_parallel_cuda_manual_seed`, which
    derives distinct TP-rank streams for dropout and initialisation).
    """
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    apply_cpu_compat()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_gpu():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        if init_method is None and "MASTER_ADDR" not in os.environ:
            raise RuntimeError("torch.distributed has no rendezvous: start training ranks with torchrun "
                               "(python -m megatron_ssd.training.entry is launched by the train stage).")
        dist.init_process_group(
            "nccl" if on_gpu() else "gloo",
            init_method=init_method or "env://",
            rank=rank,
            world_size=world,
            timeout=_dt.timedelta(minutes=timeout_minutes),
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    tp, pp, cp = parallel.tensor, parallel.pipeline, parallel.context
    ps.initialize_model_parallel(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline,
        context_parallel_size=cp,
        expert_model_parallel_size=parallel.expert,
        distributed_timeout_minutes=timeout_minutes,
    )
    seed_everything(seed)
    model_parallel_cuda_manual_seed(seed)
    return ParallelDims(
        world=world,
        rank=rank,
        local_rank=local_rank,
        tensor=tp,
        pipeline=pp,
        virtual_pipeline=parallel.virtual_pipeline,
        context=cp,
        expert=parallel.expert,
        data=ps.get_data_parallel_world_size(),
        sequence_parallel=parallel.sequence_parallel,
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        cp_rank=ps.get_context_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
    )


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def destroy_distributed() -> None:
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
