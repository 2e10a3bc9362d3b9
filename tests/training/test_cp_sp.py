"""Context and sequence parallelism, as far as a CPU allows, against the CP=1 / SP-off / TP=1 result.

What runs here (gloo): the packed-batch partition over CP ranks (`MicroBatchBuilder` THD path with
`cp_partition_index`), and - on 4 spawned ranks laid out TP=2 x CP=2 like the paper presets - the fused
linear-CE head with and without sequence parallelism (`training.loss.fused_linear_ce_losses`: the SP gather,
the kernel's TP reductions, the gather's reduce-scatter backward) followed by the loss and gradient reduction
the trainer does (`masked_loss`, `reduce_losses`, the DP x CP gradient sum of `finalize_model_grads`), on a
micro-batch whose documents put every supervised token in CP rank 0's chunks, so CP rank 1 holds none.

What cannot run here: attention under CP (Megatron's CP attention is Transformer Engine's; the local
DotProductAttention has no CP) and sequence parallelism inside the transformer layers (TE/Apex kernels), so a
whole TP2 x CP2 x SP training run is the `gpu`-marked test at the end, for a node with 4+ GPUs.
"""
from __future__ import annotations

import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from megatron_ssd.data.packed import position_ids
from megatron_ssd.training.batches import MicroBatchBuilder, cp_partition_index, pad_segments

import train_helpers as h

H, V = 24, 64
CP, TP = 2, 2


class Bins:
    """A dataset of hand-laid bins: documents of given lengths, each supervised on the positions given."""

    def __init__(self, seq_length: int, bins: list[list[tuple[int, list[int]]]], seed: int = 0):
        self.seq_length, self.items = seq_length, []
        rng = np.random.default_rng(seed)
        for docs in bins:
            lengths = [n for n, _ in docs]
            assert sum(lengths) == seq_length
            cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            mask = np.zeros(seq_length, np.float32)
            for start, (_, supervised) in zip(cu[:-1], docs):
                mask[start + np.asarray(supervised, dtype=np.int64)] = 1.0
            self.items.append({"tokens": rng.integers(0, V, seq_length), "labels": rng.integers(0, V, seq_length),
                               "loss_mask": mask, "position_ids": position_ids(cu), "cu_seqlens": cu})

    def __getitem__(self, i):
        return self.items[int(i)]


# Bin 0: three documents of 16 tokens supervised only at positions 12-14, i.e. in chunk 3 of 4 (CP rank 0's);
# CP rank 1 (chunks 1 and 2) holds no supervised token. Bin 1: uneven documents (padding inside segments and a
# loss-free tail segment), supervised here and there - both ranks hold some.
EMPTY_RANK = Bins(48, [[(16, [12, 13, 14])] * 3])
UNEVEN = Bins(48, [[(13, [2, 5, 9, 11]), (22, list(range(4, 21))), (9, [0, 8]), (4, [1])]], seed=1)


def original_positions(ds: Bins, b: int, builder: MicroBatchBuilder) -> np.ndarray:
    """For each position this rank holds: its position in the bin, -1 for padding."""
    cu = np.asarray(ds[b]["cu_seqlens"], dtype=np.int64)
    flat, _, cu_p = pad_segments({"orig": np.arange(ds.seq_length)}, cu, builder.segment_multiple,
                                 {"orig": -1}, builder.total_multiple)
    return flat["orig"][cp_partition_index(cu_p, builder.cp_size, builder.cp_rank).numpy()]


# --------------------------------------------------------------------------------------------- partition
@pytest.mark.parametrize("cp", [2, 4])
def test_cp_partition_gives_each_rank_chunks_r_and_2cp_minus_1_minus_r_of_every_document(cp):
    ds = UNEVEN
    cu = ds[0]["cu_seqlens"]
    parts = [MicroBatchBuilder(ds, thd=True, cp_size=cp, cp_rank=r)(np.array([0])) for r in range(cp)]
    builder = MicroBatchBuilder(ds, thd=True, cp_size=cp, cp_rank=0)
    _, _, cu_p = pad_segments({"x": np.zeros(ds.seq_length)}, cu, 2 * cp, {"x": 0}, builder.total_multiple)
    total = int(cu_p[-1])
    seen = []
    for r, mb in enumerate(parts):
        assert mb.tokens.shape == (1, total // cp) and mb.seq_length == total
        assert mb.packed_seq_params.qkv_format == "thd"
        assert mb.packed_seq_params.cu_seqlens_q_padded.tolist() == cu_p.tolist()  # global, as TE's CP wants
        # Independently of cp_partition_index: the padded segments, cut in 2*cp chunks, r-th and mirrored.
        want = []
        for start, end in zip(cu_p[:-1], cu_p[1:]):
            c = (end - start) // (2 * cp)
            want += list(range(start + r * c, start + (r + 1) * c)) + list(range(end - (r + 1) * c, end - r * c))
        assert cp_partition_index(cu_p, cp, r).tolist() == want
        orig = original_positions(ds, 0, MicroBatchBuilder(ds, thd=True, cp_size=cp, cp_rank=r))
        real = orig >= 0
        for key in ("tokens", "labels", "loss_mask", "position_ids"):
            full = torch.as_tensor(np.asarray(ds[0][key]))
            assert torch.equal(getattr(mb, key)[0][torch.from_numpy(real)], full[orig[real]]), key
        assert not mb.loss_mask[0][torch.from_numpy(~real)].any()  # padding carries no loss
        seen += orig[real].tolist()
    assert sorted(seen) == list(range(ds.seq_length))  # every position on exactly one rank
    assert sum(mb.num_loss_tokens for mb in parts) == int(ds[0]["loss_mask"].sum())


def test_a_cp_rank_can_hold_no_supervised_token():
    counts = [MicroBatchBuilder(EMPTY_RANK, thd=True, cp_size=CP, cp_rank=r)(np.array([0])).num_loss_tokens
              for r in range(CP)]
    assert counts == [9, 0]


@pytest.mark.gpu
def test_cp_partition_matches_transformer_engine():
    tex = pytest.importorskip("transformer_engine_torch")
    cu_p = torch.tensor([0, 16, 40, 52, 56], dtype=torch.int32, device="cuda")
    for cp in (2,):
        for r in range(cp):
            theirs = tex.thd_get_partitioned_indices(cu_p, 56, cp, r).cpu().tolist()
            assert cp_partition_index(cu_p.cpu().numpy(), cp, r).tolist() == theirs


# --------------------------------------------------------------------------------------------- TP2 x CP2
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference(ds: Bins, emb: torch.Tensor, weight: torch.Tensor):
    """CP=1, TP=1, SP off: the global per-token loss of the bin and its gradients (hidden [S, H], weight)."""
    from megatron_ssd.kernels import reference_linear_cross_entropy

    item = ds[0]
    hidden = emb[torch.as_tensor(item["tokens"])].clone().requires_grad_()
    w = weight.clone().requires_grad_()
    mask = torch.as_tensor(item["loss_mask"]) > 0
    labels = torch.as_tensor(item["labels"]).masked_fill(~mask, -100)
    loss = reference_linear_cross_entropy(hidden, w, labels, reduction="sum") / mask.sum()
    loss.backward()
    return loss.detach(), int(mask.sum()), hidden.grad, w.grad


def _check_layout(ds: Bins, sequence_parallel: bool, device) -> None:
    from megatron.core import parallel_state as ps

    from megatron_ssd.training.loss import fused_linear_ce_losses, masked_loss, micro_batch_losses, reduce_losses

    tp_rank, cp_rank = ps.get_tensor_model_parallel_rank(), ps.get_context_parallel_rank()
    gen = torch.Generator().manual_seed(7)
    emb, weight = torch.randn(V, H, generator=gen), torch.randn(V, H, generator=gen) * H ** -0.5 * 3
    want_loss, want_tokens, want_gh, want_gw = _reference(ds, emb, weight)

    builder = MicroBatchBuilder(ds, thd=True, cp_size=CP, cp_rank=cp_rank,
                                sequence_parallel_size=TP if sequence_parallel else 1, device=device)
    mb = builder(np.array([0]))
    orig = original_positions(ds, 0, builder)
    hidden = emb.to(device)[mb.tokens[0]].unsqueeze(1)  # [s, b=1, H]: the "decoder output" of this CP rank
    if sequence_parallel:  # Megatron's SP layout: TP rank t holds the t-th slice of the sequence
        s = hidden.shape[0] // TP
        hidden, orig = hidden[tp_rank * s:(tp_rank + 1) * s], orig[tp_rank * s:(tp_rank + 1) * s]
    hidden = hidden.detach().requires_grad_()
    v = V // TP
    shard = weight[tp_rank * v:(tp_rank + 1) * v].to(device).requires_grad_()

    per_token = fused_linear_ce_losses(hidden, shard, mb.labels, mb.loss_mask,
                                       tp_group=ps.get_tensor_model_parallel_group(),
                                       sequence_parallel=sequence_parallel)
    loss_sum, num_tokens, report = masked_loss(mb.loss_mask, per_token)
    loss_sum.backward()
    assert torch.isfinite(per_token).all() and torch.isfinite(hidden.grad).all() and torch.isfinite(shard.grad).all()
    if num_tokens == 0:  # the empty CP rank: nothing to learn from, nothing NaN
        assert float(loss_sum) == 0 and not hidden.grad.any() and not shard.grad.any()

    loss, tokens = reduce_losses(micro_batch_losses([report]), is_last_stage=True)
    assert tokens == want_tokens
    assert loss == pytest.approx(float(want_loss), rel=1e-5)
    # finalize_model_grads: sum over DP x CP, divide by the global token count.
    gw = shard.grad.clone()
    dist.all_reduce(gw, group=ps.get_data_parallel_group(with_context_parallel=True))
    torch.testing.assert_close(gw.cpu() / tokens, want_gw[tp_rank * v:(tp_rank + 1) * v], rtol=1e-4, atol=1e-6)
    gh = hidden.grad[:, 0].cpu() / tokens
    real = torch.from_numpy(orig >= 0)
    torch.testing.assert_close(gh[real], want_gh[orig[orig >= 0]], rtol=1e-4, atol=1e-6)
    assert not gh[~real].any()


def _worker(rank: int, port: int, world: int) -> None:
    from megatron.core import parallel_state as ps

    from megatron_ssd.models.cpu_compat import apply_cpu_compat

    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(rank)
    apply_cpu_compat()
    dist.init_process_group("nccl" if on_gpu else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        ps.initialize_model_parallel(tensor_model_parallel_size=TP, context_parallel_size=CP)
        device = torch.device("cuda", rank) if on_gpu else torch.device("cpu")
        for ds in (EMPTY_RANK, UNEVEN):
            for sp in (False, True):
                _check_layout(ds, sp, device)
    finally:
        ps.destroy_model_parallel()
        dist.destroy_process_group()


def test_tp2_cp2_fused_head_with_and_without_sp_reduces_to_the_single_rank_loss_and_grads():
    if torch.cuda.is_available():
        pytest.skip("the gloo variant; see the gpu test below")
    assert os.environ.get("TRITON_INTERPRET") == "1"
    mp.spawn(_worker, args=(_free_port(), TP * CP), nprocs=TP * CP, join=True)


NEEDS_4_GPUS = pytest.mark.skipif(torch.cuda.device_count() < TP * CP, reason=f"needs {TP * CP} GPUs")


@pytest.mark.gpu
@NEEDS_4_GPUS
def test_tp2_cp2_fused_head_over_nccl():
    mp.spawn(_worker, args=(_free_port(), TP * CP), nprocs=TP * CP, join=True)


# --------------------------------------------------------------------------------------------- whole runs
@pytest.mark.gpu
@NEEDS_4_GPUS
@pytest.mark.parametrize("loss_impl", ["megatron", "fused_linear_ce"])
def test_tp2_cp2_sp_training_follows_the_tp1_curve(assets, tmp_path, loss_impl):
    """The paper preset's layout (TP2 x CP2, SP, async save) on 4 GPUs reproduces TP=1 on one GPU (bf16)."""
    pytest.importorskip("transformer_engine")
    curves = {}
    for name, nproc, extra in (("tp1", 1, {}), ("tp2cp2sp", TP * CP, {
            "parallel.tensor": TP, "parallel.context": CP, "parallel.sequence_parallel": True,
            "train.async_save": True})):
        run = tmp_path / name
        shutil.copytree(assets / "pack", run / "pack")
        shutil.copytree(assets / "base_tied", run / "train" / "base")
        cfg = h.config(run, **{"parallel.nproc_per_node": nproc, "train.precision": "bf16",
                               "train.loss_impl": loss_impl, "train.save_interval": 2, **extra})
        proc = h.torchrun(h.write_cfg(cfg), nproc)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        curves[name] = h.step_records(run)
    got, want = curves["tp2cp2sp"], curves["tp1"]
    assert [r["loss_tokens"] for r in got] == [r["loss_tokens"] for r in want]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=2e-2)
    assert (tmp_path / "tp2cp2sp" / "train" / "ckpt" / "latest").read_text().strip() == "iter_0000004"
