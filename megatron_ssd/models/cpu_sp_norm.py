"""Sequence parallelism on the CPU (no Transformer Engine / Apex) layer spec: a torch norm that accepts it.

Why. Megatron's local spec builds its norms with `WrappedTorchNorm`, which refuses `sequence_parallel`
(megatron-core 0.16.1, transformer/torch_norm.py) although a norm is position-wise: under sequence parallelism a
norm sees this TP rank's slice of the sequence and computes exactly what it would on the whole one. What a
sequence-parallel norm needs besides is that its weight gradient, a sum over the positions of every TP rank, be
all-reduced over the TP group; Megatron does that in `finalize_model_grads` for every parameter marked
`sequence_parallel=True`, the mark TE's and Apex's norms set. `CPUSequenceParallelNorm` is that norm: torch's
RMSNorm/LayerNorm with the mark. Everything else sequence parallelism does in the local spec (the all-gather before
the column-parallel linears, the reduce-scatter after the row-parallel ones, the embedding's scatter, the MoE
dispatcher's gathers) is Megatron's own code over gloo. Megatron's MoE layer refuses TP > 1 without sequence
parallelism in training, so on a CPU this is what lets a TP x EP MoE layout train at all.
"""
from __future__ import annotations

import dataclasses

import torch


class CPUSequenceParallelNorm:
    """Builds torch's RMSNorm or LayerNorm (as `WrappedTorchNorm` does) and marks its parameters
    `sequence_parallel` so that `finalize_model_grads` sums their gradients over the TP ranks."""

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, persist_layer_norm: bool = False,
                zero_centered_gamma: bool = False, normalization: str = "LayerNorm"):
        if config.layernorm_zero_centered_gamma or config.persist_layer_norm or config.memory_efficient_layer_norm:
            raise ValueError("zero-centered gamma, persist_layer_norm and memory_efficient_layer_norm need TE/Apex.")
        kinds = {"RMSNorm": torch.nn.RMSNorm, "LayerNorm": torch.nn.LayerNorm}
        if config.normalization not in kinds:
            raise ValueError(f"normalization {config.normalization!r}: the CPU norm has RMSNorm and LayerNorm.")
        norm = kinds[config.normalization](normalized_shape=hidden_size, eps=eps)
        for p in norm.parameters():
            setattr(p, "sequence_parallel", config.sequence_parallel)
        return norm


def with_cpu_sp_norms(block_spec):
    """The block spec with every `WrappedTorchNorm` (the layers' norms, qk-norms and the final norm) replaced by
    `CPUSequenceParallelNorm` (new spec objects; megatron-core may share one layer spec between layers)."""
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    def swap(node):
        if node is WrappedTorchNorm:
            return CPUSequenceParallelNorm
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            changes = {f.name: swap(getattr(node, f.name)) for f in dataclasses.fields(node)}
            changed = {k: v for k, v in changes.items() if v is not getattr(node, k)}
            return dataclasses.replace(node, **changed) if changed else node
        if isinstance(node, list):
            return [swap(x) for x in node]
        return node

    return swap(block_spec)
