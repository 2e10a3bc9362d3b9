"""The CPU spec's sequence-parallel norms (models/cpu_sp_norm.py): every torch norm of the local spec is swapped,
and each built norm marks its weight so that finalize_model_grads sums it over the TP ranks. That the TP2 + SP
losses and gradient norms equal TP1's is tests/training/test_multi_rank.py (layout tp2_sp)."""
from __future__ import annotations

import dataclasses

import torch

import tiny_models as tiny
from megatron_ssd.config.parallel import ParallelConfig
from megatron_ssd.models.cpu_sp_norm import CPUSequenceParallelNorm
from megatron_ssd.models.parallel import megatron_world
from megatron_ssd.models.provider import layer_spec, transformer_config


def classes_in(node, out):
    if isinstance(node, type):
        out.add(node)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            classes_in(getattr(node, f.name), out)
    elif isinstance(node, list):
        for x in node:
            classes_in(x, out)
    return out


def test_every_norm_of_the_local_spec_accepts_sequence_parallelism():
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    config = transformer_config(tiny.hf_config("qwen3_moe"), ParallelConfig(), use_te=False)
    with megatron_world():
        plain = layer_spec(config, use_te=False)
        config.sequence_parallel = True  # set after construction: TransformerConfig refuses SP at TP=1
        sp = layer_spec(config, use_te=False)
    assert WrappedTorchNorm in classes_in(plain, set())
    found = classes_in(sp, set())
    assert WrappedTorchNorm not in found and CPUSequenceParallelNorm in found
    layer = sp.layer_specs[0].submodules
    attn = layer.self_attention.submodules
    assert {layer.input_layernorm, layer.pre_mlp_layernorm, attn.q_layernorm, attn.k_layernorm,
            sp.layer_norm} == {CPUSequenceParallelNorm}
    norm = CPUSequenceParallelNorm(config, 8, eps=1e-6)
    assert isinstance(norm, torch.nn.RMSNorm) and norm.weight.sequence_parallel is True
    x = torch.randn(3, 8)
    torch.testing.assert_close(norm(x), torch.nn.RMSNorm(8, eps=1e-6)(x))  # a position-wise norm, unchanged
