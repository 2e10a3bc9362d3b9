"""Where the tokens of a packed (THD) micro-batch live under context parallelism.

Transformer Engine's load-balanced layout, which Megatron's CP attention and its THD RoPE assume: every padded
segment (a document, length a multiple of 2*CP) is cut into 2*CP equal chunks and CP rank r holds chunks r and
2*CP-1-r, so each rank gets an equal share of every document's causal attention work. The training batches
select a rank's positions with `cp_partition_index` (training.batches); the CPU CP attention
(models.cpu_cp_attention) uses the same functions to put the all-gathered keys back at their global positions
and to find each position's document. One home for the layout, below both (models may not import training).
"""
from __future__ import annotations

import numpy as np
import torch


def cp_partition_index(cu_seqlens_padded: np.ndarray, cp_size: int, cp_rank: int) -> torch.Tensor:
    """Positions of the THD sequence that context-parallel rank `cp_rank` holds, in order: for each padded
    segment (length a multiple of 2*cp_size, split into 2*cp_size equal chunks) chunk `cp_rank`, then chunk
    `2*cp_size - 1 - cp_rank`. Same result as Transformer Engine's `thd_get_partitioned_indices`."""
    if not 0 <= cp_rank < cp_size:
        raise ValueError(f"cp_rank={cp_rank} is outside [0, {cp_size})")
    cu = np.asarray(cu_seqlens_padded, dtype=np.int64)
    lengths = np.diff(cu)
    if (lengths % (2 * cp_size)).any():
        raise ValueError(f"padded segment lengths {lengths.tolist()} are not multiples of 2 x cp_size={2 * cp_size}")
    parts = []
    for start, length in zip(cu[:-1], lengths):
        chunk = length // (2 * cp_size)
        for k in (cp_rank, 2 * cp_size - 1 - cp_rank):
            parts.append(np.arange(start + k * chunk, start + (k + 1) * chunk))
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


def segment_ids(cu_seqlens_padded: np.ndarray) -> torch.Tensor:
    """[T] int64: the index of the (padded) segment each global position belongs to."""
    cu = np.asarray(cu_seqlens_padded, dtype=np.int64)
    return torch.from_numpy(np.repeat(np.arange(len(cu) - 1), np.diff(cu)))
