"""Shared inputs and comparisons for the fused linear cross-entropy tests."""
from __future__ import annotations

import torch

from megatron_ssd.kernels import fused_linear_cross_entropy, reference_linear_cross_entropy

# (rtol, atol as a fraction of max|expected|). Gradients: bf16/fp16 round d logits to the input dtype before
# the gradient GEMMs (as tensor cores need) and the result to the output dtype. The loss is fp32 from the same
# input values in both implementations, so it is held to the fp32 tolerance for every dtype.
TOLERANCES = {
    torch.float32: (1e-4, 1e-5),
    torch.float16: (5e-3, 2e-3),
    torch.bfloat16: (3e-2, 1e-2),
}


def make_inputs(n, h, v, dtype, device, *, ignore_every=0, seed=0, scale=1.0, ignore_index=-100):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen)
    weight = torch.randn(v, h, generator=gen) * (scale / h ** 0.5) * 3
    labels = torch.randint(0, v, (n,), generator=gen)
    if ignore_every:
        labels[::ignore_every] = ignore_index
    return (hidden.to(dtype).to(device).requires_grad_(), weight.to(dtype).to(device).requires_grad_(),
            labels.to(device))


def upstream_grad(loss, seed=1):
    if loss.dim() == 0:
        return torch.tensor(1.7, device=loss.device)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(loss.shape, generator=gen).to(loss.device)


def loss_and_grads(fn, hidden, weight, labels, **kw):
    loss = fn(hidden, weight, labels, **kw)
    gh, gw = torch.autograd.grad(loss, (hidden, weight), upstream_grad(loss))
    return loss.detach(), gh, gw


def assert_close(actual, expected, dtype, what):
    rtol, atol_frac = TOLERANCES[dtype]
    expected = expected.float()
    atol = atol_frac * max(expected.abs().max().item(), 1e-6)
    torch.testing.assert_close(actual.float(), expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def check_against_reference(hidden, weight, labels, **kw):
    out = loss_and_grads(fused_linear_cross_entropy, hidden, weight, labels, **kw)
    ref = loss_and_grads(reference_linear_cross_entropy, hidden, weight, labels, **kw)
    for name, a, b in zip(("loss", "grad_hidden", "grad_weight"), out, ref):
        assert torch.isfinite(a).all(), f"{name} has non-finite values"
        assert_close(a, b, torch.float32 if name == "loss" else hidden.dtype, name)
    assert out[1].dtype == hidden.dtype and out[2].dtype == weight.dtype
    return out, ref
