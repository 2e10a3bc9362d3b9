"""Which packed bins each rank trains on, and how a micro-batch reaches the model without attention crossing
documents.

Order. Iteration i consumes global stream positions [i*G, (i+1)*G) (G = train.global_batch_size bins), where
the stream is one seeded permutation of all bins per epoch, concatenated. The position is a pure function of
the iteration, so the checkpoint's iteration (plus the seed and the bin count, both checked on resume) *is* the
data-iterator position: a resumed run reads exactly the bins the uninterrupted run would have. Data-parallel
rank r takes the r-th contiguous G/DP slice and splits it into micro-batches of train.micro_batch_size bins.
Every TP/PP/CP rank of one data-parallel replica reads the same bins (memory-mapped, so this costs nothing).

Document masking. Megatron's Transformer Engine attention takes packed sequences in THD format
(`PackedSeqParams(qkv_format="thd", cu_seqlens_q/kv=...)`): the micro-batch is fed as one [1, B*S] sequence
whose segments never attend to each other. That is the GPU path. megatron-core 0.16.1's local (unfused)
`DotProductAttention` - the only attention available without TE, i.e. on CPU - refuses packed sequences
outright (`assert packed_seq_params is None, "Packed sequence is not supported by DotProductAttention"`), and
with `attention_mask=None` it applies a plain causal mask over the whole bin, which would let every document
see the ones packed before it. So on the local path we pass an explicit mask instead: per bin, a
block-diagonal causal boolean mask [B, 1, S, S] (True = masked; the convention of Megatron's
`attention_mask_func`, which the unfused softmax applies in place of its default causal mask). The two paths
compute the same function: RoPE scores depend only on the distance between query and key, which is the same
whether positions restart per document (THD) or run on across the bin (local path), as long as no score
crosses a boundary - which is exactly what the mask guarantees.

Context parallelism splits every document into 2*CP chunks and gives CP rank r chunks r and 2*CP-1-r, so every
rank holds an equal share of each document's causal attention work. That needs each document's length to be a
multiple of 2*CP: `pad_segments` re-lays the micro-batch with padded segments (padding is loss-masked) and
`cp_partition_index` (models.context_parallel) selects this rank's positions - the index Transformer Engine's
`thd_get_partitioned_indices` computes (Megatron's `get_thd_batch_on_this_cp_rank`), in plain torch so the
partition is testable without TE. CP micro-batches are THD on both paths: on GPU TE's attention reads them, on
CPU `models.cpu_cp_attention` (which the local layer spec gets under CP) reads the same `packed_seq_params` -
the global `cu_seqlens(_padded)` from which it rebuilds every rank's positions and every position's document.
A CP rank can hold no loss token at all (a document's completion may fall entirely in another rank's chunks);
the loss stays (sum, count) per rank, summed over ranks (`training.loss`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.packed import collate_packed
from ..errors import ConfigError
from ..models.context_parallel import cp_partition_index, segment_ids


class BatchOrder:
    """The global order of bins: one permutation per epoch, seeded by (seed, epoch)."""

    def __init__(self, num_bins: int, global_batch_size: int, seed: int):
        if num_bins < 1:
            raise ConfigError("the packed dataset has no bins; re-run `ssd stage=pack`.")
        self.num_bins, self.global_batch_size, self.seed = num_bins, global_batch_size, seed
        self._perm: dict[int, np.ndarray] = {}

    def _epoch(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm:
            if len(self._perm) > 4:
                self._perm.clear()
            self._perm[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_bins)
        return self._perm[epoch]

    def positions(self, start: int, count: int) -> np.ndarray:
        pos = np.arange(start, start + count, dtype=np.int64)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(pos // self.num_bins):
            sel = pos // self.num_bins == epoch
            out[sel] = self._epoch(int(epoch))[pos[sel] % self.num_bins]
        return out

    def global_batch(self, iteration: int) -> np.ndarray:
        """The G bin indices of `iteration`, in data-parallel rank order."""
        return self.positions(iteration * self.global_batch_size, self.global_batch_size)

    def rank_micro_batches(self, iteration: int, dp_rank: int, dp_size: int, micro_batch_size: int) -> list[np.ndarray]:
        per_rank = self.global_batch_size // dp_size
        mine = self.global_batch(iteration)[dp_rank * per_rank:(dp_rank + 1) * per_rank]
        return [mine[i:i + micro_batch_size] for i in range(0, per_rank, micro_batch_size)]

    def epoch_of(self, iteration: int) -> float:
        return iteration * self.global_batch_size / self.num_bins


@dataclass
class MicroBatch:
    """What `forward_step` feeds the model. Shapes: [B, S] on the local path, [1, T] in THD."""

    bins: np.ndarray
    tokens: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None
    packed_seq_params: Any = None
    seq_length: int = 0  # the sequence length the pipeline schedule communicates (before CP/SP splits)
    micro_batch_size: int = 1

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum().item())


def document_causal_mask(cu_seqlens: list[np.ndarray], seq_length: int) -> torch.Tensor:
    """[B, 1, S, S] bool, True where query i must NOT attend key j: j > i or j in another segment."""
    seg = torch.stack([segment_ids(cu) for cu in cu_seqlens])
    if seg.shape[1] != seq_length:
        raise ValueError(f"cu_seqlens cover {seg.shape[1]} positions, expected {seq_length}")
    same_doc = seg[:, :, None] == seg[:, None, :]
    causal = torch.ones(seq_length, seq_length, dtype=torch.bool).tril_()
    return ~(same_doc & causal).unsqueeze(1)


def pad_segments(arrays: dict[str, np.ndarray], cu_seqlens: np.ndarray, multiple: int,
                 pad_values: dict[str, Any], total_multiple: int | None = None,
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Re-lay 1-D per-position `arrays` so every segment starts at a multiple of `multiple`, and the total length
    is a multiple of `total_multiple` (itself a multiple of `multiple`; the extra positions form one more,
    loss-free segment at the end).

    Returns (arrays, cu_seqlens, cu_seqlens_padded): segment k's positions move to
    [cu_padded[k], cu_padded[k] + len_k) and the gaps are filled with `pad_values[name]`; `cu_seqlens` are the
    real lengths' prefix sums (TE's convention for THD with padding).
    """
    total_multiple = total_multiple or multiple
    if total_multiple % multiple:
        raise ValueError(f"total_multiple={total_multiple} must be a multiple of multiple={multiple}")
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    lengths = np.diff(cu)
    padded = -(-lengths // multiple) * multiple
    extra = -int(padded.sum()) % total_multiple
    if extra:
        lengths, padded = np.append(lengths, extra), np.append(padded, extra)
    cu_real = np.concatenate([[0], np.cumsum(lengths)])
    cu_padded = np.concatenate([[0], np.cumsum(padded)])
    n_src = int(cu[-1])
    src = np.arange(n_src)
    dst = src - np.repeat(cu[:-1], np.diff(cu)) + np.repeat(cu_padded[:len(cu) - 1], np.diff(cu))
    out = {}
    for name, arr in arrays.items():
        new = np.full(int(cu_padded[-1]), pad_values[name], dtype=arr.dtype)
        new[dst] = arr[src]
        out[name] = new
    return out, cu_real.astype(np.int32), cu_padded.astype(np.int32)


class MicroBatchBuilder:
    """Turns bin indices into a `MicroBatch` for this rank (device, THD or mask, CP slice).

    `thd`: whether the attention takes packed sequences (TE's does); with `cp_size > 1` the micro-batch is THD
    regardless (CP has no other layout; on CPU the CP attention of `models.cpu_cp_attention` reads it)."""

    def __init__(self, dataset, *, thd: bool, cp_size: int = 1, cp_rank: int = 0, sequence_parallel_size: int = 1,
                 fp8: bool = False, device: torch.device | str = "cpu"):
        import math

        thd = thd or cp_size > 1
        self.dataset, self.thd, self.cp_size, self.cp_rank = dataset, thd, cp_size, cp_rank
        self.device = torch.device(device)
        self.seq_length = int(dataset.seq_length)
        # THD layout constraints: with CP every document splits into 2*CP equal chunks; each rank's share of the
        # sequence must split evenly over SP ranks, and FP8 GEMMs want token counts that are multiples of 16.
        self.segment_multiple = 2 * cp_size if cp_size > 1 else 1
        self.total_multiple = math.lcm(self.segment_multiple, cp_size * sequence_parallel_size * (16 if fp8 else 1))

    def __call__(self, bins: np.ndarray) -> MicroBatch:
        items = [self.dataset[int(b)] for b in bins]
        cus = [np.asarray(it["cu_seqlens"], dtype=np.int64) for it in items]
        if not self.thd:
            batch = collate_packed(items)
            return MicroBatch(
                bins=np.asarray(bins),
                tokens=batch["tokens"].to(self.device),
                labels=batch["labels"].to(self.device),
                loss_mask=batch["loss_mask"].to(self.device),
                position_ids=batch["position_ids"].to(self.device),
                attention_mask=document_causal_mask(cus, self.seq_length).to(self.device),
                seq_length=self.seq_length,
                micro_batch_size=len(bins),
            )
        return self._thd(bins, items, [np.diff(cu) for cu in cus])

    def _thd(self, bins, items, lengths) -> MicroBatch:
        from megatron.core.packed_seq_params import PackedSeqParams

        flat = {k: np.concatenate([it[k] for it in items]) for k in ("tokens", "labels", "loss_mask", "position_ids")}
        cu = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
        pads = {"tokens": 0, "labels": 0, "loss_mask": np.float32(0.0), "position_ids": 0}
        flat, cu, cu_padded = pad_segments(flat, cu, self.segment_multiple, pads, self.total_multiple)
        tensors = {k: torch.from_numpy(v).unsqueeze(0).to(self.device) for k, v in flat.items()}
        total = len(flat["tokens"])
        cu_t = torch.from_numpy(cu).to(self.device)
        if self.cp_size == 1:  # no padding inside segments: cu == cu_padded
            max_len = int(np.diff(cu).max())
            params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu_t, cu_seqlens_kv=cu_t,
                                     max_seqlen_q=max_len, max_seqlen_kv=max_len)
        else:  # cu_seqlens stay global (TE's CP attention reads them so); the tensors hold this rank's part
            cu_p = torch.from_numpy(cu_padded).to(self.device)
            max_len = int(np.diff(cu_padded).max())
            params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu_t, cu_seqlens_kv=cu_t,
                                     cu_seqlens_q_padded=cu_p, cu_seqlens_kv_padded=cu_p,
                                     max_seqlen_q=max_len, max_seqlen_kv=max_len)
            index = cp_partition_index(cu_padded, self.cp_size, self.cp_rank).to(self.device)
            tensors = {k: v.index_select(1, index) for k, v in tensors.items()}
        return MicroBatch(
            bins=np.asarray(bins),
            tokens=tensors["tokens"],
            labels=tensors["labels"],
            loss_mask=tensors["loss_mask"],
            position_ids=tensors["position_ids"],
            packed_seq_params=params,
            seq_length=total,
            micro_batch_size=1,
        )
