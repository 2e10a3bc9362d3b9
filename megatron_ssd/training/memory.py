"""How much GPU memory one training rank needs, and how much disk a run's checkpoints take, before either exists.

`ssd preflight` compares the estimate with the GPUs of the node it runs on, so that a preset that cannot fit
fails in seconds instead of after the queue and the conversion. The architecture comes from the model's HF
config (`models.arch.describe`), the layout from `config.parallel.ParallelLayout`, the parameter counts from
`training.flops.layer_matmul_weights`; the per-tensor accounting is ours because no maintained library models
megatron-core's layout (Megatron-LM's `theoretical_memory_usage.py` is the nearest; `tests/training/
test_memory.py` checks this module against its numbers, and the differences below are why they are not equal).

Per rank, on the most loaded pipeline stage (the first, or the last when the output layer and the loss weigh
more), in bytes:

  weights      the parameters in the training dtype: attention and dense MLP sharded by TP, the embedding and the
               output layer by TP (first / last stage), norms and the MoE router replicated, routed experts sharded
               by expert TP (= TP in megatron-core unless set) x EP. Layers split evenly over PP.
  gradients    fp32: megatron-core's DDP accumulates into fp32 `main_grad` buffers (grad_reduce_in_fp32, set by
               `training.model` for bf16/fp16) for every parameter of the rank; not sharded by the distributed
               optimizer (ZeRO-1).
  optimizer    Adam m and v in fp32, plus the fp32 master copy for bf16/fp16 parameters: 12 bytes a parameter (8 in
               fp32), divided by the data-parallel group the distributed optimizer shards over: data x context
               parallel for dense parameters (megatron-core builds their buffers over `intra_dp_cp_group`,
               megatron/core/distributed/distributed_data_parallel.py), the expert data-parallel group
               (data x context x TP / (expert TP x EP)) for routed experts.
  activations  what autograd keeps for backward, for every micro-batch in flight on the stage: one micro-batch
               without pipelining; min(PP - rank, micro-batches) with 1F1B; the warm-up chunks of megatron-core's
               interleaved schedule ((PP - rank - 1) x 2 + (VPP - 1) x PP + 1 chunks of L / (PP x VPP) layers).
               Tokens per rank are seq_length / CP x micro_batch_size; tensors between the norms and the
               column-parallel linears are sequence-sharded under SP (/TP), the rest is sharded by TP. Per layer
               and token (2 bytes an element): norm inputs and linear inputs 4h (/TP under SP); Q, K, V after RoPE
               q + 2kv; the qk-norm inputs q + kv (Qwen3); the attention output q; fp32 softmax statistics (4
               bytes per head); dense SwiGLU: fc1's output 2 ffn and the activation's ffn. Flash attention (TE)
               never stores the S x S scores, so `train.recompute=selective` (megatron-core's default: core
               attention) stores the same tensors as no recomputation. MoE: the router's fp32 logits and
               probabilities (E each, /TP), and each token's top-k copies gathered over expert TP for the experts
               (the alltoall dispatcher's `gather_from_sequence_parallel_region`): top-k x (h + 3 moe_ffn / expert TP)
               per token, the largest term of a MoE layer. `train.recompute=full` keeps only each layer's input
               (h, /TP under SP); one layer is recomputed at a time (workspace). The loss: Megatron's vocab-parallel
               cross-entropy keeps fp32 softmax [tokens, V/TP]; the fused linear-CE head (`kernels/linear_ce.py`)
               keeps the gathered final hidden states [tokens, h] and per-token statistics instead.
  workspace    transient peaks beyond what is stored: the bf16 logits before the fp32 cast, one layer's
               activations while it is recomputed (full recomputation).
  reserve      RESERVE_BYTES for the CUDA context, NCCL communicators, cuBLAS/TE workspaces and allocator slack: a
               rule of thumb, not a measurement.

Not modelled: FP8 (TE keeps some activations in one byte: the estimate is then an upper bound), dropout (the
supported families train without it), uneven routing (the estimate assumes every expert gets its share), the
CPU/local attention path (it stores [heads, S, S] scores; the preflight is for GPU nodes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config.parallel import ParallelLayout
from ..config.train import TrainConfig
from ..models.arch import ArchInfo, pad_vocab_size
from .flops import layer_matmul_weights

GIB = 2**30
RESERVE_BYTES = 2 * GIB
PARAM_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
GRAD_BYTES = 4  # fp32 main_grad buffers
ACT = 2  # bytes of a bf16 activation element
INPUT_BYTES_PER_TOKEN = 8 * 3 + 4  # token ids, labels, position ids (int64) and the fp32 loss mask


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank of `stage` needs; `parts` names the terms the totals add up (for the table and the tests)."""

    stage: int
    weights: float
    gradients: float
    optimizer: float
    activations: float
    workspace: float
    reserve: float
    micro_batches_in_flight: float
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def state(self) -> float:
        """Weights, gradients and optimizer state: what Megatron-LM's `compute_weight_and_optimizer_memory` counts."""
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.state + self.activations + self.workspace + self.reserve

    def summary(self) -> str:
        g = lambda x: f"{x / GIB:.1f}"  # noqa: E731
        return (f"{g(self.total)} GiB = weights {g(self.weights)} + grads {g(self.gradients)} + optimizer "
                f"{g(self.optimizer)} + activations {g(self.activations)} + workspace {g(self.workspace)} + "
                f"reserve {g(self.reserve)}")


@dataclass(frozen=True)
class ParamsPerRank:
    """Parameters one rank holds, split by how the distributed optimizer shards them."""

    dense: float  # sharded over data x context parallel
    expert: float  # sharded over the expert data-parallel group


def expert_tensor_parallel(layout: ParallelLayout) -> int:
    """megatron-core's expert_tensor_parallel_size: the tensor-parallel size unless set (we never set it)."""
    return layout.tensor


def expert_data_parallel(layout: ParallelLayout) -> int:
    """Ranks that hold the same experts: world / (expert TP x EP x PP) (megatron-core's expert-data-parallel group)."""
    return max(1, layout.world // (expert_tensor_parallel(layout) * layout.expert * layout.pipeline))


def params_per_rank(info: ArchInfo, layout: ParallelLayout, stage: int) -> ParamsPerRank:
    """Parameters of pipeline stage `stage` on one of its ranks (layers split evenly, as the layout rules demand)."""
    tp, pp = layout.tensor, layout.pipeline
    w = layer_matmul_weights(info)
    h, layers = info.hidden_size, info.num_layers / pp
    vocab = pad_vocab_size(info.vocab_size, tp)
    norms = 2 * h + (2 * info.head_dim if info.qk_layernorm else 0)  # input + pre-MLP RMSNorm, q/k norms
    dense = layers * ((w["attention"] + w.get("mlp", 0)) / tp + norms + w.get("router", 0))
    first, last = stage == 0, stage == pp - 1
    if first:
        dense += vocab * h / tp
    if last:
        dense += h  # the final norm
        if not info.tie_word_embeddings or pp > 1:  # tied: the last stage keeps its own copy of the embedding
            dense += vocab * h / tp
    expert = layers * info.num_experts * w["expert"] / (expert_tensor_parallel(layout) * layout.expert) \
        if info.is_moe else 0.0
    return ParamsPerRank(dense=dense, expert=expert)


def in_flight(layout: ParallelLayout, micro_batches: int, stage: int) -> float:
    """Micro-batches of this stage's layers whose activations are alive at once (module docstring), counted in
    units of a whole stage's layers (an interleaved chunk is 1 / VPP of them)."""
    pp, vpp = layout.pipeline, layout.virtual_pipeline
    if pp == 1:
        return 1.0
    if not vpp:
        return float(min(pp - stage, micro_batches))
    warmup = (pp - stage - 1) * 2 + (vpp - 1) * pp
    return min(warmup + 1, micro_batches * vpp) / vpp


def layer_activation_terms(info: ArchInfo, layout: ParallelLayout) -> dict[str, float]:
    """Bytes one token leaves stored by one transformer layer on one rank, by term (no recomputation)."""
    tp = layout.tensor
    sp = tp if layout.sequence_parallel else 1
    h, q, kv = info.hidden_size, info.num_attention_heads * info.head_dim, info.num_query_groups * info.head_dim
    t = {
        "norm and linear inputs": ACT * 4 * h / sp,
        "q, k, v": ACT * (q + 2 * kv) / tp,
        "attention output": ACT * q / tp,
        "softmax statistics": 4 * info.num_attention_heads / tp,
    }
    if info.qk_layernorm:
        t["qk-norm inputs"] = ACT * (q + kv) / tp
    if info.is_moe:
        etp = expert_tensor_parallel(layout)
        t["router logits and probabilities"] = 2 * 4 * info.num_experts / sp
        t["expert inputs (top-k copies)"] = info.moe_top_k * etp / sp * ACT * h
        t["expert fc1 and activation outputs"] = info.moe_top_k * etp / sp * ACT * 3 * info.moe_ffn_hidden_size / etp
    else:
        t["mlp fc1 and activation outputs"] = ACT * 3 * info.ffn_hidden_size / tp
    return t


def loss_terms(info: ArchInfo, layout: ParallelLayout, loss_impl: str) -> tuple[dict[str, float], float]:
    """(stored bytes per token of the final norm and the loss head, transient bytes per token) on the last stage."""
    tp = layout.tensor
    sp = tp if layout.sequence_parallel else 1
    h, vocab = info.hidden_size, pad_vocab_size(info.vocab_size, tp)
    stored = {"final norm input": ACT * h / sp}
    if loss_impl == "fused_linear_ce":
        stored["fused linear-CE hidden states"] = ACT * h + 16  # gathered over SP; lse, target logit, index
        return stored, 0.0
    stored["output layer input"] = ACT * h / sp
    stored["fp32 softmax over the vocabulary"] = 4 * vocab / tp
    return stored, ACT * vocab / tp  # the bf16 logits before the cast


def estimate_memory(info: ArchInfo, layout: ParallelLayout, train: TrainConfig, *,
                    distributed_optimizer: bool = True, stage: int | None = None) -> MemoryEstimate:
    """The estimate for one rank of `stage` (default: the most loaded of the first and the last stage)."""
    if stage is None:
        candidates = {0, layout.pipeline - 1}
        return max((estimate_memory(info, layout, train, distributed_optimizer=distributed_optimizer, stage=s)
                    for s in sorted(candidates)), key=lambda e: e.total)
    pp = layout.pipeline
    params = params_per_rank(info, layout, stage)
    count = params.dense + params.expert
    weight_bytes = PARAM_BYTES.get(train.precision, 2)
    opt_per_param = 12 if train.precision in ("bf16", "fp16") else 8
    dp_dense = layout.data * layout.context if distributed_optimizer else 1
    dp_expert = expert_data_parallel(layout) if distributed_optimizer else 1
    optimizer = opt_per_param * (params.dense / dp_dense + params.expert / dp_expert)

    tokens = train.seq_length / layout.context * train.micro_batch_size
    micro_batches = max(1, layout.micro_batches_per_step(train)) if layout.data else 1
    flight = in_flight(layout, micro_batches, stage)
    layers = info.num_layers / pp
    per_layer = layer_activation_terms(info, layout)
    layer_bytes = sum(per_layer.values()) * tokens
    parts = {f"per layer: {k}": v * tokens for k, v in per_layer.items()}
    workspace = 0.0
    if train.recompute == "full":
        sp = layout.tensor if layout.sequence_parallel else 1
        stored_layer = ACT * info.hidden_size / sp * tokens
        workspace += layer_bytes  # the layer being recomputed
        parts["workspace: one layer recomputed"] = layer_bytes
    else:
        stored_layer = layer_bytes
    activations = flight * layers * stored_layer + flight * INPUT_BYTES_PER_TOKEN * tokens
    parts["layers"] = flight * layers * stored_layer
    parts["inputs"] = flight * INPUT_BYTES_PER_TOKEN * tokens
    if stage == pp - 1:
        stored, transient = loss_terms(info, layout, train.loss_impl)
        loss = sum(stored.values()) * tokens  # one micro-batch reaches the loss at a time
        activations += loss
        workspace += transient * tokens
        parts.update({f"loss: {k}": v * tokens for k, v in stored.items()})
        if transient:
            parts["workspace: bf16 logits"] = transient * tokens
    return MemoryEstimate(stage=stage, weights=weight_bytes * count, gradients=GRAD_BYTES * count,
                          optimizer=optimizer, activations=activations, workspace=workspace, reserve=RESERVE_BYTES,
                          micro_batches_in_flight=flight, parts=parts)


# ------------------------------------------------------------------------------------------------- disk
def total_params(info: ArchInfo, tensor_parallel: int = 1) -> int:
    """Every parameter of the model (all experts, the padded vocabulary, norms): what a checkpoint stores."""
    layout = ParallelLayout(world=1)
    p = params_per_rank(info, layout, 0)
    vocab_pad = pad_vocab_size(info.vocab_size, tensor_parallel) - pad_vocab_size(info.vocab_size, 1)
    extra = vocab_pad * info.hidden_size * (1 if info.tie_word_embeddings else 2)
    return int(round(p.dense + p.expert + extra))


@dataclass(frozen=True)
class DiskEstimate:
    """Bytes a run writes that scale with the model (samples and packed data are small beside them)."""

    per_checkpoint: float
    checkpoints: int
    final_checkpoint: float
    base_conversion: float
    export: float

    @property
    def total(self) -> float:
        return self.per_checkpoint * (self.checkpoints - 1) + self.final_checkpoint + self.base_conversion + self.export


def estimate_disk(info: ArchInfo, train: TrainConfig, tensor_parallel: int = 1) -> DiskEstimate:
    """Every `train.save_interval` iterations and the last one a checkpoint is written and kept (training/
    checkpoint.py deletes none): weights in the training dtype plus, with the optimizer, the fp32 master copy and
    the two Adam moments; the last one without the optimizer when `train.save_final_optimizer=false`. The base
    model is converted to a Megatron checkpoint once (run directory or the shared conversion cache), and the
    export writes the final weights as an HF folder in bf16."""
    n = total_params(info, tensor_parallel)
    weights = PARAM_BYTES.get(train.precision, 2) * n
    optimizer = (12 if train.precision in ("bf16", "fp16") else 8) * n
    saves = train.train_iters // max(1, train.save_interval)
    if train.train_iters % max(1, train.save_interval):
        saves += 1  # the final iteration is saved too
    final = weights + (optimizer if train.save_final_optimizer else 0)
    return DiskEstimate(per_checkpoint=weights + optimizer, checkpoints=max(1, saves), final_checkpoint=final,
                        base_conversion=weights, export=2 * n)


def fits(estimate_bytes: float, device_bytes: float) -> str:
    """"ok" below 95% of the device's memory, "warn" up to 100%, "fail" beyond."""
    if estimate_bytes > device_bytes:
        return "fail"
    return "warn" if estimate_bytes > 0.95 * device_bytes else "ok"


def gib(x: float) -> str:
    return f"{x / GIB:.1f} GiB" if math.isfinite(x) else "?"
