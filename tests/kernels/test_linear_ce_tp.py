"""Vocab-parallel fused linear CE at TP=2 over gloo, against the single-rank reference and Megatron-core.

Each spawned rank holds a contiguous half of the vocabulary (as Megatron's ColumnParallelLinear does) with a
shard size that is not a tile multiple, so labels owned by the other rank fall inside this rank's last tile.
"""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megatron_ssd.kernels import fused_linear_cross_entropy, reference_linear_cross_entropy

from lce_helpers import assert_close, loss_and_grads, make_inputs, upstream_grad

N, H, V_LOCAL, TP = 37, 40, 97, 2
CASES = [
    dict(dtype=torch.float32, reduction="none", softcap=None, z_loss=0.0),
    dict(dtype=torch.float32, reduction="mean", softcap=4.0, z_loss=1e-2),
    dict(dtype=torch.bfloat16, reduction="sum", softcap=None, z_loss=1e-3),
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_rank(rank, case, tp_group):
    dtype = case.pop("dtype")
    hidden, full_weight, labels = make_inputs(N, H, V_LOCAL * TP, dtype, "cpu", ignore_every=4, seed=3)
    shard = full_weight.detach()[rank * V_LOCAL:(rank + 1) * V_LOCAL].clone().requires_grad_()
    single = loss_and_grads(reference_linear_cross_entropy, hidden, full_weight, labels, **case)
    expected = (single[0], single[1], single[2][rank * V_LOCAL:(rank + 1) * V_LOCAL])
    for fn in (fused_linear_cross_entropy, reference_linear_cross_entropy):
        got = loss_and_grads(fn, hidden, shard, labels, tp_group=tp_group, **case)
        for name, a, b in zip(("loss", "grad_hidden", "grad_weight_shard"), got, expected):
            assert_close(a, b, torch.float32 if name == "loss" else dtype, f"rank {rank} {fn.__name__} {name}")
    # Sequence parallelism's variant: grad_hidden left as this rank's partial sum, reduced by the caller.
    loss, partial, gw = loss_and_grads(fused_linear_cross_entropy, hidden, shard, labels, tp_group=tp_group,
                                       reduce_grad_hidden=False, **case)
    assert not torch.equal(partial, expected[1].to(partial.dtype))
    summed = partial.float()
    dist.all_reduce(summed, group=tp_group)
    assert_close(summed, expected[1], dtype, f"rank {rank} partial grad_hidden, summed over TP")
    # Every label ignored (a context-parallel rank holding only prompt tokens): zeros, and no collective runs,
    # so a rank of the group may skip the call entirely without a hang.
    if rank == 0:
        ignored = torch.full_like(labels, -100)
        loss, gh, gw = loss_and_grads(fused_linear_cross_entropy, hidden, shard, ignored, tp_group=tp_group, **case)
        assert torch.isfinite(loss).all() and not loss.any() and not gh.any() and not gw.any()
    dist.barrier(group=tp_group)


def _check_megatron(rank, tp_group):
    """Same per-token loss and gradients as Megatron-core's vocab_parallel_cross_entropy on materialised logits."""
    from megatron.core.tensor_parallel import cross_entropy as mce

    # Megatron reads its TP group from global parallel state; point it at ours instead of initialising it all.
    mce.get_tensor_model_parallel_group = lambda: tp_group
    mce.get_tensor_model_parallel_rank = lambda: rank
    mce.get_tensor_model_parallel_world_size = lambda: TP

    S, B = 13, 3
    hidden, full_weight, labels = make_inputs(S * B, H, V_LOCAL * TP, torch.float32, "cpu", seed=5)
    hidden = hidden.detach().view(S, B, H).requires_grad_()
    labels = labels.view(S, B)
    shard = full_weight.detach()[rank * V_LOCAL:(rank + 1) * V_LOCAL].clone().requires_grad_()
    ours = loss_and_grads(fused_linear_cross_entropy, hidden, shard, labels, reduction="none", tp_group=tp_group)

    theirs = mce.vocab_parallel_cross_entropy(torch.nn.functional.linear(hidden, shard), labels)
    gh, gw = torch.autograd.grad(theirs, (hidden, shard), upstream_grad(theirs))
    dist.all_reduce(gh, group=tp_group)  # Megatron's copy_to_tensor_model_parallel_region does this
    for name, a, b in zip(("loss", "grad_hidden", "grad_weight_shard"), ours, (theirs.detach(), gh, gw)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"rank {rank} {name}: {m}")


def _worker(rank, port, against_megatron):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=TP)
    try:
        tp_group = dist.new_group(list(range(TP)))
        if against_megatron:
            _check_megatron(rank, tp_group)
        else:
            for case in CASES:
                _check_rank(rank, dict(case), tp_group)
    finally:
        dist.destroy_process_group()


def _spawn(against_megatron):
    if torch.cuda.is_available():
        pytest.skip("gloo/CPU TP test; on GPU machines the kernels are compiled for CUDA tensors")
    assert os.environ.get("TRITON_INTERPRET") == "1"
    mp.spawn(_worker, args=(_free_port(), against_megatron), nprocs=TP, join=True)


def test_tp2_matches_single_rank_reference():
    _spawn(against_megatron=False)


@pytest.mark.slow  # importing megatron.core costs ~10 s of CPU per rank
def test_tp2_matches_megatron_vocab_parallel_cross_entropy():
    _spawn(against_megatron=True)
