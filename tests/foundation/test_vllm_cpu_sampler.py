"""The CPU top-k-then-top-p plugin gives exactly vLLM's own mask (its function is the reference), is registered
as a vLLM general plugin, and steps aside where it does not apply."""
from importlib.metadata import entry_points

import pytest
import torch

from megatron_ssd.generation import vllm_cpu_sampler

ops = pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")
reference = getattr(ops, "_ssd_original_apply_top_k_top_p_pytorch", ops.apply_top_k_top_p_pytorch)


@pytest.mark.parametrize("vocab,rows", [(301, 256), (49152, 256), (151936, 72)])
def test_mask_equals_vllms_sort_based_one(vocab, rows):
    """fp32 logits, as vLLM's sampler hands them over; per-row k and p, from greedy-like to almost no cut."""
    g = torch.Generator().manual_seed(vocab)
    logits = torch.randn(rows, vocab, generator=g) * torch.rand(rows, 1, generator=g) * 8
    k = torch.tensor([[1, 2, 5, 20, 50, 200][i % 6] for i in range(rows)])
    p = torch.tensor([[0.05, 0.5, 0.8, 0.95, 0.999, 1.0][(i // 6) % 6] for i in range(rows)])
    want = reference(logits.clone(), k, p, allow_cpu_sync=True)
    got = vllm_cpu_sampler.top_k_then_top_p(logits.clone(), k, p)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.equal(got, want)
    kept = torch.isfinite(got).sum(-1)
    assert bool((kept >= 1).all() and (kept <= k).all()) and len(set(kept.tolist())) > 5  # the cases vary


def test_registered_for_vllm_and_falls_back_where_it_does_not_apply(monkeypatch):
    names = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert names.get("megatron_ssd_cpu_topk_topp") == "megatron_ssd.generation.vllm_cpu_sampler:register"
    vllm_cpu_sampler.register()
    vllm_cpu_sampler.register()  # idempotent: vLLM loads plugins once per process, tests may call it again
    assert ops._ssd_patched and ops._ssd_original_apply_top_k_top_p_pytorch is reference
    patched = ops.apply_top_k_top_p_pytorch
    logits = torch.randn(4, 64)
    no_topk = torch.full((4,), 64)  # k == vocab: rows without top-k go to vLLM's own sort
    for x, k, p in ((logits, no_topk, torch.full((4,), 0.9)), (logits, None, torch.full((4,), 0.9)),
                    (logits, torch.full((4,), 5), None), (logits.bfloat16(), torch.full((4,), 5), torch.full((4,), 0.9))):
        assert torch.equal(patched(x.clone(), k, p, allow_cpu_sync=True), reference(x.clone(), k, p, allow_cpu_sync=True))
