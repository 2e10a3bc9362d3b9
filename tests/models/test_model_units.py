"""Unit tests without process groups: arch parsing, provider config, layout checks, sharding, QKV layout,
Transformer Engine name aliases, checkpoint pointers, the CPU compatibility layer."""
from __future__ import annotations

import pytest
import torch

import tiny_models as tiny
from megatron_ssd.config.parallel import ParallelConfig, ParallelLayout
from megatron_ssd.config.train import TrainConfig
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.models import checkpoint as ckpt
from megatron_ssd.models.arch import describe, pad_vocab_size
from megatron_ssd.models.mapping import ArchMapping
from megatron_ssd.models.parallel import megatron_world
from megatron_ssd.models.sharding import KINDS, merge, split
from megatron_ssd.models.weights import canonical_name


# ------------------------------------------------------------------------------------------------ arch
def test_describe_reads_each_family():
    llama = describe(tiny.hf_config("llama"))
    assert llama.rope_llama3 == {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 64.0}
    assert (llama.rope_theta, llama.qk_layernorm, llama.tie_word_embeddings, llama.head_dim) == (500000.0, False, False, 16)
    qwen = describe(tiny.hf_config("qwen3"))
    assert (qwen.qk_layernorm, qwen.tie_word_embeddings, qwen.head_dim, qwen.rope_llama3) == (True, True, 32, None)
    moe = describe(tiny.hf_config("qwen3_moe"))
    assert (moe.num_experts, moe.moe_top_k, moe.moe_ffn_hidden_size, moe.moe_aux_loss_coeff) == (4, 2, 48, 0.01)


def test_describe_refuses_what_it_cannot_map():
    from transformers import Qwen3Config, Qwen3MoeConfig

    with pytest.raises(ConfigError, match="model_type='gpt2' is not supported"):
        from transformers import GPT2Config

        describe(GPT2Config())
    with pytest.raises(ConfigError, match="attention_bias=True"):
        describe(Qwen3Config(attention_bias=True))
    with pytest.raises(ConfigError, match="rope type 'yarn'"):
        describe(Qwen3Config(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}))
    with pytest.raises(ConfigError, match="mlp_only_layers"):
        describe(Qwen3MoeConfig(mlp_only_layers=[0]))


def test_vocab_padding():
    assert pad_vocab_size(501, 1) == 512
    assert pad_vocab_size(501, 2) == 512
    assert pad_vocab_size(513, 2) == 768
    assert pad_vocab_size(151936, 1) == 151936  # Qwen3: 1187 x 128
    assert pad_vocab_size(151936, 8) == 152576  # ... but 1187 is odd, so TP=8 pads to 149 x 1024
    assert pad_vocab_size(128256, 2) == 128256  # Llama-3: 501 x 256
    assert pad_vocab_size(128256, 8) == 129024


# ------------------------------------------------------------------------------------------- provider
def test_transformer_config_per_family():
    from megatron_ssd.models.provider import layer_spec, transformer_config

    c = transformer_config(tiny.hf_config("qwen3"), ParallelConfig(), "bfloat16", use_te=False)
    assert (c.normalization, c.gated_linear_unit, c.qk_layernorm, c.kv_channels, c.num_query_groups) == (
        "RMSNorm", True, True, 32, 2)
    assert (c.add_bias_linear, c.hidden_dropout, c.attention_dropout) == (False, 0.0, 0.0)
    assert c.params_dtype == torch.bfloat16 and c.bf16
    assert c.use_cpu_initialization == (not torch.cuda.is_available())
    m = transformer_config(tiny.hf_config("qwen3_moe"), ParallelConfig(), use_te=False, moe_aux_loss_coeff=0.5)
    assert (m.num_moe_experts, m.moe_router_topk, m.moe_ffn_hidden_size, m.moe_aux_loss_coeff) == (4, 2, 48, 0.5)
    assert (m.moe_router_load_balancing_type, m.moe_router_pre_softmax, m.moe_grouped_gemm) == ("aux_loss", False, False)
    assert m.moe_shared_expert_intermediate_size is None
    with megatron_world():  # the block spec picks this pipeline stage's layers
        spec = layer_spec(m, use_te=False)
    experts = spec.layer_specs[0].submodules.mlp.submodules.experts
    assert experts.module.__name__ == "SequentialMLP"


# --------------------------------------------------------------------------------------------- layout
def _layout_error(**kw) -> str:
    model = kw.pop("model", "qwen3_moe")
    train = kw.pop("train", None)
    layout = ParallelLayout.from_config(ParallelConfig(**kw))
    with pytest.raises(ConfigError) as e:
        layout.validate(train, describe(tiny.hf_config(model)), cuda=False)
    return str(e.value)


def test_layout_errors_name_the_keys():
    assert "parallel.tensor=3 does not divide num_attention_heads=4" in _layout_error(tensor=3, nproc_per_node=3)
    assert "parallel.tensor=4 does not divide num_key_value_heads=2" in _layout_error(tensor=4, nproc_per_node=4)
    assert "parallel.pipeline=3 = 3 does not divide num_hidden_layers=2" in _layout_error(pipeline=3, nproc_per_node=3)
    msg = _layout_error(pipeline=2, virtual_pipeline=2, nproc_per_node=2)
    assert "parallel.pipeline=2 x parallel.virtual_pipeline=2 = 4 does not divide num_hidden_layers=2" in msg
    assert "parallel.expert=3 does not divide num_experts=4" in _layout_error(expert=3, nproc_per_node=3)
    assert "needs a mixture-of-experts model" in _layout_error(model="llama", expert=2, nproc_per_node=2)
    assert "sequence_parallel needs parallel.tensor > 1" in _layout_error(sequence_parallel=True, nproc_per_node=2)
    msg = _layout_error(nproc_per_node=4, train=TrainConfig(global_batch_size=6, micro_batch_size=1))
    assert "train.global_batch_size=6 is not divisible by train.micro_batch_size=1 x data-parallel size 4" in msg
    # all problems at once
    msg = _layout_error(tensor=3, pipeline=3, nproc_per_node=9)
    assert "parallel.tensor=3" in msg and "parallel.pipeline=3" in msg


def test_layout_config_rules_need_no_model():
    def problems(train=None, **kw):
        return ParallelLayout.from_config(ParallelConfig(**kw)).problems(train)

    assert problems(tensor=2, nproc_per_node=4) == []
    assert ParallelLayout.from_config(ParallelConfig(tensor=2, nproc_per_node=4)).data == 2
    assert problems(sequence_parallel=True) == ["parallel.sequence_parallel needs parallel.tensor > 1."]
    # the GPU rule waits until it is known where the ranks run
    assert problems(tensor=2, sequence_parallel=True, nproc_per_node=2) == []
    assert "needs parallel.pipeline >= 2 (it is 1)" in problems(virtual_pipeline=2)[0]
    assert problems(tensor=0) == ["parallel.tensor=0: must be at least 1."]
    # interleaving needs a multiple of pipeline micro-batches per step: 6 / (1 x DP 1) = 6 is not one of 4
    (msg,) = problems(TrainConfig(global_batch_size=6), pipeline=4, virtual_pipeline=2, nproc_per_node=4)
    assert "micro-batches per step (6" in msg and "multiple of parallel.pipeline=4" in msg
    assert problems(TrainConfig(global_batch_size=8), pipeline=4, virtual_pipeline=2, nproc_per_node=4) == []
    (msg,) = problems(TrainConfig(seq_length=1022, global_batch_size=2), context=2, nproc_per_node=2)
    assert "train.seq_length=1022 must be divisible by 2 x parallel.context (4)" in msg
    (msg,) = problems(expert=4, nproc_per_node=2)
    assert "parallel.expert=4 must divide data x context parallel size (2)" in msg


def test_layout_ok_and_checkpoint_vocab():
    info = describe(tiny.hf_config("qwen3_moe"))
    lay = ParallelLayout.from_config(ParallelConfig(tensor=2, expert=2, nproc_per_node=4))
    assert lay.validate(TrainConfig(global_batch_size=4), info, cuda=False) is lay
    assert (lay.data, lay.micro_batches_per_step(TrainConfig(global_batch_size=4)), pad_vocab_size(info.vocab_size, 2)) == (2, 2, 512)
    assert lay.sharding() == {"tensor": 2, "pipeline": 1, "virtual_pipeline": None, "context": 1, "expert": 2, "data": 2}
    llama = ParallelLayout.from_config(ParallelConfig(tensor=4, nproc_per_node=4))
    with pytest.raises(ConfigError, match="does not divide the checkpoint's padded vocab size 510"):
        llama.validate(model=describe(tiny.hf_config("llama")), padded_vocab_size=510, cuda=False)


def test_process_groups_report_this_ranks_coordinates():
    with megatron_world(ParallelLayout(world=1)) as dims:
        assert (dims.world, dims.tensor, dims.data, dims.rank, dims.tp_rank, dims.pp_rank, dims.dp_rank) == (
            1, 1, 1, 0, 0, 0, 0)
        assert dims.is_last_stage and dims.as_dict()["data"] == 1
    with pytest.raises(ConfigError, match="world size 2 .* not divisible by parallel.tensor"):
        with megatron_world(ParallelLayout(world=2, tensor=4), init_file="unused"):
            pass


# ------------------------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1, 2, 4])
def test_split_merge_inverse(kind, size):
    t = torch.arange(8 * 12, dtype=torch.float32).reshape(8, 12)
    shards = [split(t, kind, r, size).clone() for r in range(size)]
    assert torch.equal(merge(shards, kind), t)
    if kind == "replicated":
        assert all(torch.equal(s, t) for s in shards)


def test_gated_split_keeps_gate_and_up_together():
    gate, up = torch.full((4, 2), 1.0), torch.full((4, 2), 2.0)
    gate[2:], up[2:] = 3.0, 4.0
    shard1 = split(torch.cat([gate, up]), "column_gated", 1, 2)
    assert shard1[:, 0].tolist() == [3.0, 3.0, 4.0, 4.0]  # rank 1: second half of gate, then of up


def test_qkv_fusion_is_megatron_group_interleave():
    """linear_qkv rows: per query group g: its q heads, k_g, v_g (4 heads, 2 groups, head_dim 16)."""
    m = ArchMapping(describe(tiny.hf_config("llama")))
    d, hidden = 16, 64
    q = torch.arange(4).repeat_interleave(d).float()[:, None].expand(4 * d, hidden) + 100
    k = torch.arange(2).repeat_interleave(d).float()[:, None].expand(2 * d, hidden) + 200
    v = torch.arange(2).repeat_interleave(d).float()[:, None].expand(2 * d, hidden) + 300
    rule, _ = m.find("decoder.layers.0.self_attention.linear_qkv.weight")
    fused = m.to_megatron(rule, [q, k, v], 512)
    heads = fused[::d, 0].tolist()
    assert heads == [100, 101, 200, 300, 102, 103, 201, 301]
    assert all(torch.equal(a, b) for a, b in zip(m.to_hf(rule, fused), (q, k, v)))
    # A TP=2 split hands each rank whole groups.
    assert split(fused, rule.kind, 1, 2)[::d, 0].tolist() == [102, 103, 201, 301]


def test_vocab_rows_padded_with_zeros_and_trimmed():
    m = ArchMapping(describe(tiny.hf_config("llama")))
    rule, _ = m.find("embedding.word_embeddings.weight")
    emb = torch.randn(501, 64)
    padded = m.to_megatron(rule, [emb], 512)
    assert padded.shape == (512, 64) and not padded[501:].any()
    assert torch.equal(m.to_hf(rule, padded)[0], emb)


def test_tied_output_is_imported_from_embedding_and_never_exported():
    m = ArchMapping(describe(tiny.hf_config("qwen3")))
    rule, b = m.find("output_layer.weight")
    assert rule.hf_names(b) == ["model.embed_tokens.weight"] and not m.exported(rule)
    untied = ArchMapping(describe(tiny.hf_config("llama")))
    rule, b = untied.find("output_layer.weight")
    assert rule.hf_names(b) == ["lm_head.weight"] and untied.exported(rule)


def test_expert_and_router_mapping():
    m = ArchMapping(describe(tiny.hf_config("qwen3_moe")))
    rule, b = m.find("decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight")
    assert rule.hf_names(b) == ["model.layers.1.mlp.experts.3.gate_proj.weight", "model.layers.1.mlp.experts.3.up_proj.weight"]
    assert rule.kind == "column_gated"
    rule, b = m.find("decoder.layers.0.mlp.router.weight")
    assert rule.hf_names(b) == ["model.layers.0.mlp.gate.weight"] and rule.kind == "replicated"
    with pytest.raises(KeyError, match="no HF mapping"):
        m.find("decoder.layers.0.mlp.linear_fc1.weight")


@pytest.mark.parametrize("local,expected", [
    # pipeline stage 2 of 2 (layers 2,3 of 4), local spec
    ("decoder.layers.0.input_layernorm.weight", "decoder.layers.2.input_layernorm.weight"),
    # Transformer Engine: norms fused into the following linear
    ("decoder.layers.1.self_attention.linear_qkv.layer_norm_weight", "decoder.layers.3.input_layernorm.weight"),
    ("decoder.layers.0.mlp.linear_fc1.layer_norm_weight", "decoder.layers.2.pre_mlp_layernorm.weight"),
    # EP rank 1 of 2 with 2 local experts: local expert 1 is global expert 3
    ("decoder.layers.0.mlp.experts.local_experts.1.linear_fc2.weight",
     "decoder.layers.2.mlp.experts.local_experts.3.linear_fc2.weight"),
    # TE grouped GEMM: weight{j} of one module per expert projection
    ("decoder.layers.1.mlp.experts.linear_fc1.weight0", "decoder.layers.3.mlp.experts.local_experts.2.linear_fc1.weight"),
    ("decoder.final_layernorm.weight", "decoder.final_layernorm.weight"),
])
def test_canonical_names(local, expected):
    assert canonical_name(local, {0: 2, 1: 3}, expert_offset=2) == expected


# ------------------------------------------------------------------------------------------ checkpoint
def test_checkpoint_pointers(tmp_path):
    root = tmp_path / "ckpt"
    (root / "iter_0000500").mkdir(parents=True)
    with pytest.raises(SSDError, match="no 'latest'.*found iter_0000500"):
        ckpt.resolve_checkpoint(root)
    ckpt.write_latest(root, 500)
    assert ckpt.resolve_checkpoint(root) == root / "iter_0000500"
    (root / "latest").unlink()
    assert ckpt.resolve_checkpoint(root) == root / "iter_0000500"  # Megatron-LM's pointer alone
    (root / "latest").write_text("700")
    with pytest.raises(SSDError, match="points to '700'"):
        ckpt.resolve_checkpoint(root)
    with pytest.raises(SSDError, match="missing metadata.json"):
        ckpt.verify_complete(root / "iter_0000500")


# ------------------------------------------------------------------------------------------ cpu compat
@pytest.mark.skipif(torch.cuda.is_available(), reason="the compatibility layer is CPU-only")
def test_cpu_compat():
    from megatron.core.tensor_parallel import random as mrandom

    from megatron_ssd.models.cpu_compat import apply_cpu_compat

    assert apply_cpu_compat() and apply_cpu_compat()  # idempotent
    assert torch.cuda.current_device() == "cpu"
    t = torch.zeros(3, device="cuda")
    assert t.device.type == "cpu" and t.cuda() is t and t.to("cuda").device.type == "cpu"
    assert t.type() == "torch.cuda.FloatTensor" and t.bfloat16().type() == "torch.cuda.BFloat16Tensor"
    assert t.type(torch.float64).dtype == torch.float64  # casts still cast
    state = mrandom._get_cuda_rng_state()
    a = torch.rand(4)
    mrandom._set_cuda_rng_state(state)
    assert torch.equal(torch.rand(4), a)
    torch.cuda.manual_seed(7)
    b = torch.rand(2)
    torch.cuda.manual_seed(7)
    assert torch.equal(torch.rand(2), b)
    torch.cuda.synchronize()
