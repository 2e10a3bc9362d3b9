"""Tensor-parallel split/merge per parameter kind: the one place that knows how Megatron shards a weight.

A "global" tensor is the unsharded Megatron tensor (TP=1 layout, vocab padded); it is also the layout of
the tensor in a torch_dist checkpoint, which is what makes checkpoints TP/PP-independent.

  column       split dim 0 (linear_qkv too: its rows are ordered by query group, and groups are split
               contiguously over TP ranks, so a plain split hands every rank whole groups)
  column_gated linear_fc1 of SwiGLU, [gate; up] globally but [gate_r; up_r] on rank r
  row          split dim 1 (linear_proj, linear_fc2)
  vocab        split dim 0 of the padded vocabulary (embedding, output layer)
  replicated   every rank holds the whole tensor (norms, router)

Pipeline stages and expert-parallel ranks own whole tensors; they select tensors by name (layer and
expert numbering), not by slicing, see `megatron_ssd.models.weights`.
"""
from __future__ import annotations

import torch

KINDS = ("column", "column_gated", "row", "vocab", "replicated")


def _check(kind: str, size: int, rank: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown parameter kind {kind!r}; one of {KINDS}")
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside a group of size {size}")


def split(tensor: torch.Tensor, kind: str, rank: int, size: int) -> torch.Tensor:
    """This rank's shard of a global tensor (a view where possible; `clone` it to own it)."""
    _check(kind, size, rank)
    if kind == "replicated" or size == 1:
        return tensor
    if kind in ("column", "vocab"):
        return _chunk(tensor, 0, rank, size)
    if kind == "row":
        return _chunk(tensor, 1, rank, size)
    gate, up = _chunk(tensor, 0, 0, 2), _chunk(tensor, 0, 1, 2)
    return torch.cat([_chunk(gate, 0, rank, size), _chunk(up, 0, rank, size)], dim=0)


def merge(shards: list[torch.Tensor], kind: str) -> torch.Tensor:
    """The global tensor from all ranks' shards (inverse of `split`)."""
    size = len(shards)
    _check(kind, size, 0)
    if kind == "replicated" or size == 1:
        return shards[0]
    if kind in ("column", "vocab"):
        return torch.cat(shards, dim=0)
    if kind == "row":
        return torch.cat(shards, dim=1)
    gates = [s.chunk(2, dim=0)[0] for s in shards]
    ups = [s.chunk(2, dim=0)[1] for s in shards]
    return torch.cat(gates + ups, dim=0)


def _chunk(t: torch.Tensor, dim: int, rank: int, size: int) -> torch.Tensor:
    if t.shape[dim] % size:
        raise ValueError(f"dimension {dim} of a {tuple(t.shape)} tensor is not divisible by {size} ranks")
    n = t.shape[dim] // size
    return t.narrow(dim, rank * n, n)
