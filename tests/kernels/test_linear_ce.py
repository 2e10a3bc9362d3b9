"""Fused linear cross-entropy against the pure-torch reference: forward loss and both gradients.

Shapes are small and odd (not multiples of any tile) so the interpreter stays fast and every mask is hit.
"""
import pytest
import torch

from megatron_ssd.kernels import FusedLinearCrossEntropy, fused_linear_cross_entropy, reference_linear_cross_entropy

from lce_helpers import check_against_reference, loss_and_grads, make_inputs

N, H, V = 45, 40, 203


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("softcap,z_loss", [(None, 0.0), (3.0, 1e-2)], ids=["plain", "softcap_zloss"])
def test_matches_reference(device, dtype, reduction, softcap, z_loss):
    hidden, weight, labels = make_inputs(N, H, V, dtype, device, ignore_every=3)
    check_against_reference(hidden, weight, labels, reduction=reduction, softcap=softcap, z_loss=z_loss)


def test_fp16_no_ignored_rows(device):
    hidden, weight, labels = make_inputs(33, 24, 150, torch.float16, device)
    check_against_reference(hidden, weight, labels, reduction="mean")


@pytest.mark.parametrize("softcap,z_loss", [(2.0, 0.0), (None, 0.05)], ids=["softcap", "zloss"])
def test_softcap_and_zloss_separately(device, softcap, z_loss):
    # Large logits push tanh into saturation, where its derivative matters most.
    hidden, weight, labels = make_inputs(29, 40, 130, torch.float32, device, ignore_every=4, scale=4.0)
    check_against_reference(hidden, weight, labels, reduction="sum", softcap=softcap, z_loss=z_loss)


def test_large_logits_are_stable(device):
    # Logits of O(1000): a naive exp-sum would overflow; the online log-sum-exp must not.
    hidden, weight, labels = make_inputs(20, 32, 150, torch.float32, device, scale=300.0)
    (loss, gh, gw), _ = check_against_reference(hidden, weight, labels, reduction="none")
    assert loss.abs().max() > 100


def test_vocab_splits_and_tiny_tiles(device, monkeypatch):
    """Several vocab splits per token block and 16-wide tiles: the split-combine and swizzle paths."""
    from megatron_ssd.kernels import linear_ce_triton as tk

    if device.type == "cuda":
        pytest.skip("GPU split count comes from the SM count; covered by test_gpu_larger_shapes")
    tiles = tk.Tiles(16, 16, 16, 16, 1, 1)
    cfg = tk.LceConfig(fwd=tiles, dh=tiles, dw=tiles, group_m=2, max_splits=3)
    monkeypatch.setattr(tk, "default_config", lambda dtype: cfg)
    hidden, weight, labels = make_inputs(37, 21, 91, torch.float32, device, ignore_every=5)
    check_against_reference(hidden, weight, labels, reduction="sum", softcap=5.0, z_loss=1e-3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_loss_and_grads(device, reduction):
    hidden, weight, labels = make_inputs(17, 16, 50, torch.bfloat16, device)
    labels = torch.full_like(labels, -1)
    loss, gh, gw = loss_and_grads(fused_linear_cross_entropy, hidden, weight, labels,
                                  reduction=reduction, ignore_index=-1)
    ref = reference_linear_cross_entropy(hidden, weight, labels, reduction=reduction, ignore_index=-1)
    assert loss.shape == ref.shape == ((17,) if reduction == "none" else ())
    assert torch.equal(loss, torch.zeros_like(loss)) and torch.equal(ref.detach(), torch.zeros_like(ref))
    assert torch.equal(gh, torch.zeros_like(gh)) and torch.equal(gw, torch.zeros_like(gw))
    assert gh.dtype == gw.dtype == torch.bfloat16


def test_ignored_rows_get_no_gradient_and_mean_counts_valid_tokens(device):
    hidden, weight, labels = make_inputs(30, 24, 77, torch.float32, device, ignore_every=2)
    per_tok, gh, _ = loss_and_grads(fused_linear_cross_entropy, hidden, weight, labels, reduction="none")
    ignored = labels == -100
    assert torch.equal(per_tok[ignored], torch.zeros_like(per_tok[ignored]))
    assert torch.equal(gh[ignored], torch.zeros_like(gh[ignored])) and gh[~ignored].abs().sum() > 0
    mean = fused_linear_cross_entropy(hidden, weight, labels)
    torch.testing.assert_close(mean, per_tok.sum() / (~ignored).sum(), rtol=1e-6, atol=0)


def test_megatron_layout_noncontiguous_and_module(device):
    """Megatron passes hidden [S, B, H] (here a transposed, non-contiguous view) and labels [S, B]."""
    S, B = 11, 3
    hidden, weight, labels = make_inputs(B * S, 24, 101, torch.float32, device, ignore_every=4)
    hidden_sbh = hidden.detach().reshape(B, S, 24).transpose(0, 1).requires_grad_()  # [S, B, H] view
    labels_sb = labels.reshape(B, S).t()
    assert not hidden_sbh.is_contiguous()
    module = FusedLinearCrossEntropy(reduction="none", z_loss=1e-3)
    out = loss_and_grads(lambda h, w, y, **kw: module(h, w, y), hidden_sbh, weight, labels_sb)
    ref = loss_and_grads(reference_linear_cross_entropy, hidden_sbh, weight, labels_sb, reduction="none",
                         z_loss=1e-3)
    assert out[0].shape == (S, B) and out[1].shape == (S, B, 24)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_only_hidden_requires_grad(device):
    hidden, weight, labels = make_inputs(19, 16, 60, torch.float32, device, ignore_every=3)
    weight = weight.detach()
    loss = fused_linear_cross_entropy(hidden, weight, labels, reduction="sum")
    (gh,) = torch.autograd.grad(loss, (hidden,))
    (rh,) = torch.autograd.grad(reference_linear_cross_entropy(hidden, weight, labels, reduction="sum"), (hidden,))
    torch.testing.assert_close(gh, rh, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_gpu_larger_shapes(dtype):
    """Real tile sizes, several token blocks and vocab splits, compiled kernels."""
    hidden, weight, labels = make_inputs(1031, 520, 5003, dtype, torch.device("cuda"), ignore_every=7)
    check_against_reference(hidden, weight, labels, reduction="mean", softcap=30.0, z_loss=1e-4)
