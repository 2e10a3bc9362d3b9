"""Fused linear + cross-entropy: `fused_linear_cross_entropy` and its autograd.Function.

Why hand-written: the logits of 65,536 tokens x 151,936 vocab are 19.9 GB in bf16 and their gradient as much
again. Megatron-core's fused linear CE is dev-branch and Blackwell-only, and Liger-Kernel still materialises
[chunk, V] logits. The Triton kernels in `linear_ce_triton` never build [N, V]; this module compacts away
ignored tokens (no FLOPs are spent on them), combines the kernels' per-token statistics, does the
tensor-parallel all-reduces (Megatron's vocab-parallel CE semantics) and maps gradients back.

Tensor parallelism: `weight` is this rank's contiguous vocab shard [V/tp, H] (rank r holds rows
[r*V/tp, (r+1)*V/tp) of the full, padded vocabulary, as Megatron's ColumnParallelLinear does); `labels` hold
global vocab ids and must be identical on every rank of `tp_group`. Forward all-reduces the per-token max,
sum-exp and target logit; backward returns the TP-summed grad_hidden (so do NOT also route `hidden` through
`copy_to_tensor_model_parallel_region`) and the local grad_weight.

Sequence parallelism: the kernel itself needs every token of the sequence on every TP rank, so the caller
gathers the sequence-split hidden states first. With `reduce_grad_hidden=False` the backward returns this
rank's partial grad_hidden (its vocab shard's contribution) without the TP all-reduce, for a gather whose
backward reduce-scatters (Megatron's `gather_from_sequence_parallel_region(..., tensor_parallel_output_grad=
True)`, what ColumnParallelLinear does under SP): half the backward traffic of all-reduce-then-split.
`megatron_ssd.training.loss.fused_linear_ce_losses` is that caller.

A rank whose tokens are all `ignore_index` (e.g. a context-parallel rank that holds only prompt tokens) runs no
kernel and no collective (its TP peers hold the same labels, so they skip too) and returns zero losses and
gradients - never NaN, also for reduction="mean".
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .linear_ce_checks import reduce_loss, tp_rank_size, valid_rows, validate

_INTERPRET_HINT = (
    "set TRITON_INTERPRET=1 in the environment before megatron_ssd's Triton kernels are first used (slow; "
    "meant for tests), or use megatron_ssd.kernels.reference_linear_cross_entropy")


def _triton_module(device: torch.device):
    """Import the Triton kernels on first use, so TRITON_INTERPRET set after `import megatron_ssd` still counts."""
    try:
        from . import linear_ce_triton as tk  # on first use: a TRITON_INTERPRET set after import still counts
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"fused_linear_cross_entropy needs Triton ({exc}); {_INTERPRET_HINT}") from exc
    if device.type != "cuda" and not tk.is_interpreted():
        raise RuntimeError(
            f"fused_linear_cross_entropy runs Triton kernels on CUDA tensors; got tensors on '{device}' and the "
            f"kernels were not built in interpreter mode. On a machine without a GPU {_INTERPRET_HINT}.")
    return tk


def _combine_stats(maxes, sumexp, target, tp_group):
    """Merge per-split (and per-rank) online-softmax statistics into lse and target logit, fp32 [M]."""
    m = maxes.amax(0)
    s = (sumexp * torch.exp(maxes - m)).sum(0)
    t = target.sum(0)
    if tp_group is not None:
        m_all = m.clone()
        dist.all_reduce(m_all, op=dist.ReduceOp.MAX, group=tp_group)
        st = torch.stack([s * torch.exp(m - m_all), t])
        dist.all_reduce(st, op=dist.ReduceOp.SUM, group=tp_group)
        m, s, t = m_all, st[0], st[1]
    return m + torch.log(s), t


class LinearCrossEntropyFunction(torch.autograd.Function):
    """autograd glue around the Triton kernels; inputs are validated by `fused_linear_cross_entropy`."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, reduction, tp_group, softcap, z_loss, reduce_grad_hidden):
        tk = _triton_module(hidden.device)
        cfg = tk.default_config(hidden.dtype)
        H = hidden.shape[-1]
        rank, tp_size = tp_rank_size(tp_group)
        vocab_start = rank * weight.shape[0]
        h = hidden.reshape(-1, H)
        y = labels.reshape(-1).to(torch.int64)
        idx = valid_rows(y, ignore_index, weight.shape[0] * tp_size)
        count = idx.numel()
        w = weight.contiguous()

        per_token = torch.zeros(y.numel(), device=hidden.device, dtype=torch.float32)
        lse = torch.empty(0, device=hidden.device, dtype=torch.float32)
        if count:
            h_c, y_c = _compact(h, y, idx)
            stats = tk.forward_stats(h_c, w, y_c, vocab_start, softcap, cfg)
            lse, target = _combine_stats(*stats, tp_group)
            loss_c = lse - target
            if z_loss:
                loss_c = loss_c + z_loss * lse * lse
            per_token.index_copy_(0, idx, loss_c)

        ctx.save_for_backward(hidden, weight, y, idx, lse)
        ctx.args = (reduction, tp_group, softcap, float(z_loss), count, vocab_start, reduce_grad_hidden)
        return reduce_loss(per_token, count, reduction, labels.shape)

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, y, idx, lse = ctx.saved_tensors
        reduction, tp_group, softcap, z_loss, count, vocab_start, reduce_grad_hidden = ctx.args
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gh = hidden.new_zeros(hidden.shape) if need_h else None  # ignored rows keep a zero gradient
        gw = None
        if count == 0 or not (need_h or need_w):
            gw = weight.new_zeros(weight.shape) if need_w else None
            return gh, gw, None, None, None, None, None, None, None

        tk = _triton_module(hidden.device)
        cfg = tk.default_config(hidden.dtype)
        H = hidden.shape[-1]
        h_c, y_c = _compact(hidden.reshape(-1, H), y, idx)
        w = weight.contiguous()
        grad_out = grad_out.float()
        if reduction == "none":
            g = grad_out.reshape(-1).index_select(0, idx).contiguous()
        else:
            scale = grad_out / count if reduction == "mean" else grad_out
            g = scale.expand(count).contiguous()
        coef = g * (1.0 + 2.0 * z_loss * lse) if z_loss else g
        kernel_args = (h_c, w, y_c, lse, coef, g, vocab_start, softcap, cfg)

        if need_h:
            dh = tk.grad_hidden(*kernel_args)
            if tp_group is not None and reduce_grad_hidden:
                dist.all_reduce(dh, op=dist.ReduceOp.SUM, group=tp_group)
            gh.view(-1, H).index_copy_(0, idx, dh.to(hidden.dtype))
        if need_w:
            dw = tk.grad_weight(*kernel_args)
            gw = dw.to(weight.dtype)  # no copy for fp32 weights
        return gh, gw, None, None, None, None, None, None, None


def _compact(h: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
    """Rows that carry a loss, contiguous (a no-op copy-free path when nothing is ignored)."""
    if idx.numel() == y.numel():
        return h.contiguous(), y.contiguous()
    return h.index_select(0, idx).contiguous(), y.index_select(0, idx).contiguous()


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                               ignore_index: int = -100, reduction: str = "mean", tp_group=None,
                               softcap: float | None = None, z_loss: float = 0.0,
                               reduce_grad_hidden: bool = True) -> torch.Tensor:
    """Cross-entropy of `hidden @ weight.T` against `labels` without materialising the logits.

    hidden [..., H] (e.g. Megatron's [S, B, H]), weight [V_local, H], labels [...] (global ids, int64/int32,
    `ignore_index` where there is no loss). Per token: lse - logit[label] + z_loss * lse^2, with logits
    soft-capped as softcap * tanh(logits / softcap) when softcap is set. Returns fp32: a scalar for
    "mean" (over non-ignored tokens; 0 when every token is ignored) and "sum", else a tensor shaped like
    labels with 0 at ignored tokens. Gradients come back in the input dtypes, accumulated in fp32.
    reduce_grad_hidden=False (with tp_group): grad_hidden is this rank's partial sum, for the caller to reduce
    (sequence parallelism; see the module docstring).
    """
    validate(hidden, weight, labels, reduction=reduction, softcap=softcap, z_loss=z_loss)
    return LinearCrossEntropyFunction.apply(hidden, weight, labels, ignore_index, reduction, tp_group,
                                            softcap, float(z_loss), reduce_grad_hidden)
