"""Run megatron-core 0.16 on a CPU-only torch (gloo), for tests and the embedded CPU default.

Megatron-core assumes CUDA in a few dozen places that matter for building, running, training and
checkpointing a GPTModel. `apply_cpu_compat()` patches exactly those, and only when
`torch.cuda.is_available()` is false, so on a GPU machine it does nothing. Each patch says why it is needed
(measured on megatron-core 0.16.1 with torch 2.13 CPU; DESIGN.md §5). It is idempotent: call it once per
process (spawned/torchrun ranks included) before building models. The torch.cuda patches are process-wide;
the TorchFunctionMode is entered on the calling thread only (torch keeps mode stacks per thread), so call it
from the thread that runs the model.

Also needed on CPU, but a matter of configuration rather than patching: `TransformerConfig(
use_cpu_initialization=True)` and the local layer spec (`megatron_ssd.models.provider` does both), its norms
from `cpu_sp_norm` under sequence parallelism (Megatron's torch norm refuses it; TE/Apex are GPU-only), and gloo as
the process-group backend.
"""
from __future__ import annotations

import threading

import torch
from torch.overrides import TorchFunctionMode

_LOCK = threading.Lock()
_MODE: "_CudaToCpuMode | None" = None

# Tensor.type() strings as a CUDA tensor would report them (the optimizers compare these strings).
_CUDA_TYPE_NAMES = {
    torch.float32: "torch.cuda.FloatTensor",
    torch.float16: "torch.cuda.HalfTensor",
    torch.bfloat16: "torch.cuda.BFloat16Tensor",
    torch.float64: "torch.cuda.DoubleTensor",
    torch.int64: "torch.cuda.LongTensor",
    torch.int32: "torch.cuda.IntTensor",
    torch.int16: "torch.cuda.ShortTensor",
    torch.int8: "torch.cuda.CharTensor",
    torch.uint8: "torch.cuda.ByteTensor",
    torch.bool: "torch.cuda.BoolTensor",
}


def _is_cuda(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device == "cuda" or device.startswith("cuda:")
    return False


def _cpu_if_cuda(device):
    return "cpu" if _is_cuda(device) else device


class _CudaToCpuMode(TorchFunctionMode):
    """Maps CUDA placements to the CPU and makes `Tensor.type()` report the CUDA type name.

    Why: megatron-core allocates with `device="cuda"` (e.g. the MoE aux-loss tracker), moves tensors with
    `.cuda()`/`.to("cuda")` (gradient buffers, checkpoint loading, clip-grad norms) and its optimizers accept
    only parameters whose `.type()` is `torch.cuda.{Float,Half,BFloat16}Tensor`. All of those are the right
    operations with the CPU substituted for the GPU.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            # Only the query form `t.type()`; `t.type(dtype)` (a cast) falls through unchanged.
            return _CUDA_TYPE_NAMES.get(args[0].dtype, func(*args))
        if func is torch.Tensor.cuda:
            kwargs.pop("device", None)
            kwargs.pop("non_blocking", None)
            return args[0]
        if "device" in kwargs:
            kwargs["device"] = _cpu_if_cuda(kwargs["device"])
        if func is torch.Tensor.to and len(args) > 1:
            args = (args[0], _cpu_if_cuda(args[1]), *args[2:])
        return func(*args, **kwargs)


def _cpu_get_rng_state(device="cuda", *args, **kwargs) -> torch.Tensor:
    return torch.get_rng_state()


def _cpu_set_rng_state(new_state: torch.Tensor, device=-1, *args, **kwargs) -> None:
    torch.set_rng_state(new_state)


def _cpu_manual_seed(seed: int) -> None:
    # Not torch.manual_seed: that one calls torch.cuda.manual_seed_all, i.e. this function again.
    torch.default_generator.manual_seed(int(seed))


def patch_moe_without_te() -> None:
    """megatron-core 0.16.1 bug: `moe_utils.te_general_gemm` is only defined when Transformer Engine imports,
    yet the MoE router's gating GEMM tests `te_general_gemm is not None` -> NameError without TE. Defining it
    as None selects the plain torch.mm path it was written to fall back to. Needed wherever TE is absent."""
    from megatron.core.transformer.moe import moe_utils

    if not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None


def apply_cpu_compat() -> bool:
    """Patch torch.cuda / megatron-core for CPU execution if CUDA is unavailable. Returns True if active."""
    global _MODE
    if torch.cuda.is_available():
        return False
    with _LOCK:
        if _MODE is not None:
            return True
        # `device=torch.cuda.current_device()` is used for ~175 allocations (RoPE, attention masks, TP
        # all-gather buffers, the router); "cpu" is a valid device argument for all of them.
        torch.cuda.current_device = lambda: "cpu"
        # Megatron's RNG tracker (dropout/init under TP) and activation checkpointing save, fork and restore
        # the CUDA generator; on CPU the default CPU generator plays that role. `manual_seed` must act on the
        # same generator, or the tracker's per-region seeds would be queued lazily for a GPU that never comes.
        torch.cuda.get_rng_state = _cpu_get_rng_state
        torch.cuda.set_rng_state = _cpu_set_rng_state
        torch.cuda.random.get_rng_state = _cpu_get_rng_state
        torch.cuda.random.set_rng_state = _cpu_set_rng_state
        torch.cuda.manual_seed = _cpu_manual_seed
        torch.cuda.manual_seed_all = _cpu_manual_seed
        torch.cuda.random.manual_seed = _cpu_manual_seed
        torch.cuda.random.manual_seed_all = _cpu_manual_seed
        # Waits for kernels that do not exist on CPU (timers, barriers, checkpoint save/load).
        torch.cuda.synchronize = lambda *a, **k: None
        # megatron's own copies of the CUDA RNG accessors (imported into random.py, used by the tracker and
        # CheckpointFunction) must point to the CPU generator as well.
        from megatron.core.tensor_parallel import random as mrandom

        mrandom._get_cuda_rng_state = _cpu_get_rng_state
        mrandom._set_cuda_rng_state = _cpu_set_rng_state
        patch_moe_without_te()
        _MODE = _CudaToCpuMode()
        # Entered for the rest of the process: a global mode, not a `with` block, so that every caller
        # (model build, forward, optimizer, dist_checkpointing) sees it without plumbing.
        _MODE.__enter__()
    return True


def cpu_compat_active() -> bool:
    return _MODE is not None
