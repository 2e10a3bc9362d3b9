"""Input validation and tensor-parallel bookkeeping shared by the fused loss and its torch reference.

Both entry points must reject the same bad inputs with the same messages, so the rules live once, here.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

REDUCTIONS = ("mean", "sum", "none")
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def tp_rank_size(tp_group) -> tuple[int, int]:
    """(rank, size) inside the tensor-parallel group; (0, 1) without one."""
    if tp_group is None:
        return 0, 1
    return dist.get_rank(group=tp_group), dist.get_world_size(group=tp_group)


def validate(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, reduction: str,
             softcap, z_loss: float) -> None:
    """Raise ValueError/TypeError naming the offending argument and what it should be."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if softcap is not None and not float(softcap) > 0:
        raise ValueError(f"softcap must be None or > 0, got {softcap!r}")
    if not float(z_loss) >= 0:
        raise ValueError(f"z_loss must be >= 0, got {z_loss!r}")
    if hidden.dim() < 2:
        raise ValueError(f"hidden must be [..., H] with at least 2 dims, got shape {tuple(hidden.shape)}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be [V_local, H], got shape {tuple(weight.shape)}")
    if weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"hidden size mismatch: hidden {tuple(hidden.shape)} vs weight {tuple(weight.shape)} "
            "(weight must be [V_local, H], as stored by nn.Linear / Megatron's output layer)")
    if tuple(labels.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"labels shape {tuple(labels.shape)} must equal hidden.shape[:-1] = {tuple(hidden.shape[:-1])} "
            "(for Megatron's [S, B, H] hidden pass labels transposed to [S, B])")
    if labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"labels must be int64 or int32, got {labels.dtype}")
    if hidden.dtype not in FLOAT_DTYPES:
        raise TypeError(f"hidden dtype must be one of {FLOAT_DTYPES}, got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"dtype mismatch: hidden is {hidden.dtype}, weight is {weight.dtype}; cast one of them")
    if not (hidden.device == weight.device == labels.device):
        raise ValueError(
            f"device mismatch: hidden on {hidden.device}, weight on {weight.device}, labels on {labels.device}")
    if weight.shape[0] == 0 or weight.shape[1] == 0:
        raise ValueError(f"weight must be non-empty, got shape {tuple(weight.shape)}")


def valid_rows(labels_flat: torch.Tensor, ignore_index: int, vocab_total: int) -> torch.Tensor:
    """Indices of tokens that carry a loss; raises if a label is outside [0, vocab_total).

    Costs host syncs (the compaction needs the count anyway); Megatron's CE silently mis-handles such labels.
    """
    valid = labels_flat != ignore_index
    bad = valid & ((labels_flat < 0) | (labels_flat >= vocab_total))
    idx = valid.nonzero().squeeze(1)
    n_bad = int(bad.sum())
    if n_bad:
        first = int(labels_flat[bad][0])
        raise ValueError(
            f"{n_bad} label(s) outside [0, {vocab_total}) (first: {first}) that are not ignore_index="
            f"{ignore_index}; the full vocabulary is V_local x tp_size = {vocab_total}")
    return idx


def reduce_loss(per_token: torch.Tensor, count: int, reduction: str, shape) -> torch.Tensor:
    """mean divides by the number of non-ignored tokens, and returns 0 (not NaN) when there are none."""
    if reduction == "none":
        return per_token.reshape(shape)
    total = per_token.sum()
    return total if reduction == "sum" else total / max(count, 1)
