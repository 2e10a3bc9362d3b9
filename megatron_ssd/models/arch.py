"""What an HF config says about the architecture, normalised once for the provider, the layout check and
the weight mapping.

Supported families (`model_type` in config.json): `llama` (Llama-3.x, SmolLM2), `qwen3` (dense),
`qwen3_moe` (Qwen3-30B-A3B). Anything the Megatron model would get silently wrong (biases, sliding
windows, unknown RoPE types, mixed dense/MoE layers) is refused here with a ConfigError.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

ARCHS = ("llama", "qwen3", "qwen3_moe")


@dataclass(frozen=True)
class ArchInfo:
    arch: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    head_dim: int
    ffn_hidden_size: int
    norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qk_layernorm: bool
    init_std: float
    # Llama-3 RoPE scaling: {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}
    rope_llama3: dict[str, float] | None = None
    # MoE (qwen3_moe); None/0 for dense models.
    num_experts: int | None = None
    moe_top_k: int = 0
    moe_ffn_hidden_size: int | None = None
    moe_norm_topk_prob: bool = True
    moe_aux_loss_coeff: float = 0.0

    @property
    def is_moe(self) -> bool:
        return bool(self.num_experts)


def load_hf_config(src: Any):
    """A transformers config from a folder/config.json path or a config object (returned as is)."""
    if isinstance(src, (str, os.PathLike)):
        from transformers import AutoConfig

        path = Path(src)
        folder = path.parent if path.name == "config.json" else path
        if not (folder / "config.json").is_file():
            raise ConfigError(f"{folder}: no config.json; point to an HF model folder.")
        return AutoConfig.from_pretrained(str(folder))
    if not hasattr(src, "model_type"):
        raise ConfigError(f"expected an HF model folder or a transformers config, got {type(src).__name__}")
    return src


def _rope(cfg) -> tuple[float, dict[str, Any] | None]:
    # transformers >= 5 folds rope_theta into `rope_parameters`; older releases keep `rope_theta` and
    # `rope_scaling` separate. Accept both.
    params = getattr(cfg, "rope_parameters", None) or {}
    scaling = getattr(cfg, "rope_scaling", None) or {}
    if params.get("rope_type") in (None, "default") and scaling:
        params = {**params, **scaling}
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", None))
    if theta is None:
        raise ConfigError(f"{cfg.model_type}: the HF config has no rope_theta.")
    rope_type = params.get("rope_type", params.get("type", "default")) or "default"
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise ConfigError(f"rope type {rope_type!r} is not supported (only default and llama3).")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ConfigError(f"llama3 rope scaling is missing {', '.join(missing)} in the HF config.")
    return float(theta), {k: float(params[k]) for k in keys}


def describe(hf_config: Any) -> ArchInfo:
    """Normalise an HF config (folder or object) into an ArchInfo; refuse what we cannot map exactly."""
    c = load_hf_config(hf_config)
    arch = c.model_type
    if arch not in ARCHS:
        raise ConfigError(f"model_type={arch!r} is not supported; supported: {', '.join(ARCHS)}.")
    for flag in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if getattr(c, flag, False):
            raise ConfigError(f"{arch}: {flag}=True is not supported by the Megatron mapping.")
    if getattr(c, "hidden_act", "silu") != "silu":
        raise ConfigError(f"{arch}: hidden_act={c.hidden_act!r}; only silu (SwiGLU) is supported.")
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    theta, llama3 = _rope(c)
    moe: dict[str, Any] = {}
    if arch == "qwen3_moe":
        experts = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None)
        if getattr(c, "mlp_only_layers", None) or getattr(c, "decoder_sparse_step", 1) != 1:
            raise ConfigError(
                "qwen3_moe: mlp_only_layers/decoder_sparse_step mix dense and MoE layers; only all-MoE models "
                "(as released, e.g. Qwen3-30B-A3B) are supported."
            )
        if getattr(c, "shared_expert_intermediate_size", 0):
            raise ConfigError("qwen3_moe: shared experts are not supported (Qwen3-MoE has none).")
        moe = dict(
            num_experts=int(experts),
            moe_top_k=int(c.num_experts_per_tok),
            moe_ffn_hidden_size=int(c.moe_intermediate_size),
            moe_norm_topk_prob=bool(getattr(c, "norm_topk_prob", True)),
            moe_aux_loss_coeff=float(getattr(c, "router_aux_loss_coef", 0.0) or 0.0),
        )
    return ArchInfo(
        arch=arch,
        vocab_size=int(c.vocab_size),
        hidden_size=int(c.hidden_size),
        num_layers=int(c.num_hidden_layers),
        num_attention_heads=int(heads),
        num_query_groups=int(getattr(c, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        ffn_hidden_size=int(c.intermediate_size),
        norm_eps=float(c.rms_norm_eps),
        rope_theta=theta,
        max_position_embeddings=int(c.max_position_embeddings),
        tie_word_embeddings=bool(getattr(c, "tie_word_embeddings", False)),
        qk_layernorm=arch in ("qwen3", "qwen3_moe"),
        init_std=float(getattr(c, "initializer_range", 0.02)),
        rope_llama3=llama3,
        **moe,
    )


def pad_vocab_size(vocab_size: int, tensor_parallel: int, divisible_by: int = 128) -> int:
    """The one place that pads the vocabulary: up to a multiple of `divisible_by x tensor_parallel`.

    Megatron shards the embedding and output layer by rows over TP, so every rank needs the same number
    of rows. The checkpoint stores the padded size (its embedding's global shape), and every later reader
    takes it from there, so a checkpoint loads under any TP that divides it.
    """
    multiple = divisible_by * tensor_parallel
    return -(-vocab_size // multiple) * multiple
