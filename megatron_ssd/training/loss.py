"""The forward step and the loss: cross-entropy on completion tokens, normalised per token over the global batch.

Normalisation. Every micro-batch's loss function returns (sum of its masked token losses, its number of loss
tokens); with `TransformerConfig.calculate_per_token_loss=True` megatron-core's schedules then neither divide
by the micro-batch's token count nor by the number of micro-batches, and `finalize_model_grads` divides the
summed gradients by the token count all-reduced over every micro-batch and data(-context)-parallel rank. The
gradient is therefore that of  sum(token losses) / sum(loss tokens)  over the whole global batch - not a mean
of micro-batch means, which would weight a token of a short micro-batch more than one of a long micro-batch.
The logged loss is reduced the same way (`reduce_losses`).

Loss heads (`train.loss_impl`):
  megatron         GPTModel computes the logits with its output layer and Megatron's vocab-parallel
                   cross-entropy (`fused_vocab_parallel_cross_entropy` when `cross_entropy_loss_fusion` is on).
  fused_linear_ce  the decoder's final hidden states go straight into `megatron_ssd.kernels.
                   fused_linear_cross_entropy` with the output-layer weight (the shared embedding weight when
                   tied), so [tokens, vocab] logits are never materialised. Megatron's GPTModel returns the
                   hidden states instead of logits when its `post_process` flag is off (`_postprocess`), which
                   is what `hidden_states_only` switches for the duration of the forward call; the decoder's
                   final norm belongs to the decoder and still runs.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from typing import Iterator

import torch

from ..errors import ConfigError
from ..kernels import fused_linear_cross_entropy
from ..models.parallel import on_gpu
from .batches import MicroBatch

IGNORE_INDEX = -100
LOSS_IMPLS = ("megatron", "fused_linear_ce")


def gpt_of(model):
    """The GPTModel inside DDP / Float16Module wrappers."""
    from megatron.core.utils import unwrap_model

    return unwrap_model(model)


@contextlib.contextmanager
def hidden_states_only(gpt):
    """Make `gpt.forward` return the decoder output [s, b, h] instead of logits (see module docstring)."""
    saved = gpt.post_process
    gpt.post_process = False
    try:
        yield
    finally:
        gpt.post_process = saved


def output_weight(gpt) -> torch.Tensor:
    """The [V/tp, H] weight of the output projection on this (last) pipeline stage."""
    if gpt.share_embeddings_and_output_weights:
        return gpt.shared_embedding_or_output_weight()
    return gpt.output_layer.weight


def masked_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Megatron loss-function contract with per-token loss: (sum, token count, values to report)."""
    losses = output_tensor.float().reshape(-1)
    mask = loss_mask.reshape(-1).float()
    loss_sum = torch.sum(losses * mask)
    num_tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach(), num_tokens.detach().float()])
    return loss_sum, num_tokens, {"lm loss": report}


@dataclass
class ForwardStep:
    """`forward_step_func` for megatron-core's `get_forward_backward_func()` schedules."""

    loss_impl: str = "megatron"
    sequence_parallel: bool = False

    def __post_init__(self):
        if self.loss_impl not in LOSS_IMPLS:
            raise ConfigError(f"train.loss_impl={self.loss_impl!r}: choose one of {', '.join(LOSS_IMPLS)}.")

    def __call__(self, data_iterator: Iterator[MicroBatch], model):
        mb = next(data_iterator)
        gpt = gpt_of(model)
        kwargs = dict(attention_mask=mb.attention_mask, packed_seq_params=mb.packed_seq_params)
        if self.loss_impl == "fused_linear_ce" and gpt.post_process:
            with hidden_states_only(gpt):
                hidden = model(mb.tokens, mb.position_ids, **kwargs)
            output = self._fused_linear_ce(gpt, hidden, mb)
        else:
            # Intermediate pipeline stages return hidden states; the last one per-token losses [b, s].
            output = model(mb.tokens, mb.position_ids, labels=mb.labels, **kwargs)
        return output, partial(masked_loss, mb.loss_mask)

    def _fused_linear_ce(self, gpt, hidden: torch.Tensor, mb: MicroBatch) -> torch.Tensor:
        from megatron.core import parallel_state as ps

        tp_group = ps.get_tensor_model_parallel_group() if ps.get_tensor_model_parallel_world_size() > 1 else None
        return fused_linear_ce_losses(hidden, output_weight(gpt), mb.labels, mb.loss_mask, tp_group=tp_group,
                                      sequence_parallel=self.sequence_parallel)


def fused_linear_ce_losses(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                           loss_mask: torch.Tensor, *, tp_group=None, sequence_parallel: bool = False) -> torch.Tensor:
    """Per-token losses [b, s] of the fused head: decoder output `hidden` [s(/tp under SP), b, H], this rank's
    vocab shard `weight` [V/tp, H], `labels`/`loss_mask` [b, s] (this CP rank's part).

    Under sequence parallelism the decoder output is split along the sequence over TP ranks; the kernel needs
    every token, so it is gathered first. The kernel then leaves grad_hidden as this rank's partial sum and the
    gather's backward reduce-scatters it (ColumnParallelLinear's pattern under SP). Loss-masked positions are
    ignored by the kernel (no FLOPs, zero loss and gradient); a rank with no loss token returns zeros.
    """
    # why local: megatron-core takes seconds to import; CPU-only stages import this module.
    from megatron.core.tensor_parallel import gather_from_sequence_parallel_region

    # Float16Module hands the last stage's output back in fp32; the bf16 -> fp32 -> bf16 trip is exact, and
    # casting before the SP gather halves its traffic.
    hidden = hidden.to(weight.dtype)
    if sequence_parallel and tp_group is not None:
        hidden = gather_from_sequence_parallel_region(hidden, tensor_parallel_output_grad=True, group=tp_group)
    labels = labels.masked_fill(loss_mask == 0, IGNORE_INDEX).transpose(0, 1)  # [s, b] like hidden
    per_token = fused_linear_cross_entropy(hidden, weight, labels, ignore_index=IGNORE_INDEX, reduction="none",
                                           tp_group=tp_group, reduce_grad_hidden=not sequence_parallel)
    return per_token.transpose(0, 1)  # [b, s], as GPTModel returns its losses


def micro_batch_losses(losses: list[dict]) -> torch.Tensor:
    """[num_microbatches, 2] (loss sum, loss tokens) on the last pipeline stage; empty elsewhere."""
    if not losses:
        return torch.zeros(0, 2)
    return torch.stack([d["lm loss"].float().cpu() for d in losses])


def reduce_losses(per_mb: torch.Tensor, *, is_last_stage: bool) -> tuple[float, int]:
    """Global (loss sum / loss tokens, loss tokens): summed over this rank's micro-batches, all-reduced over
    data and context parallel ranks, then shared from the last pipeline stage with every stage."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    device = torch.device("cuda") if on_gpu() else torch.device("cpu")
    total = per_mb.sum(0).double().to(device) if is_last_stage and len(per_mb) else torch.zeros(2, dtype=torch.float64, device=device)
    if is_last_stage:
        dist.all_reduce(total, group=ps.get_data_parallel_group(with_context_parallel=True))
    if ps.get_pipeline_model_parallel_world_size() > 1:
        last = ps.get_pipeline_model_parallel_last_rank()
        dist.broadcast(total, src=last, group=ps.get_pipeline_model_parallel_group())
    loss_sum, tokens = float(total[0]), int(round(float(total[1])))
    # A global batch without loss tokens (possible only with hand-made data) contributes no gradient.
    return (loss_sum / tokens if tokens else 0.0 * loss_sum), tokens
