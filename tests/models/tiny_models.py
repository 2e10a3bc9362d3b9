"""The tests' tiny random HF models: `megatron_ssd.models.tiny` (their one home) at the test shapes.

Shapes exercise what the conversion must get right: GQA (4 heads / 2 KV groups), head_dim != hidden/heads
for Qwen3, an odd vocabulary (501, padded to 512 / 256-multiples), tied and untied output embeddings, llama3
RoPE scaling with non-default factors, 4 experts top-2. Also importable by spawned ranks (no pytest). The
rehearsal shapes (`tiny.TinyShape()` defaults) are checked by tests/models/test_convert.py too.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from megatron_ssd.models import tiny
from megatron_ssd.models.tiny import ARCHS, CHATML as CHAT_TEMPLATE  # noqa: F401  (re-exported for the tests)

VOCAB = 501
SHAPE = tiny.TinyShape(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, head_dim=32,
                       moe_intermediate_size=48, num_experts=4, max_position_embeddings=256)
SETTINGS = {
    "llama": dict(tie_word_embeddings=False, rope_theta=500000.0, rms_norm_eps=1e-6,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 64}),
    "qwen3": dict(tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "qwen3_moe": dict(head_dim=16, norm_topk_prob=True, tie_word_embeddings=False, rope_theta=1000000.0,
                      router_aux_loss_coef=0.01, rms_norm_eps=1e-6),
}


def hf_config(arch: str):
    settings = dict(SETTINGS[arch])
    shape = replace(SHAPE, head_dim=settings.pop("head_dim", SHAPE.head_dim))
    return tiny.hf_config(arch, shape, bos_token_id=1, eos_token_id=2, pad_token_id=0, **settings)


def make_tokenizer(folder: Path) -> None:
    """A word-level tokenizer (ids < VOCAB) with a chat template, saved as an HF fast tokenizer."""
    tiny.word_level_tokenizer(folder, CHAT_TEMPLATE)


def make_hf_folder(arch: str, folder: Path, seed: int = 0) -> Path:
    """Save a random fp32 model of `arch` with tokenizer, chat template and generation config."""
    tiny.save_random_model(hf_config(arch), folder, seed=seed)
    make_tokenizer(folder)
    return folder


def input_ids(batch: int = 2, seq: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, seq), generator=g)


@torch.no_grad()
def hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model(ids).logits.float()


@torch.no_grad()
def megatron_logits(model, ids: torch.Tensor, vocab: int = VOCAB) -> torch.Tensor:
    """Full-vocabulary logits of a (TP-sharded, single pipeline stage) GPTModel, padding removed."""
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

    model.eval()
    pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
    out = model(ids, pos, None)
    out = gather_from_tensor_model_parallel_region(out)
    return out[..., :vocab].float().cpu()
