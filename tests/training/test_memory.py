"""training/memory.py against Megatron-LM's own theoretical memory formula, and its rules one by one.

The Megatron-LM numbers below are literals. How they were obtained: NVIDIA/Megatron-LM at commit d98e8a6
(2026-08-22), megatron/training/theoretical_memory_usage.py, its functions `compute_weight_and_optimizer_memory`
and `compute_activation_memory` (sequence parallel + selective recomputation) or
`compute_activation_memory_without_sp` (the TP1 row), run by hand in a scratch folder outside this repository on an
argparse.Namespace of each configuration (swiglu, RMSNorm, group_query_attention, kv_channels 128, the padded
vocabulary, num_microbatches = global batch / (micro batch x DP)), in MiB. Nothing of that file is in this repository.

Like with like: the formula has no context parallelism, so it was given seq_length / CP (the tokens one rank holds)
and data_parallel_size = DP x CP (megatron-core's distributed optimizer shards dense parameters over the data-and-
context-parallel group, megatron/core/distributed/distributed_data_parallel.py; the formula divides by DP alone).
It was given recompute_granularity="selective": its sequence-parallel branch is taken only then, and with flash
attention selective (core-attention) recomputation stores what no recomputation stores. Our estimate is compared
without its `workspace` and `reserve` terms, which the formula does not have.

Where the formula and ours differ, and why (the tests show each):
  * its activation formula is the GPT-3 one (Korthikanti et al. 2022, Table 2): query width = hidden size (its own
    TODO), K and V as wide as Q (no GQA), a two-matrix GeLU MLP (4 ffn bytes a token, SwiGLU stores 6 ffn), no
    qk-norm, two dropout masks per layer;
  * a MoE layer is counted as a dense MLP of ffn_hidden_size: no router and no top-k copies of each token gathered
    for the experts, the largest activation of a MoE layer.
On Llama-3.1-8B (query width = hidden) the differences nearly cancel and the totals agree within 4%; on Qwen3-4B
(query width 1.6 x hidden, qk-norm) ours is 24% above on activations and on Qwen3-30B-A3B 116% above. Given the
formula's own assumptions (`formula_twin`), ours reproduces its activations within 0.2% on all five.
"""
from __future__ import annotations

import dataclasses

import pytest
from transformers import LlamaConfig, Qwen3Config, Qwen3MoeConfig

from megatron_ssd.config.parallel import ParallelLayout
from megatron_ssd.config.train import TrainConfig
from megatron_ssd.models.arch import describe
from megatron_ssd.training.memory import (GIB, estimate_disk, estimate_memory, expert_data_parallel, fits,
                                          in_flight, layer_activation_terms, params_per_rank, total_params)

MIB = 2**20

# The released configs' shapes (config.json of meta-llama/Llama-3.1-8B-Instruct, Qwen/Qwen3-4B-Instruct-2507,
# Qwen/Qwen3-30B-A3B-Instruct-2507), written to disk and read back through models.arch.describe.
HF = {
    "llama31_8b": LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                              num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=500000.0,
                              max_position_embeddings=131072, tie_word_embeddings=False,
                              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "qwen3_4b": Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                            num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
                            rope_theta=5000000.0, max_position_embeddings=262144, tie_word_embeddings=True),
    "qwen3_30b_a3b": Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                                    moe_intermediate_size=768, num_hidden_layers=48, num_attention_heads=32,
                                    num_key_value_heads=4, head_dim=128, num_experts=128, num_experts_per_tok=8,
                                    norm_topk_prob=True, rms_norm_eps=1e-6, rope_theta=10000000.0,
                                    max_position_embeddings=262144, tie_word_embeddings=False,
                                    router_aux_loss_coef=0.001, decoder_sparse_step=1, mlp_only_layers=[]),
}

# name: (model, layout, train settings, Megatron-LM weight_and_optimizer MiB, Megatron-LM activation MiB)
CONFIGS = {
    # ssd_llama31_8b_instruct's layout (hydra_conf/parallel/node8_tp2.yaml): 8 GPUs, TP2 CP2 SP, DP2, 64K
    "llama31_8b_64k_tp2_cp2": ("llama31_8b", dict(world=8, tensor=2, context=2, sequence_parallel=True),
                               dict(seq_length=65536), 34463.3, 73872.1),
    # no model parallelism: the formula's branch without SP (its 5% overhead included)
    "llama31_8b_8k_tp1_dp8": ("llama31_8b", dict(world=8), dict(seq_length=8192), 57436.9, 38761.9),
    # interleaved pipeline: the first stage's warm-up micro-batches
    "llama31_8b_8k_tp2_pp4_vpp2": ("llama31_8b", dict(world=8, tensor=2, pipeline=4, virtual_pipeline=2,
                                                      sequence_parallel=True), dict(seq_length=8192), 19486.1,
                                   22616.2),
    # ssd_qwen3_4b_instruct's layout
    "qwen3_4b_64k_tp2_cp2": ("qwen3_4b", dict(world=8, tensor=2, context=2, sequence_parallel=True),
                             dict(seq_length=65536), 17264.7, 57512.1),
    # ssd_qwen3_30b_a3b_instruct's layout (hydra_conf/parallel/nodes4_ep8.yaml): 4 x 8 GPUs, EP8, expert DP 2
    "qwen3_30b_a3b_64k_tp2_cp2_ep8": ("qwen3_30b_a3b", dict(world=32, tensor=2, context=2, expert=8,
                                                            sequence_parallel=True), dict(seq_length=65536),
                                      25739.0, 55744.1),
}
LIKE_MEGATRON_LM = dict(micro_batch_size=1, global_batch_size=32, loss_impl="megatron", recompute="selective")
# Where the formula's architecture matches ours closely enough to compare the real model (query width = hidden).
SAME_ARCHITECTURE = ("llama31_8b_64k_tp2_cp2", "llama31_8b_8k_tp1_dp8", "llama31_8b_8k_tp2_pp4_vpp2")


@pytest.fixture(scope="module")
def infos(tmp_path_factory):
    out = {}
    for name, hf in HF.items():
        folder = tmp_path_factory.mktemp(name)
        hf.save_pretrained(folder)
        out[name] = describe(folder)
    return out


def ours(infos, name, info=None, **train):
    model, layout, settings, _, _ = CONFIGS[name]
    return estimate_memory(info or infos[model], ParallelLayout(**layout),
                           TrainConfig(**{**LIKE_MEGATRON_LM, **settings, **train}))


def formula_twin(info):
    """The model as Megatron-LM's activation formula sees it: query width = hidden, K/V as wide as Q, no qk-norm,
    a dense MLP of ffn_hidden_size whose two stored [tokens, ffn] tensors are what our SwiGLU's three of width
    2/3 ffn hold; a MoE model's layers as that dense MLP."""
    h = info.hidden_size
    return dataclasses.replace(info, head_dim=h // info.num_attention_heads, num_query_groups=info.num_attention_heads,
                               qk_layernorm=False, ffn_hidden_size=round(info.ffn_hidden_size * 2 / 3),
                               num_experts=None, moe_top_k=0, moe_ffn_hidden_size=None)


@pytest.mark.parametrize("name", CONFIGS)
def test_weights_gradients_and_optimizer_match_megatron_lm(infos, name):
    assert ours(infos, name).state / MIB == pytest.approx(CONFIGS[name][3], rel=0.10)
    # in fact to 0.1%: both count the same tensors (ours adds the qk-norm weights)
    assert ours(infos, name).state / MIB == pytest.approx(CONFIGS[name][3], rel=1e-3)


@pytest.mark.parametrize("name", SAME_ARCHITECTURE)
def test_estimate_is_within_ten_percent_of_megatron_lm(infos, name):
    est = ours(infos, name)
    mlm_total = CONFIGS[name][3] + CONFIGS[name][4]
    assert est.activations / MIB == pytest.approx(CONFIGS[name][4], rel=0.10)
    assert (est.state + est.activations) / MIB == pytest.approx(mlm_total, rel=0.10)


@pytest.mark.parametrize("name", CONFIGS)
def test_on_the_formulas_assumptions_ours_reproduces_its_activations(infos, name):
    model, layout, settings, _, mlm_act = CONFIGS[name]
    info = infos[model]
    est = ours(infos, name, info=formula_twin(info))
    tp, cp = layout.get("tensor", 1), layout.get("context", 1)
    layers_in_flight = est.micro_batches_in_flight * info.num_layers / layout.get("pipeline", 1)
    masks = 2 * info.hidden_size / tp * settings["seq_length"] / cp * layers_in_flight  # its two dropout masks
    overhead = 1.05 if tp == 1 else 1.0  # the formula's branch without SP adds 5%
    assert (est.activations + masks) * overhead / MIB == pytest.approx(mlm_act, rel=0.01)


def test_qwen3_stores_more_than_the_formula_counts_and_why(infos):
    dense = ours(infos, "qwen3_4b_64k_tp2_cp2")
    assert dense.activations / MIB > 1.15 * CONFIGS["qwen3_4b_64k_tp2_cp2"][4]  # query width 1.6 h, qk-norm
    assert any("qk-norm" in k for k in dense.parts)
    moe = ours(infos, "qwen3_30b_a3b_64k_tp2_cp2_ep8")
    assert moe.activations / MIB > 2 * CONFIGS["qwen3_30b_a3b_64k_tp2_cp2_ep8"][4]
    copies = moe.parts["per layer: expert inputs (top-k copies)"]
    assert copies == max(v for k, v in moe.parts.items() if k.startswith("per layer"))  # the largest MoE term


# ------------------------------------------------------------------------------------------ the rules
def test_distributed_optimizer_shards_over_data_and_context_parallel(infos):
    info = infos["llama31_8b"]
    train = TrainConfig(seq_length=8192, global_batch_size=32)
    one = estimate_memory(info, ParallelLayout(world=1), train, distributed_optimizer=False)
    n = one.weights / 2
    assert one.state == pytest.approx(18 * n)  # bf16 weights 2 + fp32 grads 4 + master and Adam m, v 12
    dp4 = estimate_memory(info, ParallelLayout(world=4), train)
    cp2_dp2 = estimate_memory(info, ParallelLayout(world=4, context=2), train)
    assert dp4.optimizer == pytest.approx(12 * n / 4) == pytest.approx(cp2_dp2.optimizer)
    assert cp2_dp2.activations < dp4.activations  # CP halves the tokens a rank holds


def test_experts_shard_over_ep_and_their_optimizer_over_expert_data_parallel(infos):
    info = infos["qwen3_30b_a3b"]
    train = TrainConfig(seq_length=4096, global_batch_size=32)
    experts = info.num_layers * info.num_experts * 3 * info.hidden_size * info.moe_ffn_hidden_size
    ep1, ep8 = ParallelLayout(world=8), ParallelLayout(world=8, expert=8)
    assert params_per_rank(info, ep1, 0).expert == experts
    assert params_per_rank(info, ep8, 0).expert == experts / 8
    assert expert_data_parallel(ep1) == 8 and expert_data_parallel(ep8) == 1
    # the same optimizer state per rank: EP1 shards all experts over 8 ranks, EP8 holds an eighth unsharded
    a, b = estimate_memory(info, ep1, train), estimate_memory(info, ep8, train)
    assert a.optimizer == pytest.approx(b.optimizer)
    assert b.weights == pytest.approx(a.weights - 2 * experts * 7 / 8)
    # with TP2, experts are tensor-parallel too (expert TP = TP) and expert DP = 32 / (2 x 8) = 2
    tp2 = ParallelLayout(world=32, tensor=2, context=2, expert=8, sequence_parallel=True)
    assert params_per_rank(info, tp2, 0).expert == experts / 16 and expert_data_parallel(tp2) == 2


def test_full_recompute_keeps_only_layer_inputs(infos):
    info = infos["qwen3_4b"]
    layout = ParallelLayout(world=8, tensor=2, context=2, sequence_parallel=True)
    none = estimate_memory(info, layout, TrainConfig(seq_length=65536))
    full = estimate_memory(info, layout, TrainConfig(seq_length=65536, recompute="full"))
    per_layer = sum(layer_activation_terms(info, layout).values())
    assert full.parts["layers"] == pytest.approx(none.parts["layers"] * 2 * info.hidden_size / 2 / per_layer)
    assert full.workspace >= none.parts["layers"] / info.num_layers  # one layer recomputed at a time
    assert full.total < none.total


def test_fused_linear_ce_drops_the_vocabulary_sized_activations(infos):
    info = infos["qwen3_4b"]
    layout = ParallelLayout(world=2, tensor=2, sequence_parallel=True)
    meg = estimate_memory(info, layout, TrainConfig(seq_length=32768, loss_impl="megatron"))
    fused = estimate_memory(info, layout, TrainConfig(seq_length=32768, loss_impl="fused_linear_ce"))
    assert "loss: fp32 softmax over the vocabulary" in meg.parts and meg.workspace > 0
    assert "loss: fp32 softmax over the vocabulary" not in fused.parts and fused.workspace == 0
    assert meg.activations - fused.activations > 32768 * 151936 * 4 / 2 * 0.9


def test_pipeline_micro_batches_in_flight():
    assert in_flight(ParallelLayout(world=4, pipeline=4), micro_batches=16, stage=0) == 4  # 1F1B
    assert in_flight(ParallelLayout(world=4, pipeline=4), micro_batches=2, stage=0) == 2
    assert in_flight(ParallelLayout(world=4, pipeline=4), micro_batches=16, stage=3) == 1
    # interleaved, rank 0: (4 - 1) x 2 + (2 - 1) x 4 + 1 = 11 chunks of half a stage
    assert in_flight(ParallelLayout(world=4, pipeline=4, virtual_pipeline=2), micro_batches=16, stage=0) == 5.5
    assert in_flight(ParallelLayout(world=1), micro_batches=16, stage=0) == 1


def test_disk_counts_every_kept_checkpoint(infos):
    info = infos["qwen3_4b"]
    n = total_params(info)
    assert 4.0e9 < n < 4.1e9  # Qwen3-4B: 4.02B with its tied embedding
    d = estimate_disk(info, TrainConfig(train_iters=2500, save_interval=250))
    assert d.checkpoints == 10 and d.per_checkpoint == 14 * n
    assert d.total == pytest.approx(10 * 14 * n + 2 * n + 2 * n)
    light = estimate_disk(info, TrainConfig(train_iters=2600, save_interval=250, save_final_optimizer=False))
    assert light.checkpoints == 11 and light.final_checkpoint == 2 * n


def test_fit_rule():
    assert fits(70 * GIB, 80 * GIB) == "ok"
    assert fits(78 * GIB, 80 * GIB) == "warn"
    assert fits(81 * GIB, 80 * GIB) == "fail"
