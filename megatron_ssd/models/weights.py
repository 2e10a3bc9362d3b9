"""Move weights between a GPTModel (any TP/PP/EP rank, local or Transformer Engine spec) and HF tensors.

`load_hf_weights(model, hf_folder)` fills this rank's shard of the model from an HF folder;
`export_hf_tensors(model)` reads an unsharded (TP=PP=EP=1) model back into HF tensors. Names are
translated to canonical global names first (`canonical_name`), then `mapping.ArchMapping` converts and
`sharding.split` cuts the rank's piece.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .arch import ArchInfo
from .hf_io import HFReader
from .mapping import ArchMapping
from .sharding import split

# Transformer Engine spec names -> local spec names (same tensors; TE fuses the norms into the linears
# and stores grouped-GEMM experts as weight0..weightN-1 of one module).
_TE_ALIASES = (
    (re.compile(r"^(decoder\.layers\.\d+\.)self_attention\.linear_qkv\.layer_norm_weight$"), r"\1input_layernorm.weight"),
    (re.compile(r"^(decoder\.layers\.\d+\.)mlp\.linear_fc1\.layer_norm_weight$"), r"\1pre_mlp_layernorm.weight"),
    (re.compile(r"^(decoder\.layers\.\d+\.mlp\.experts\.)(linear_fc[12])\.weight(\d+)$"), r"\1local_experts.\3.\2.weight"),
)
_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.")
_EXPERT = re.compile(r"\.mlp\.experts\.local_experts\.(\d+)\.")


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and not hasattr(model, "decoder"):
        model = model.module  # DDP / Float16Module wrappers
    return model


def _numbering(model: Any) -> tuple[dict[int, int], int]:
    """Local layer index -> global layer index, and this rank's first global expert index."""
    from megatron.core import parallel_state as ps

    layers = {k: layer.layer_number - 1 for k, layer in enumerate(model.decoder.layers)}
    num_experts = getattr(model.config, "num_moe_experts", None) or 0
    expert_offset = 0
    if num_experts:
        ep = ps.get_expert_model_parallel_world_size()
        expert_offset = ps.get_expert_model_parallel_rank() * (num_experts // ep)
    return layers, expert_offset


def canonical_name(local_name: str, layers: dict[int, int], expert_offset: int) -> str:
    """A rank's state-dict name -> the mapping's name (local spec, global layer and expert numbers)."""
    name = local_name
    for pattern, repl in _TE_ALIASES:
        name = pattern.sub(repl, name)
    name = _LAYER.sub(lambda m: f"decoder.layers.{layers[int(m.group(1))]}.", name)
    return _EXPERT.sub(lambda m: f".mlp.experts.local_experts.{int(m.group(1)) + expert_offset}.", name)


def _tp(kind_is_expert: bool) -> tuple[int, int]:
    from megatron.core import parallel_state as ps

    if kind_is_expert:
        return ps.get_expert_tensor_parallel_rank(), ps.get_expert_tensor_parallel_world_size()
    return ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if not k.endswith("_extra_state")}


@torch.no_grad()
def load_hf_weights(model: Any, hf: str | Path | HFReader, info: ArchInfo) -> set[str]:
    """Copy this rank's shard of every parameter of `model` from the HF folder; return the HF names used.

    Every model tensor must be covered by the mapping, and shapes must agree exactly (after vocab padding
    and TP split), else ConfigError: a wrong config would otherwise load silently wrong weights.
    """
    model = _unwrap(model)
    reader = hf if isinstance(hf, HFReader) else HFReader(hf)
    mapping = ArchMapping(info)
    layers, expert_offset = _numbering(model)
    padded_vocab = model.vocab_size
    used: set[str] = set()
    for local_name, param in _weights(model).items():
        name = canonical_name(local_name, layers, expert_offset)
        try:
            rule, bindings = mapping.find(name)
        except KeyError as exc:
            raise ConfigError(str(exc)) from None
        hf_names = rule.hf_names(bindings)
        full = mapping.to_megatron(rule, [reader.get(n) for n in hf_names], padded_vocab)
        rank, size = _tp("local_experts" in name)
        shard = split(full, rule.kind, rank, size)
        if tuple(shard.shape) != tuple(param.shape):
            raise ConfigError(
                f"{name}: HF tensors {hf_names} give shape {tuple(shard.shape)} on TP rank {rank}/{size}, the "
                f"model expects {tuple(param.shape)}; config.json does not match the weights."
            )
        param.copy_(shard)
        used.update(hf_names)
    return used


@torch.no_grad()
def export_hf_tensors(model: Any, info: ArchInfo) -> dict[str, torch.Tensor]:
    """HF tensors of an unsharded model (TP=PP=EP=1), vocab padding removed; every HF name exactly once."""
    from megatron.core import parallel_state as ps

    if (ps.get_tensor_model_parallel_world_size(), ps.get_pipeline_model_parallel_world_size(),
            ps.get_expert_model_parallel_world_size()) != (1, 1, 1):
        raise RuntimeError("export_hf_tensors needs an unsharded model (TP=PP=EP=1)")
    model = _unwrap(model)
    mapping = ArchMapping(info)
    layers, _ = _numbering(model)
    out: dict[str, torch.Tensor] = {}
    for local_name, param in _weights(model).items():
        name = canonical_name(local_name, layers, 0)
        rule, bindings = mapping.find(name)
        if not mapping.exported(rule):
            continue
        for hf_name, t in zip(rule.hf_names(bindings), mapping.to_hf(rule, param.detach())):
            if hf_name in out:
                raise RuntimeError(f"HF tensor {hf_name} produced twice")
            out[hf_name] = t.detach().to("cpu", copy=True)
    return out
