"""Process groups: torch.distributed + Megatron's parallel state, built from a `ParallelLayout`.

`init_process_groups` is the one initialiser. The trainer calls it under torchrun (`env://` rendezvous:
RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT); the converter, the export stage and tests
use `megatron_world` / `spawn`, which run in this process (world size 1) or as `spawn`ed ranks over a
file rendezvous. Backend: NCCL on GPU, gloo on CPU (where `apply_cpu_compat()` makes megatron-core run).

The layout is validated against the model *before* this runs (`ParallelLayout.validate` in
megatron_ssd/config/parallel.py), so a layout that cannot shard the model fails with one clear message on
every rank instead of an assert deep inside a layer constructor or a hang.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import random
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

from .. import errors
from ..config.parallel import ParallelLayout
from ..errors import SSDError
from .cpu_compat import apply_cpu_compat


@dataclass(frozen=True)
class ParallelDims(ParallelLayout):
    """A layout as one rank sees it: the degrees plus this rank's coordinates (from Megatron's state)."""

    rank: int = 0
    local_rank: int = 0
    tp_rank: int = 0
    pp_rank: int = 0
    cp_rank: int = 0
    dp_rank: int = 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pipeline - 1

    def as_dict(self) -> dict:
        """Degrees (DP included) and coordinates, for the run's metrics."""
        return {**asdict(self), "data": self.data}


def on_gpu() -> bool:
    """Whether this process's ranks run on GPUs (NCCL, CUDA tensors) or on CPUs (gloo, cpu_compat)."""
    return torch.cuda.is_available()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def init_process_groups(layout: ParallelLayout, *, seed: int, init_method: str | None = None, rank: int = 0,
                        timeout_minutes: int = 30) -> ParallelDims:
    """Start torch.distributed (unless this process has it) and Megatron's parallel state for `layout`.

    `init_method=None`: torchrun's rendezvous (`env://`; RANK and LOCAL_RANK from the environment);
    otherwise a rendezvous URL (`file://...`) that this process joins as `rank`. `layout.world` processes
    must join. In a process whose torch.distributed is up already, only Megatron's state is (re)built.
    `seed` seeds Python/NumPy/torch and Megatron's RNG tracker (`model_parallel_cuda_manual_seed` derives
    distinct TP-rank streams for dropout and initialisation; attention needs its state even at p=0).
    Returns this rank's `ParallelDims`.
    """
    # megatron-core is imported here, not at module level: it is a heavy import the config-only users avoid.
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    layout.validate(cuda=on_gpu())
    apply_cpu_compat()
    if dist.is_initialized():  # a running world re-partitioned (tests): its device is chosen already
        rank = dist.get_rank()
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    else:
        if init_method is None:
            rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        else:
            local_rank = rank  # spawned ranks: one node
        if on_gpu():
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        if init_method is None and "MASTER_ADDR" not in os.environ:
            raise RuntimeError("torch.distributed has no rendezvous: start training ranks with torchrun "
                               "(python -m megatron_ssd.training.entry is launched by the train stage).")
        dist.init_process_group("nccl" if on_gpu() else "gloo", init_method=init_method or "env://", rank=rank,
                                world_size=layout.world, timeout=_dt.timedelta(minutes=timeout_minutes))
    if dist.get_world_size() != layout.world:
        raise SSDError(f"{dist.get_world_size()} processes joined, but the parallel layout was checked for a "
                       f"world of {layout.world}; start parallel.nproc_per_node x parallel.nnodes ranks.")
    ps.initialize_model_parallel(
        tensor_model_parallel_size=layout.tensor,
        pipeline_model_parallel_size=layout.pipeline,
        virtual_pipeline_model_parallel_size=layout.virtual_pipeline,
        context_parallel_size=layout.context,
        expert_model_parallel_size=layout.expert,
        distributed_timeout_minutes=timeout_minutes,
    )
    seed_everything(seed)
    model_parallel_cuda_manual_seed(seed)
    degrees = {f.name: getattr(layout, f.name) for f in fields(ParallelLayout)}
    return ParallelDims(
        **degrees,
        rank=dist.get_rank(),
        local_rank=local_rank,
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        cp_rank=ps.get_context_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
    )


def destroy_process_groups() -> None:
    from megatron.core import parallel_state as ps  # heavy import, see init_process_groups

    ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def megatron_world(layout: ParallelLayout | None = None, *, rank: int = 0, init_file: str | None = None,
                   seed: int = 1234) -> Iterator[ParallelDims]:
    """Process groups for `layout` (default: one process, no parallelism) for the block's duration.

    World size 1 needs no launcher: a file rendezvous in a temporary folder is made here.
    """
    layout = layout or ParallelLayout(world=1)
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialised in this process")
    with contextlib.ExitStack() as stack:
        if init_file is None:
            if layout.world != 1:
                raise ValueError("init_file is required for a world size > 1")
            init_file = str(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ssd-dist-"))) / "rendezvous")
        try:
            yield init_process_groups(layout, seed=seed, init_method=f"file://{init_file}", rank=rank)
        finally:
            destroy_process_groups()


def _entry(rank: int, fn: Callable[..., Any], init_file: str, layout: ParallelLayout, args: tuple) -> None:
    try:
        with megatron_world(layout, rank=rank, init_file=init_file):
            fn(*args)
    except SSDError as exc:
        # Keep the user-facing error type across the process boundary (mp.spawn only passes a traceback).
        Path(f"{init_file}.error{rank}").write_text(json.dumps([type(exc).__name__, str(exc)]))
        raise


def spawn(fn: Callable[..., Any], *args: Any, layout: ParallelLayout | None = None, cpu: bool = False) -> None:
    """Run `fn(*args)` on `layout.world` fresh processes (default: one), each inside `megatron_world`.

    `cpu=True` hides GPUs from the ranks (gloo, host memory). World size 1 runs in this process when it
    can (no process group yet, and no GPU to hide). `fn` must be importable (module level). A failing rank
    raises here (SSDErrors keep their type and message). Each child gets an equal share of the CPU threads
    so the ranks do not oversubscribe the cores.
    """
    import torch.multiprocessing as mp  # only the multi-process path needs it

    layout = layout or ParallelLayout(world=1)
    world = layout.world
    if world == 1 and not dist.is_initialized() and not (cpu and torch.cuda.is_available()):
        with megatron_world(layout):
            fn(*args)
        return
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // world))}
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the spawned children
    try:
        with tempfile.TemporaryDirectory(prefix="ssd-spawn-") as tmp:
            try:
                mp.spawn(_entry, args=(fn, str(Path(tmp) / "rendezvous"), layout, args), nprocs=world, join=True)
            except mp.ProcessRaisedException:
                for f in sorted(Path(tmp).glob("rendezvous.error*")):
                    cls_name, message = json.loads(f.read_text())
                    raise getattr(errors, cls_name, SSDError)(message) from None
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
