"""The model as training sees it: the provider's GPTModel chunk(s) for this rank, with the training switches
in its TransformerConfig, wrapped in Float16Module (bf16/fp16) and megatron-core's DistributedDataParallel.

The architecture comes from the base checkpoint's HF config (`megatron_ssd.models.provider`); everything here
is about *how* it trains: per-token loss normalisation, activation recomputation, FP8 through Transformer
Engine, sequence parallelism, which fused kernels may run, and the DDP gradient buffers.
"""
from __future__ import annotations

from typing import Any

import torch

from ..config.train import TrainConfig
from ..errors import ConfigError
from ..models.parallel import ParallelDims, on_gpu
from ..models.provider import build_gpt_model, transformer_config

PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# train.fp8 -> TransformerConfig (fp8 format, fp8_recipe). "hybrid": E4M3 forward / E5M2 gradients with
# delayed scaling (Hopper); "e4m3": E4M3 everywhere with per-tensor current scaling; "mxfp8": E4M3 with
# block (1x32) scales, Blackwell only.
FP8 = {
    "hybrid": {"fp8": "hybrid", "fp8_recipe": "delayed"},
    "e4m3": {"fp8": "e4m3", "fp8_recipe": "tensorwise"},
    "mxfp8": {"fp8": "e4m3", "fp8_recipe": "mxfp8"},
}


def fp8_settings(name: str) -> dict[str, str]:
    if name not in FP8:
        raise ConfigError(f"train.fp8={name!r}: choose null, {', '.join(FP8)}.")
    return dict(FP8[name])


def training_overrides(train: TrainConfig, dims: ParallelDims, *, use_te: bool) -> dict[str, Any]:
    """TransformerConfig fields that the training run (not the architecture) decides."""
    kw: dict[str, Any] = {
        # sum of token losses and token counts per micro-batch; finalize_model_grads divides by the global count
        "calculate_per_token_loss": True,
        # perform_initialization stays on although every weight is then loaded from a checkpoint: megatron-core
        # 0.16 marks tensor-parallel weights (`tensor_model_parallel`, used by the grad-norm and clipping to
        # count TP shards once) only inside its init functions; without them TP>1 grad norms come out wrong.
        "sequence_parallel": dims.sequence_parallel,
    }
    if train.recompute == "selective":
        kw.update(recompute_granularity="selective")  # core attention (megatron-core's default module list)
    elif train.recompute == "full":
        kw.update(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    elif train.recompute is not None:
        raise ConfigError(f"train.recompute={train.recompute!r}: choose null, selective or full.")
    if train.fp8:
        if not use_te:
            raise ConfigError("train.fp8 needs Transformer Engine on a GPU (Hopper or Blackwell); set train.fp8=null "
                              "on this machine.")
        kw.update(fp8_settings(train.fp8))
    if use_te:
        # Fused kernels that exist only with CUDA + TE: wgrad accumulation straight into DDP's fp32 main_grad,
        # and Megatron's fused vocab-parallel cross-entropy for the `megatron` loss head.
        kw.update(gradient_accumulation_fusion=True, cross_entropy_loss_fusion=True,
                  cross_entropy_fusion_impl="native")
    if dims.virtual_pipeline and dims.pipeline == 2:
        # Interleaved 1F1B on two stages: each rank's previous and next stage are the same rank, so one batched
        # p2p call holds two sends to (and two receives from) one peer, matched by order: an activation gets
        # paired with a gradient and the loss is silently wrong (measured on CPU/gloo). megatron-core's
        # unbatched path sends the two directions over different communicators for exactly this case.
        kw["batch_p2p_comm"] = False
    if use_te and dims.context > 1 and dims.pipeline > 1:
        # CP pads every document to a multiple of 2*CP, so a micro-batch's length varies: send shapes first.
        kw["variable_seq_lengths"] = True
    return kw


def build_model_chunks(hf_config: Any, parallel, dims: ParallelDims, train: TrainConfig, *,
                       padded_vocab_size: int, use_te: bool) -> list:
    """This rank's model chunks (one per virtual pipeline stage), each DDP(Float16Module(GPTModel))."""
    from megatron.core import tensor_parallel
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.transformer.module import Float16Module

    if train.precision not in PRECISION_DTYPES:
        raise ConfigError(f"train.precision={train.precision!r}: choose bf16, fp16 or fp32.")
    dtype = PRECISION_DTYPES[train.precision]
    config = transformer_config(hf_config, parallel, dtype, use_te=use_te,
                                **training_overrides(train, dims, use_te=use_te))
    chunks = []
    for vp in range(dims.virtual_pipeline or 1):
        model = build_gpt_model(hf_config, parallel, vp_stage=vp if dims.virtual_pipeline else None, dtype=dtype,
                                use_te=use_te, padded_vocab_size=padded_vocab_size, config=config)
        for p in model.parameters():
            tensor_parallel.set_defaults_if_not_set_tensor_model_parallel_attributes(p)
        if on_gpu():
            model.cuda(torch.cuda.current_device())
        chunks.append(model)
    if config.fp16 or config.bf16:
        chunks = [Float16Module(config, m) for m in chunks]
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=dtype != torch.float32,
        overlap_grad_reduce=on_gpu() and dims.data * dims.context > 1,
        use_distributed_optimizer=parallel.distributed_optimizer,
        check_for_nan_in_grad=False,  # the trainer checks the loss and names the data (trainer.NonFiniteLoss)
    )
    chunks = [
        DistributedDataParallel(config=config, ddp_config=ddp_config, module=m, disable_bucketing=i > 0)
        for i, m in enumerate(chunks)
    ]
    wire_grad_sync(config, chunks, ddp_config)
    return chunks


def wire_grad_sync(config, chunks: list, ddp_config) -> None:
    """The hooks megatron-core's schedules call (without them DP gradients are never reduced, DESIGN.md §5)."""
    from megatron.core.distributed import finalize_model_grads

    config.finalize_model_grads_func = finalize_model_grads
    if ddp_config.overlap_grad_reduce:
        no_sync = [c.no_sync for c in chunks]
        grad_sync = [c.start_grad_sync for c in chunks]
        config.no_sync_func = no_sync[0] if len(chunks) == 1 else no_sync
        config.grad_sync_func = grad_sync[0] if len(chunks) == 1 else grad_sync


def num_parameters(chunks: list) -> int:
    """Parameters held by this rank (all its chunks)."""
    return sum(p.numel() for c in chunks for p in c.parameters())
