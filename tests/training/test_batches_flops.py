"""Data order, document masks, CP segment padding, and the FLOP/MFU arithmetic (no process groups)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import train_helpers as h
from megatron_ssd.training.batches import BatchOrder, document_causal_mask, pad_segments
from megatron_ssd.training.flops import effective_seq_length, flops_per_token, matmul_params, mfu


def test_batch_order_is_a_pure_function_of_the_iteration():
    order = BatchOrder(num_bins=10, global_batch_size=4, seed=3)
    again = BatchOrder(num_bins=10, global_batch_size=4, seed=3)
    stream = np.concatenate([order.global_batch(i) for i in range(5)])  # 20 positions = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])  # a new permutation per epoch
    assert all(np.array_equal(again.global_batch(i), order.global_batch(i)) for i in (4, 0, 2))
    assert not np.array_equal(BatchOrder(10, 4, seed=4).global_batch(0), order.global_batch(0))
    # DP ranks take contiguous slices of the global batch, split into micro-batches
    mbs = [order.rank_micro_batches(1, r, 2, 1) for r in range(2)]
    assert np.array_equal(np.concatenate(mbs[0] + mbs[1]), order.global_batch(1))
    assert [len(m) for m in mbs[0]] == [1, 1]


def test_document_causal_mask_matches_a_brute_force_definition():
    cus = [np.array([0, 3, 7, 8]), np.array([0, 8])]
    mask = document_causal_mask(cus, 8)
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == torch.bool
    for b, cu in enumerate(cus):
        seg = np.repeat(np.arange(len(cu) - 1), np.diff(cu))
        for i in range(8):
            for j in range(8):
                allowed = j <= i and seg[i] == seg[j]
                assert bool(mask[b, 0, i, j]) == (not allowed)


def test_pad_segments_aligns_every_document_for_context_parallelism():
    arrays = {"tokens": np.arange(1, 11), "loss_mask": np.ones(10, dtype=np.float32)}
    out, cu, cu_padded = pad_segments(arrays, np.array([0, 3, 8, 10]), 4, {"tokens": 0, "loss_mask": 0.0})
    assert cu.tolist() == [0, 3, 8, 10] and cu_padded.tolist() == [0, 4, 12, 16]
    assert out["tokens"].tolist() == [1, 2, 3, 0, 4, 5, 6, 7, 8, 0, 0, 0, 9, 10, 0, 0]
    assert out["loss_mask"].sum() == 10 and out["loss_mask"][3] == 0  # padding never carries loss
    # ... and a total that splits evenly (e.g. CP=2 x SP=2 x FP8's 16 = 64): one loss-free tail segment
    out, cu, cu_padded = pad_segments(arrays, np.array([0, 3, 8, 10]), 4, {"tokens": 0, "loss_mask": 0.0}, 64)
    assert cu_padded.tolist() == [0, 4, 12, 16, 64] and cu.tolist() == [0, 3, 8, 10, 58]
    assert len(out["tokens"]) == 64 and out["tokens"][16:].sum() == 0 and out["loss_mask"].sum() == 10


def test_matmul_params_counts_the_weights_a_token_multiplies_with(tmp_path):
    from megatron_ssd.models.arch import describe

    for tie in (True, False):
        folder = h.tiny_hf_model(tmp_path / f"m{tie}", layers=2, tie=tie)
        info = describe(folder)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder)
        norms = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 1)
        embedding_lookup = 0 if tie else h.VOCAB * 64  # untied: the input table is a lookup, not a matmul
        hf_matmul = sum(p.numel() for p in model.parameters()) - norms - embedding_lookup
        assert matmul_params(info, padded_vocab_size=h.VOCAB) == hf_matmul


def test_flops_and_mfu_arithmetic():
    from megatron_ssd.models.arch import ArchInfo

    info = ArchInfo(arch="llama", vocab_size=100, hidden_size=8, num_layers=2, num_attention_heads=2,
                    num_query_groups=1, head_dim=4, ffn_hidden_size=16, norm_eps=1e-5, rope_theta=1e4,
                    max_position_embeddings=64, tie_word_embeddings=True, qk_layernorm=False, init_std=0.02)
    n = 2 * (8 * 8 * 2 + 8 * 4 * 2 + 3 * 8 * 16) + 128 * 8
    assert matmul_params(info, 128) == n
    # packed documents of 2 and 6 tokens: a token sees (2*2 + 6*6) / 8 = 5 positions on average
    s_eff = effective_seq_length([np.array([2, 6])])
    assert s_eff == 5.0
    assert flops_per_token(info, 128, s_eff) == 6 * n + 12 * 2 * 8 * 5.0
    assert mfu(1e12, 2.0, 4, 1e11) == pytest.approx(1.25)
    assert mfu(1e12, 2.0, 4, None) is None
