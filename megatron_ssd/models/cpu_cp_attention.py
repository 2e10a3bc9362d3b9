"""Context-parallel core attention for the CPU (no Transformer Engine) layer spec: the CPU *reference* path.

Why this is hand-written. On GPUs Megatron's attention under CP is Transformer Engine's (`TEDotProductAttention`
on THD packed sequences, `cp_comm_type` p2p/all-gather/a2a). TE has no CPU build; megatron-core 0.16.1's local
`DotProductAttention` refuses CP (`assert context_parallel_size == 1`) and packed sequences; PyTorch's
experimental `context_parallel` rings only the CUDA SDPA kernels (flash/efficient/cuDNN, `is_causal` and no
mask) or flex attention over DTensors, not Megatron's THD batches over gloo. No maintained library gives CP
attention on CPU/gloo, so this module does the simplest correct thing, to let every CP layout (TP x CP x EP
included) train and be checked against one rank on a CPU. It is not a fast path: each rank holds the keys
and values of the whole sequence and the scores of its queries against all of them.

What it computes is what TE's THD attention computes on GPU, with TE's all-gather variant of CP:
  - the micro-batch is THD (`training.batches.MicroBatchBuilder`): every padded document is cut in 2*CP
    chunks and this rank holds chunks r and 2*CP-1-r (`models.context_parallel`); `packed_seq_params`
    carries the global `cu_seqlens(_padded)`, as for TE;
  - RoPE is applied before this module by Megatron's own THD path (`_apply_rotary_pos_emb_thd` with the CP
    group): each chunk rotated at its positions inside its document; qk-norm runs before RoPE as usual;
  - K and V are all-gathered over the CP group with Megatron's sequence-parallel gather (its backward
    reduce-scatters the gradient: every rank's queries used every rank's keys), put back at their global
    positions, and each local query attends to the keys of its own document at positions <= its own
    (causal + same-document mask from the padded segment boundaries);
  - GQA: the KV heads are repeated to the query heads (as the local DotProductAttention does);
  - scores, softmax and the weighted sum run in float32 and the result is cast back to the input dtype.
Padding inside a segment sits at its end, after every real token of the document, so no real token attends
to it; padding positions attend within their segment and are loss-masked (TE skips them instead - the real
tokens' outputs are the same).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.tensor_parallel import gather_from_sequence_parallel_region
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule

from .context_parallel import cp_partition_index, segment_ids


@functools.lru_cache(maxsize=8)
def cp_attention_layout(cu_seqlens_padded: tuple[int, ...], cp_size: int, cp_rank: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(to_global, allowed) for one THD micro-batch (cached: every layer of a micro-batch asks again).

    to_global [T]: index into the rank-major all-gather of all CP ranks' tokens that yields the tokens in global
    order. allowed [t, T] bool: local query i may attend global key j (same padded segment, j <= position of i).
    """
    cu = np.asarray(cu_seqlens_padded, dtype=np.int64)
    gathered = torch.cat([cp_partition_index(cu, cp_size, r) for r in range(cp_size)])
    to_global = torch.argsort(gathered)
    mine = cp_partition_index(cu, cp_size, cp_rank)
    seg = segment_ids(cu)
    keys = torch.arange(int(cu[-1]))
    allowed = (seg[mine][:, None] == seg[None, :]) & (keys[None, :] <= mine[:, None])
    return to_global, allowed


def document_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor,
                       softmax_scale: float) -> torch.Tensor:
    """query [t, np, hn], key/value [T, ng, hn] (np a multiple of ng), allowed [t, T] -> [t, np * hn], in
    float32 and cast back to query's dtype."""
    heads, groups = query.size(1), key.size(1)
    if heads % groups:
        raise ValueError(f"{heads} query heads are not a multiple of {groups} key/value heads")
    if heads > groups:
        key = key.repeat_interleave(heads // groups, dim=1)
        value = value.repeat_interleave(heads // groups, dim=1)
    q, k, v = (x.float().permute(1, 0, 2).unsqueeze(0) for x in (query, key, value))  # [1, np, s, hn]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.to(q.device)[None, None], scale=softmax_scale)
    return out.squeeze(0).permute(1, 0, 2).reshape(query.size(0), -1).to(query.dtype)


class CPUContextParallelAttention(MegatronModule):
    """Core attention (the `core_attention` submodule of SelfAttention) for THD micro-batches under CP on CPU.

    Built by megatron-core from the layer spec with DotProductAttention's constructor arguments; holds no
    parameters, so checkpoints are the same as with the local or the TE spec.
    """

    def __init__(self, config, layer_number: int, attn_mask_type: AttnMaskType, attention_type: str,
                 attention_dropout: Optional[float] = None, softmax_scale: Optional[float] = None,
                 cp_comm_type: Optional[str] = None, pg_collection=None):
        super().__init__(config=config)
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        unsupported = {
            "attention_dropout": dropout != 0.0,
            "window_size": config.window_size is not None,
            "softmax_type": config.softmax_type != "vanilla",
            "attn_mask_type": attn_mask_type not in (AttnMaskType.causal, AttnMaskType.padding_causal),
        }
        bad = [name for name, flag in unsupported.items() if flag]
        if bad:
            raise ValueError(f"the CPU context-parallel attention supports causal self-attention without dropout, "
                             f"windows or softmax offsets; this model sets {', '.join(bad)}. Run with "
                             "parallel.context=1 on CPU, or on GPUs with Transformer Engine.")
        self.layer_number = max(1, layer_number)
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(config.kv_channels)
        cp_group = getattr(pg_collection, "cp", None) if pg_collection is not None else None
        self.cp_group = cp_group if cp_group is not None else parallel_state.get_context_parallel_group()

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                attn_mask_type: Optional[AttnMaskType] = None, attention_bias=None, packed_seq_params=None):
        """query [t, np, hn], key/value [t, ng, hn] of this rank's tokens (THD) -> [t, np * hn]."""
        if packed_seq_params is None or packed_seq_params.qkv_format != "thd":
            raise ValueError("the CPU context-parallel attention takes THD micro-batches (packed_seq_params with "
                             "qkv_format='thd'); training.batches.MicroBatchBuilder builds them whenever "
                             "parallel.context > 1.")
        if attention_bias is not None:
            raise ValueError("the CPU context-parallel attention takes no attention_bias")
        cu = packed_seq_params.cu_seqlens_q_padded
        cu = packed_seq_params.cu_seqlens_q if cu is None else cu
        cu_kv = packed_seq_params.cu_seqlens_kv_padded
        cu_kv = packed_seq_params.cu_seqlens_kv if cu_kv is None else cu_kv
        if not torch.equal(cu.cpu(), cu_kv.cpu()):
            raise ValueError("the CPU context-parallel attention is self-attention: cu_seqlens_q and _kv differ")
        cp_size, cp_rank = self.cp_group.size(), self.cp_group.rank()
        to_global, allowed = cp_attention_layout(tuple(int(x) for x in cu.tolist()), cp_size, cp_rank)
        if query.size(0) * cp_size != allowed.size(1):
            raise ValueError(f"this rank holds {query.size(0)} tokens, but cu_seqlens_padded covers "
                             f"{allowed.size(1)} = {cp_size} CP ranks x {allowed.size(1) // cp_size}")
        if cp_size > 1:
            key, value = (gather_from_sequence_parallel_region(x, tensor_parallel_output_grad=True,
                                                               group=self.cp_group)
                          .index_select(0, to_global.to(x.device)) for x in (key, value))
        return document_attention(query, key, value, allowed, self.softmax_scale)


def with_cpu_cp_attention(block_spec):
    """The block spec with every layer's local `DotProductAttention` replaced by `CPUContextParallelAttention`
    (new spec objects; megatron-core may share one layer spec between layers)."""
    import dataclasses

    from megatron.core.transformer.dot_product_attention import DotProductAttention

    def swap(layer):
        attn = layer.submodules.self_attention
        if attn.submodules.core_attention is not DotProductAttention:
            return layer
        attn = dataclasses.replace(attn, submodules=dataclasses.replace(
            attn.submodules, core_attention=CPUContextParallelAttention))
        return dataclasses.replace(layer, submodules=dataclasses.replace(layer.submodules, self_attention=attn))

    return dataclasses.replace(block_spec, layer_specs=[swap(layer) for layer in block_spec.layer_specs])
