"""Pure-torch reference for the fused linear + cross-entropy: the ground truth its tests compare against.

It materialises the full fp32 logits (F.linear + F.cross_entropy), so it is only for small shapes and for CPU
machines. Under tensor parallelism it all-gathers the vocab shards into the full weight and computes the
whole loss on every rank; the gradient of each rank's shard is its slice of the full-weight gradient (every
rank computes the same loss, so no reduction), and grad_hidden is the full one, as the fused loss returns.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .linear_ce_checks import reduce_loss, tp_rank_size, valid_rows, validate


class _GatherVocabShards(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shard, tp_group):
        rank, size = tp_rank_size(tp_group)
        parts = [torch.empty_like(shard) for _ in range(size)]
        dist.all_gather(parts, shard.contiguous(), group=tp_group)
        ctx.rows = (rank * shard.shape[0], (rank + 1) * shard.shape[0])
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad_full):
        lo, hi = ctx.rows
        return grad_full[lo:hi].contiguous(), None


def reference_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                                   ignore_index: int = -100, reduction: str = "mean", tp_group=None,
                                   softcap: float | None = None, z_loss: float = 0.0) -> torch.Tensor:
    """Same contract as `fused_linear_cross_entropy`, computed in fp32 with materialised logits."""
    validate(hidden, weight, labels, reduction=reduction, softcap=softcap, z_loss=z_loss)
    _, tp_size = tp_rank_size(tp_group)
    full_weight = weight if tp_group is None else _GatherVocabShards.apply(weight, tp_group)
    H = hidden.shape[-1]
    y = labels.reshape(-1).to(torch.int64)
    count = valid_rows(y, ignore_index, weight.shape[0] * tp_size).numel()
    logits = F.linear(hidden.reshape(-1, H).float(), full_weight.float())
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    per_token = F.cross_entropy(logits, y, ignore_index=ignore_index, reduction="none")
    if z_loss:
        lse = torch.logsumexp(logits, dim=-1)
        per_token = per_token + torch.where(y != ignore_index, z_loss * lse * lse, 0.0)
    return reduce_loss(per_token, count, reduction, labels.shape)
