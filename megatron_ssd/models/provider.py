"""HF config -> Megatron `TransformerConfig`, layer spec and `GPTModel`.

One function per step so the trainer can take what it needs:
  `transformer_config(hf, parallel, dtype)`  the TransformerConfig (dense + MoE fields, CPU settings)
  `layer_spec(config)`                       TE spec with CUDA + Transformer Engine, else the local spec
                                             (with the CPU context-parallel attention when CP > 1)
  `build_gpt_model(hf, parallel=..., ...)`   a GPTModel for this rank's pipeline stage
  `model_provider(hf, ...)`                  the `(pre_process, post_process, vp_stage) -> GPTModel` callable
Megatron's parallel state must be initialised first (the trainer does it; `megatron_ssd.models.parallel`
has a helper). Vocab padding lives in `arch.pad_vocab_size` only.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..config.parallel import ParallelConfig
from .arch import ArchInfo, describe, load_hf_config, pad_vocab_size
from .cpu_compat import apply_cpu_compat, patch_moe_without_te

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else DTYPES[dtype]


@functools.lru_cache(maxsize=1)
def te_available() -> bool:
    """Transformer Engine imports and a GPU is present (TE has no CPU build)."""
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA library load
        return False
    return True


def parallel_from_state() -> ParallelConfig:
    """The layout Megatron's parallel state was initialised with (TP, PP, VPP, CP, EP)."""
    from megatron.core import parallel_state as ps

    return ParallelConfig(
        tensor=ps.get_tensor_model_parallel_world_size(),
        pipeline=ps.get_pipeline_model_parallel_world_size(),
        virtual_pipeline=ps.get_virtual_pipeline_model_parallel_world_size(),
        context=ps.get_context_parallel_world_size(),
        expert=ps.get_expert_model_parallel_world_size(),
    )


def transformer_config(
    hf_config: Any,
    parallel: ParallelConfig | None = None,
    dtype: torch.dtype | str = torch.float32,
    *,
    use_te: bool | None = None,
    moe_aux_loss_coeff: float | None = None,
    **overrides: Any,
):
    """The Megatron TransformerConfig equivalent to an HF config.

    `moe_aux_loss_coeff` defaults to the HF `router_aux_loss_coef`. `overrides` go straight into the
    TransformerConfig (e.g. recompute_granularity, fp8); they win over everything derived here.
    """
    from megatron.core.transformer.transformer_config import TransformerConfig

    info = describe(hf_config)
    p = parallel or parallel_from_state()
    dtype = as_dtype(dtype)
    use_te = te_available() if use_te is None else use_te
    on_cpu = not torch.cuda.is_available()
    if on_cpu:
        apply_cpu_compat()
    if info.is_moe and not use_te:
        patch_moe_without_te()
    kw: dict[str, Any] = dict(
        num_layers=info.num_layers,
        hidden_size=info.hidden_size,
        ffn_hidden_size=info.ffn_hidden_size,
        num_attention_heads=info.num_attention_heads,
        num_query_groups=info.num_query_groups,
        kv_channels=info.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=info.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        qk_layernorm=info.qk_layernorm,
        # HF checkpoints of these families train without dropout; Megatron's defaults are 0.1.
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=info.init_std,
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        pipeline_dtype=dtype,
        tensor_model_parallel_size=p.tensor,
        pipeline_model_parallel_size=p.pipeline,
        virtual_pipeline_model_parallel_size=p.virtual_pipeline,
        context_parallel_size=p.context,
        expert_model_parallel_size=p.expert,
        sequence_parallel=p.sequence_parallel,
        use_cpu_initialization=on_cpu,
        # Fused kernels exist only with CUDA (and TE); on CPU Megatron's unfused paths run. The masked
        # softmax fusion only serves the local attention (TE has its own), so it stays off.
        bias_activation_fusion=use_te,
        masked_softmax_fusion=False,
        bias_dropout_fusion=use_te,
        apply_rope_fusion=use_te,
        persist_layer_norm=False,
        attention_softmax_in_fp32=True,
    )
    if info.is_moe:
        kw.update(
            num_moe_experts=info.num_experts,
            moe_router_topk=info.moe_top_k,
            moe_ffn_hidden_size=info.moe_ffn_hidden_size,
            moe_shared_expert_intermediate_size=None,
            moe_router_load_balancing_type="aux_loss",
            moe_aux_loss_coeff=info.moe_aux_loss_coeff if moe_aux_loss_coeff is None else moe_aux_loss_coeff,
            # HF Qwen3-MoE: softmax over all experts, top-k, renormalise if norm_topk_prob. Megatron's
            # top-k-then-softmax is exactly the renormalised form; pre-softmax is the un-normalised one.
            moe_router_score_function="softmax",
            moe_router_pre_softmax=not info.moe_norm_topk_prob,
            moe_grouped_gemm=use_te,
            moe_token_dispatcher_type="alltoall" if use_te else "allgather",
            moe_permute_fusion=False,
        )
    kw.update(overrides)
    return TransformerConfig(**kw)


def layer_spec(config, use_te: bool | None = None, vp_stage: int | None = None):
    """Transformer Engine block spec when TE imports and CUDA is present, Megatron's local spec otherwise;
    the layers of this rank's pipeline stage (and virtual stage `vp_stage`). The local spec under context
    parallelism gets the CPU CP attention (`cpu_cp_attention`; Megatron's local attention has no CP)."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_decoder_block_spec

    use_te = te_available() if use_te is None else use_te
    spec = get_gpt_decoder_block_spec(config, use_transformer_engine=use_te, normalization="RMSNorm",
                                      vp_stage=vp_stage)
    if not use_te and config.context_parallel_size > 1:
        from .cpu_cp_attention import with_cpu_cp_attention  # why local: it imports megatron-core (seconds)

        spec = with_cpu_cp_attention(spec)
    if not use_te and config.sequence_parallel:
        from .cpu_sp_norm import with_cpu_sp_norms  # why local: it imports megatron-core (seconds)

        spec = with_cpu_sp_norms(spec)  # WrappedTorchNorm refuses SP; a norm is position-wise (cpu_sp_norm.py)
    return spec


def build_gpt_model(
    hf_config: Any,
    parallel: ParallelConfig | None = None,
    *,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    vp_stage: int | None = None,
    dtype: torch.dtype | str = torch.float32,
    use_te: bool | None = None,
    padded_vocab_size: int | None = None,
    make_vocab_size_divisible_by: int = 128,
    config=None,
    **config_overrides: Any,
):
    """A GPTModel for this rank (its pipeline stage and TP/EP shards), built by megatron-core.

    `padded_vocab_size`: pass the value stored in a checkpoint (`checkpoint.checkpoint_info`) when loading
    one; by default the vocabulary is padded for the current TP size. `config`: a TransformerConfig from
    `transformer_config` (built here when omitted, with `config_overrides`).
    """
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    hf_config = load_hf_config(hf_config)
    info = describe(hf_config)
    use_te = te_available() if use_te is None else use_te
    if config is None:
        config = transformer_config(hf_config, parallel, dtype, use_te=use_te, **config_overrides)
    if pre_process is None:
        pre_process = ps.is_pipeline_first_stage(ignore_virtual=vp_stage is None, vp_stage=vp_stage)
    if post_process is None:
        post_process = ps.is_pipeline_last_stage(ignore_virtual=vp_stage is None, vp_stage=vp_stage)
    vocab = padded_vocab_size or pad_vocab_size(
        info.vocab_size, config.tensor_model_parallel_size, make_vocab_size_divisible_by
    )
    llama3 = info.rope_llama3
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(config, use_te, vp_stage),
        vocab_size=vocab,
        max_sequence_length=info.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=info.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=info.rope_theta,
        rope_scaling=llama3 is not None,
        rope_scaling_factor=llama3["factor"] if llama3 else 8.0,
        vp_stage=vp_stage,
    )
    if llama3 is not None:
        _apply_llama3_rope(model, info)
    return model


def _apply_llama3_rope(model, info: ArchInfo) -> None:
    """Megatron's llama3 RoPE hard-codes low/high frequency factors 1/4 and an 8192 original context
    (right for Llama-3.1); recompute the frequencies with Megatron's own function from the HF values."""
    rope = getattr(model, "rotary_pos_emb", None)
    if rope is None:
        return
    p = info.rope_llama3
    dim = info.head_dim
    base = 1.0 / (info.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=rope.inv_freq.device) / dim))
    rope.inv_freq = rope._apply_scaling(
        base,
        factor=p["factor"],
        low_freq_factor=p["low_freq_factor"],
        high_freq_factor=p["high_freq_factor"],
        original_max_position_embeddings=p["original_max_position_embeddings"],
    )


def model_provider(hf_config: Any, parallel: ParallelConfig | None = None, **kwargs: Any) -> Callable[..., Any]:
    """`(pre_process=True, post_process=True, vp_stage=None) -> GPTModel`, the callable Megatron's schedules
    and `get_model`-style helpers expect; `kwargs` as for `build_gpt_model`."""
    hf = load_hf_config(hf_config)

    def provide(pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        return build_gpt_model(
            hf, parallel, pre_process=pre_process, post_process=post_process, vp_stage=vp_stage, **kwargs
        )

    return provide
