"""Validate a parallel layout against a model before any process group or model is built.

Megatron would fail late (an assert deep inside a layer constructor, or a hang) on a layout that cannot
shard the model; here every problem is collected and reported at once, naming the config keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config.parallel import ParallelConfig
from ..config.train import TrainConfig
from ..errors import ConfigError
from .arch import ArchInfo, describe, pad_vocab_size


@dataclass(frozen=True)
class Layout:
    tensor: int
    pipeline: int
    virtual_pipeline: int | None
    context: int
    expert: int
    data: int | None
    padded_vocab_size: int
    layers_per_stage: int


def _model_info(model: Any) -> ArchInfo:
    return model if isinstance(model, ArchInfo) else describe(model)


def check_layout(
    model: Any,
    parallel: ParallelConfig,
    train: TrainConfig | None = None,
    *,
    world_size: int | None = None,
    make_vocab_size_divisible_by: int = 128,
    padded_vocab_size: int | None = None,
    cuda: bool | None = None,
) -> Layout:
    """Check `parallel` (and `train`'s batch sizes) against `model` (HF folder/config or ArchInfo).

    `world_size` defaults to parallel.nproc_per_node x parallel.nnodes. `padded_vocab_size`: the size a
    checkpoint was saved with, when loading one. Raises ConfigError listing every problem.
    """
    m = _model_info(model)
    p = parallel
    cuda = torch.cuda.is_available() if cuda is None else cuda
    errors: list[str] = []
    for key in ("tensor", "pipeline", "context", "expert"):
        if getattr(p, key) < 1:
            errors.append(f"parallel.{key}={getattr(p, key)}: must be at least 1.")
    if errors:
        raise ConfigError("Invalid parallel layout:\n  - " + "\n  - ".join(errors))

    tp, pp, cp, ep, vpp = p.tensor, p.pipeline, p.context, p.expert, p.virtual_pipeline
    if m.num_attention_heads % tp:
        errors.append(f"parallel.tensor={tp} does not divide num_attention_heads={m.num_attention_heads} of "
                      f"the {m.arch} model; choose a divisor of it.")
    if m.num_query_groups % tp:
        errors.append(f"parallel.tensor={tp} does not divide num_key_value_heads={m.num_query_groups} (query "
                      f"groups) of the {m.arch} model; Megatron does not replicate KV heads across TP ranks.")
    if m.ffn_hidden_size % tp and not m.is_moe:
        errors.append(f"parallel.tensor={tp} does not divide intermediate_size={m.ffn_hidden_size}.")
    if m.is_moe and m.moe_ffn_hidden_size % tp:
        errors.append(f"parallel.tensor={tp} does not divide moe_intermediate_size={m.moe_ffn_hidden_size} "
                      "(experts are tensor-parallel over the same ranks).")
    stages = pp * (vpp or 1)
    if vpp is not None and (vpp < 1 or pp < 2):
        errors.append(f"parallel.virtual_pipeline={vpp} needs parallel.pipeline >= 2 and a value >= 1.")
    elif m.num_layers % stages:
        what = f"parallel.pipeline={pp}" + (f" x parallel.virtual_pipeline={vpp}" if vpp else "")
        errors.append(f"{what} = {stages} does not divide num_hidden_layers={m.num_layers}.")
    if ep > 1 and not m.is_moe:
        errors.append(f"parallel.expert={ep} needs a mixture-of-experts model; {m.arch} is dense (use 1).")
    if m.is_moe and m.num_experts % ep:
        errors.append(f"parallel.expert={ep} does not divide num_experts={m.num_experts}.")
    vocab = padded_vocab_size or pad_vocab_size(m.vocab_size, tp, make_vocab_size_divisible_by)
    if vocab < m.vocab_size:
        errors.append(f"padded vocab size {vocab} is smaller than the model's vocab_size={m.vocab_size}.")
    if vocab % tp:
        errors.append(f"parallel.tensor={tp} does not divide the checkpoint's padded vocab size {vocab}; "
                      "reconvert the base model with this TP (ssd-convert hf-to-megatron --tp) or pick a divisor.")
    if p.sequence_parallel and not cuda:
        errors.append("parallel.sequence_parallel needs Transformer Engine/Apex kernels: GPU only.")

    world = world_size if world_size is not None else p.nproc_per_node * p.nnodes
    dp = None
    model_parallel = tp * pp * cp
    if world % model_parallel:
        errors.append(f"world size {world} is not divisible by parallel.tensor x parallel.pipeline x "
                      f"parallel.context = {model_parallel}.")
    else:
        dp = world // model_parallel
        if ep > 1 and (dp * cp) % ep:
            errors.append(f"parallel.expert={ep} must divide data x context parallel size ({dp * cp}).")
        if train is not None:
            mb, gb = train.micro_batch_size, train.global_batch_size
            if mb < 1 or gb % (mb * dp):
                errors.append(f"train.global_batch_size={gb} is not divisible by train.micro_batch_size={mb} x "
                              f"data-parallel size {dp} (world {world} / (tensor x pipeline x context)).")
            if cp > 1 and train.seq_length % (2 * cp):
                errors.append(f"train.seq_length={train.seq_length} must be divisible by 2 x parallel.context.")
    if errors:
        raise ConfigError("Invalid parallel layout for this model:\n  - " + "\n  - ".join(errors))
    return Layout(tp, pp, vpp, cp, ep, dp, vocab, m.num_layers // stages)
