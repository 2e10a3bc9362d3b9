"""Process groups for conversion jobs and tests: torch.distributed + Megatron's parallel state.

The trainer initialises its own distributed state (torchrun); these helpers serve the converter, the
export stage and tests, which run either in this process (world size 1) or as `spawn`ed gloo ranks.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from .. import errors
from ..errors import SSDError
from .cpu_compat import apply_cpu_compat


def init_model_parallel(tp: int = 1, pp: int = 1, ep: int = 1, vpp: int | None = None, seed: int = 1234) -> None:
    """Megatron's parallel state + RNG tracker over an initialised torch.distributed world."""
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    apply_cpu_compat()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp,
        expert_model_parallel_size=ep,
    )
    # The RNG tracker's "model-parallel-rng" state is required by attention/dropout even at p=0.
    model_parallel_cuda_manual_seed(seed)


def destroy() -> None:
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def megatron_world(
    tp: int = 1, pp: int = 1, ep: int = 1, *, rank: int = 0, world_size: int = 1,
    init_file: str | None = None, seed: int = 1234,
) -> Iterator[None]:
    """torch.distributed (gloo on CPU, nccl on GPU) + Megatron parallel state for the block's duration.

    World size 1 needs no launcher: a file rendezvous in a temporary folder is made here.
    """
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialised in this process")
    tmp = None
    if init_file is None:
        if world_size != 1:
            raise ValueError("init_file is required for world_size > 1")
        tmp = tempfile.TemporaryDirectory(prefix="ssd-dist-")
        init_file = str(Path(tmp.name) / "rendezvous")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        init_model_parallel(tp, pp, ep, seed=seed)
        yield
    finally:
        destroy()
        if tmp is not None:
            tmp.cleanup()


def _entry(rank: int, fn: Callable[..., Any], world_size: int, init_file: str, layout: dict, args: tuple) -> None:
    try:
        with megatron_world(**layout, rank=rank, world_size=world_size, init_file=init_file):
            fn(*args)
    except SSDError as exc:
        # Keep the user-facing error type across the process boundary (mp.spawn only passes a traceback).
        Path(f"{init_file}.error{rank}").write_text(json.dumps([type(exc).__name__, str(exc)]))
        raise


def spawn(fn: Callable[..., Any], *args: Any, tp: int = 1, pp: int = 1, ep: int = 1, cpu: bool = False) -> None:
    """Run `fn(*args)` on tp*pp*ep fresh processes, each inside `megatron_world`.

    `cpu=True` hides GPUs from the ranks (gloo, host memory). World size 1 runs in this process when it
    can (no process group yet, and no GPU to hide). `fn` must be importable (module level). A failing rank
    raises here (SSDErrors keep their type and message). Each child gets an equal share of the CPU threads
    so the ranks do not oversubscribe the cores.
    """
    import torch.multiprocessing as mp

    world = tp * pp * ep
    if world == 1 and not dist.is_initialized() and not (cpu and torch.cuda.is_available()):
        with megatron_world(tp, pp, ep):
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
                mp.spawn(
                    _entry,
                    args=(fn, world, str(Path(tmp) / "rendezvous"), dict(tp=tp, pp=pp, ep=ep), args),
                    nprocs=world,
                    join=True,
                )
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
