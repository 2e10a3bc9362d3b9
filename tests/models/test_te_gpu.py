"""GPU only: the Transformer Engine spec (fused-norm linears, grouped-GEMM experts) against transformers,
loaded both from HF directly (TE state-dict names) and from a checkpoint converted with the local spec."""
from __future__ import annotations

import re

import pytest
import torch

import tiny_models as tiny
from megatron_ssd.models import checkpoint as ckpt
from megatron_ssd.models.arch import describe
from megatron_ssd.models.convert import hf_to_megatron
from megatron_ssd.models.parallel import megatron_world
from megatron_ssd.models.provider import build_gpt_model
from megatron_ssd.models.weights import load_hf_weights

# TE fp32 GEMMs may run in TF32 on Hopper; the bound is loose accordingly.
TE_ATOL = 2e-3


@pytest.mark.gpu
@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_te_spec_matches_transformers(arch, hf_dirs, ref_logits, tmp_path):
    pytest.importorskip("transformer_engine")
    src = hf_dirs[arch]
    hf_to_megatron(src, tmp_path / "ckpt")
    ids = tiny.input_ids().cuda()
    with megatron_world():
        model = build_gpt_model(src, use_te=True)
        names = list(model.state_dict())
        assert any(n.endswith("linear_qkv.layer_norm_weight") for n in names)
        if arch == "qwen3_moe":
            assert any(re.search(r"mlp\.experts\.linear_fc1\.weight\d+$", n) for n in names)
        load_hf_weights(model, src, describe(src))
        direct = tiny.megatron_logits(model, ids)
        fresh = build_gpt_model(src, use_te=True)
        ckpt.load_model_weights(fresh, tmp_path / "ckpt")
        from_ckpt = tiny.megatron_logits(fresh, ids)
    assert (direct - ref_logits[arch]).abs().max().item() <= TE_ATOL
    assert torch.equal(direct, from_ckpt)
