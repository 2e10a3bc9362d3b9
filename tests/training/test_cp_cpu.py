"""Context parallelism on CPU/gloo: the CPU CP attention (models.cpu_cp_attention) against dense attention, and
whole training runs at CP=2, TP2 x CP2 and (Qwen3-MoE, GQA, qk-norm) TP2 x CP2 x EP2 through the real launch
path, reproducing one rank's losses and gradient norms."""
from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch

import train_helpers as h
from megatron_ssd.config.parallel import ParallelLayout
from megatron_ssd.models.context_parallel import cp_partition_index
from megatron_ssd.models.parallel import spawn

STEPS = 3
LOSS_RTOL = 1e-5  # fp32: summation order (and RoPE's absolute positions) differ between layouts
GNORM_RTOL = 1e-4


# --------------------------------------------------------------------------------------------- the attention
def dense_reference(q, k, v, cu_padded, scale):
    """Full-sequence attention in float64, one document at a time, causal inside each (no CP, no mask tensor).
    q [T, np, hn], k/v [T, ng, hn] -> [T, np * hn]."""
    rep = q.size(1) // k.size(1)
    out = torch.zeros(q.size(0), q.size(1), q.size(2), dtype=torch.float64)
    q, k, v = q.double(), k.double().repeat_interleave(rep, 1), v.double().repeat_interleave(rep, 1)
    for s, e in zip(cu_padded[:-1], cu_padded[1:]):
        scores = torch.einsum("ihd,jhd->hij", q[s:e], k[s:e]) * scale
        scores = scores.masked_fill(torch.ones(e - s, e - s, dtype=torch.bool).triu(1), -math.inf)
        out[s:e] = torch.einsum("hij,jhd->ihd", scores.softmax(-1), v[s:e])
    return out.reshape(q.size(0), -1)


# (padded segment lengths, query heads, key/value heads, head dim); lengths are multiples of 2 x 4
SHAPES = [([16, 8, 24], 4, 2, 8), ([8], 2, 2, 16), ([32, 8, 8, 16], 8, 1, 8)]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _inputs(lengths, heads, groups, dim, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q, k, v = (torch.randn(total, n, dim, generator=gen).to(dtype) for n in (heads, groups, groups))
    grad = torch.randn(total, heads * dim, generator=gen).to(dtype)
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return q, k, v, grad, cu


def _dense_with_grads(q, k, v, grad, cu, scale):
    leaves = [x.double().requires_grad_() for x in (q, k, v)]
    out = dense_reference(*leaves, cu.tolist(), scale)
    out.backward(grad.double())
    return out.detach(), [x.grad for x in leaves]


def attention_module(heads: int, groups: int, dim: int, cp: int):
    from megatron.core.transformer.enums import AttnMaskType
    from megatron.core.transformer.transformer_config import TransformerConfig

    from megatron_ssd.models.cpu_cp_attention import CPUContextParallelAttention

    config = TransformerConfig(num_layers=1, hidden_size=heads * dim, num_attention_heads=heads,
                               num_query_groups=groups, kv_channels=dim, context_parallel_size=cp,
                               attention_dropout=0.0, hidden_dropout=0.0, use_cpu_initialization=True)
    return CPUContextParallelAttention(config, 1, AttnMaskType.causal, "self")


def _cp_rank_worker(cp: int) -> None:
    """On each of `cp` spawned gloo ranks: the module's output rows and K/V gradients for this rank's tokens
    equal the dense reference's (the gather's backward reduce-scatters the other ranks' contributions)."""
    from megatron.core import parallel_state as ps
    from megatron.core.packed_seq_params import PackedSeqParams

    rank = ps.get_context_parallel_rank()
    for lengths, heads, groups, dim in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            q, k, v, grad, cu = _inputs(lengths, heads, groups, dim, dtype)
            attn = attention_module(heads, groups, dim, cp)
            want, want_grads = _dense_with_grads(q, k, v, grad, cu, attn.softmax_scale)
            mine = cp_partition_index(cu, cp, rank)
            cu_t = torch.from_numpy(cu)
            params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu_t, cu_seqlens_kv=cu_t,
                                     cu_seqlens_q_padded=cu_t, cu_seqlens_kv_padded=cu_t,
                                     max_seqlen_q=max(lengths), max_seqlen_kv=max(lengths))
            local = [x[mine].clone().requires_grad_() for x in (q, k, v)]
            out = attn(*local, None, packed_seq_params=params)
            assert out.dtype == dtype and out.shape == (len(mine), heads * dim)
            out.backward(grad[mine])
            torch.testing.assert_close(out.double(), want[mine], **TOL[dtype])
            for got, full in zip(local, want_grads):
                torch.testing.assert_close(got.grad.double(), full[mine], **TOL[dtype])


def test_cp_attention_matches_dense_document_attention_forward_and_backward():
    """CP=1 in this process, CP=2 on two gloo ranks; three shapes (GQA 2:1 and 8:1, one to four documents),
    float32 and bfloat16."""
    spawn(_cp_rank_worker, 1, layout=ParallelLayout(world=1), cpu=True)
    spawn(_cp_rank_worker, 2, layout=ParallelLayout(world=2, context=2), cpu=True)


def test_cp_attention_refuses_a_batch_that_is_not_thd():
    spawn(_refuses_bshd, layout=ParallelLayout(world=1), cpu=True)


def _refuses_bshd() -> None:
    attn = attention_module(2, 2, 8, 1)
    q = torch.zeros(8, 2, 8)
    with pytest.raises(ValueError, match="THD micro-batches"):
        attn(q, q, q, None, packed_seq_params=None)


# --------------------------------------------------------------------------------------------- whole runs
def assert_same_curve(got: list[dict], want: list[dict], gnorm_rtol: float = GNORM_RTOL) -> None:
    assert [r["iteration"] for r in got] == [r["iteration"] for r in want]
    assert [r["loss_tokens"] for r in got] == [r["loss_tokens"] for r in want]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=LOSS_RTOL)
    np.testing.assert_allclose([r["grad_norm"] for r in got], [r["grad_norm"] for r in want], rtol=gnorm_rtol)
    assert abs(want[-1]["loss"] - want[0]["loss"]) > 1e-3  # the curve moves: not trivially equal


def _train(run, nproc: int, **overrides) -> list[dict]:
    from conftest import single_rank_trainer

    cfg = h.config(run, **{"parallel.nproc_per_node": nproc, "train.train_iters": STEPS, **overrides})
    if nproc == 1:
        with single_rank_trainer(cfg) as tr:
            tr.fit()
    else:
        proc = h.torchrun(h.write_cfg(cfg), nproc)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    starts = [r for r in h.records(run) if r["kind"] == "start"]
    assert starts[-1]["thd"] is (overrides.get("parallel.context", 1) > 1)
    return h.step_records(run)


@pytest.fixture(scope="module")
def dense_runs(assets, tmp_path_factory):
    def make(name):
        run = tmp_path_factory.mktemp(name) / "run"
        shutil.copytree(assets / "pack", run / "pack")
        shutil.copytree(assets / "base_untied", run / "train" / "base")
        return run

    return make


@pytest.fixture(scope="module")
def dense_reference_curve(dense_runs):
    return _train(dense_runs("tp1"), 1)


@pytest.mark.parametrize("name,nproc,layout", [
    ("cp2", 2, {"parallel.context": 2}),
    ("tp2cp2", 4, {"parallel.context": 2, "parallel.tensor": 2}),
])
def test_cp_layout_reproduces_the_single_rank_losses(dense_runs, dense_reference_curve, name, nproc, layout):
    assert_same_curve(_train(dense_runs(name), nproc, **layout), dense_reference_curve)


def aligned_pack(folder, multiple: int, fingerprint: str) -> None:
    """Packed data whose documents (and bin tails) are multiples of `multiple` long, so context parallelism
    adds no padding tokens: with MoE, padding tokens are routed and enter the router's aux loss, so a padded
    CP run would not be the single-rank run (GPU/TE alike). Completions are shortened to get there."""
    from megatron_ssd.data.pack import select_documents, write_packed

    table = h.synthetic.sample_table(48, h.VOCAB, seed=3)
    p, c = table.prompt_lengths, table.completion_lengths
    keep = c - (p + c - 1) % multiple  # document length p + c - 1 (training.data.pack.select_documents)
    keep = np.where(keep < 1, keep + multiple, keep)
    values = np.concatenate([table.completion_values[table.completion_offsets[i]:table.completion_offsets[i] + n]
                             for i, n in enumerate(keep)])
    table = dataclasses.replace(table, completion_values=values,
                                completion_offsets=np.concatenate([[0], np.cumsum(keep)]).astype(np.int64))
    assert not ((table.prompt_lengths + table.completion_lengths - 1) % multiple).any()
    docs = select_documents(table, h.SEQ, "truncate")
    write_packed(folder, table, docs, h.SEQ, pad_id=0, tokenizer_fingerprint=fingerprint)


def test_qwen3_moe_tp2_cp2_ep2_reproduces_the_single_rank_losses(tmp_path):
    """The 30B preset's layout kinds (TP, CP, EP) on 4 gloo ranks: Qwen3-MoE with GQA (4 heads / 2 KV heads),
    qk-norm and top-2 routing with the aux loss."""
    from transformers import Qwen3MoeConfig

    from megatron_ssd.models.convert import hf_to_megatron

    hf = h.synthetic.random_model(tmp_path / "hf", Qwen3MoeConfig(
        vocab_size=h.VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=48, num_experts=4,
        num_experts_per_tok=2, norm_topk_prob=True, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, tie_word_embeddings=False, router_aux_loss_coef=0.01))
    curves = {}
    for name, nproc, layout in (("ref", 1, {}), ("tp2cp2ep2", 4, {
            "parallel.tensor": 2, "parallel.context": 2, "parallel.expert": 2,
            "parallel.sequence_parallel": True})):  # Megatron's MoE refuses TP > 1 without SP
        run = tmp_path / name
        aligned_pack(run / "pack", 4, h.fingerprint(hf))
        hf_to_megatron(hf, run / "train" / "base", dtype="float32")
        curves[name] = _train(run, nproc, **layout)
    # The load-balancing loss is computed over the tokens each TP x CP shard routes (Megatron's MoE aux loss under
    # sequence parallelism), so its gradient, 0.01 of the total, differs from one rank's by a few 1e-4 relative;
    # the losses themselves match at LOSS_RTOL.
    assert_same_curve(curves["tp2cp2ep2"], curves["ref"], gnorm_rtol=2e-3)
