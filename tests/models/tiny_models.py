"""Tiny random HF models of each supported architecture, built locally (never downloaded).

Shapes exercise what the conversion must get right: GQA (4 heads / 2 KV groups), head_dim != hidden/heads
for Qwen3, an odd vocabulary (501, padded to 512 / 256-multiples), tied and untied output embeddings, llama3
RoPE scaling with non-default factors, 4 experts top-2. Also importable by spawned ranks (no pytest).
"""
from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 501
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ARCHS = ("llama", "qwen3", "qwen3_moe")


def hf_config(arch: str):
    from transformers import LlamaConfig, Qwen3Config, Qwen3MoeConfig

    common = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if arch == "llama":
        return LlamaConfig(
            **common, intermediate_size=96, num_hidden_layers=2, tie_word_embeddings=False,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 64},
            rope_theta=500000.0,
        )
    if arch == "qwen3":
        return Qwen3Config(**common, intermediate_size=96, num_hidden_layers=2, head_dim=32,
                           tie_word_embeddings=True, rope_theta=1000000.0)
    if arch == "qwen3_moe":
        return Qwen3MoeConfig(**common, intermediate_size=96, moe_intermediate_size=48, num_experts=4,
                              num_experts_per_tok=2, norm_topk_prob=True, num_hidden_layers=2, head_dim=16,
                              tie_word_embeddings=False, rope_theta=1000000.0, router_aux_loss_coef=0.01)
    raise ValueError(arch)


def make_tokenizer(folder: Path) -> None:
    """A word-level tokenizer (ids < VOCAB) with a chat template, saved as an HF fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<unk>"] + [f"w{i}" for i in range(200)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(folder))


def make_hf_folder(arch: str, folder: Path, seed: int = 0) -> Path:
    """Save a random fp32 model of `arch` with tokenizer, chat template and generation config."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(hf_config(arch), dtype=torch.float32)
    with torch.no_grad():  # norms default to ones; randomise them so a swapped norm cannot pass unnoticed
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=False)
    model.save_pretrained(str(folder))
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
def megatron_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits of a (TP-sharded, single pipeline stage) GPTModel, padding removed."""
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

    model.eval()
    pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
    out = model(ids, pos, None)
    out = gather_from_tensor_model_parallel_region(out)
    return out[..., :VOCAB].float().cpu()
