"""The non-default optimizer and checkpoint paths through the real launch path (torchrun, gloo on CPU):
`parallel.distributed_optimizer=false` at DP=2 (every rank holds the whole optimizer state, gradients are
all-reduced rather than reduce-scattered) with `train.async_save` (shards written by a background process,
`latest` moved in the finalisation), against the TP=1, single-rank, synchronous-save reference."""
from __future__ import annotations

import shutil

import pytest
import torch

import train_helpers as h
from megatron_ssd.models.checkpoint import write_latest
from test_multi_rank import STEPS, assert_same_curve, reference  # noqa: F401  (the TP=1 reference fixture)


def launch(run, nproc: int, **overrides) -> list[dict]:
    cfg = h.config(run, **{"parallel.nproc_per_node": nproc, "train.save_interval": 2, "train.train_iters": STEPS,
                           **overrides})
    proc = h.torchrun(h.write_cfg(cfg), nproc)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return h.step_records(run)


def model_tensors(ckpt, tmp_path) -> dict[str, torch.Tensor]:
    """The model's tensors of a torch_dist checkpoint, read in this process (no process group needed)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = tmp_path / f"{ckpt.parent.parent.parent.name}-{ckpt.name}.pt"
    dcp_to_torch_save(str(ckpt), str(out))
    state = torch.load(out, weights_only=False)
    return {k: v for k, v in state.items()
            if isinstance(v, torch.Tensor) and (k.startswith("decoder.") or k.startswith("embedding."))}


NO_DISTOPT_ASYNC = {"parallel.distributed_optimizer": False, "train.async_save": True}


def test_dp2_without_distributed_optimizer_with_async_save_follows_tp1_and_resumes(reference, assets, tmp_path):
    ref_run, want = reference
    ref_cfg = h.config(ref_run)
    assert ref_cfg.parallel.distributed_optimizer and not ref_cfg.train.async_save  # the reference's defaults
    run = tmp_path / "dp2"
    shutil.copytree(assets / "pack", run / "pack")
    shutil.copytree(assets / "base_tied", run / "train" / "base")
    got = launch(run, 2, **NO_DISTOPT_ASYNC)
    assert_same_curve(got, want)
    start = next(r for r in h.records(run) if r["kind"] == "start")
    assert start["parallel"]["data"] == 2
    events = [r for r in h.records(run) if r["kind"] == "checkpoint"]
    assert [e["iteration"] for e in events] == [2, 4] and all(e["async_save"] for e in events)
    ckpt = run / "train" / "ckpt"
    assert (ckpt / "latest").read_text().strip() == "iter_0000004"
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith(("iter", ".iter"))) == [
        "iter_0000002", "iter_0000004"]  # renamed once complete; no temporary directory left
    # The asynchronously written weights are those the synchronous single-rank run wrote.
    ours = model_tensors(ckpt / "iter_0000004", tmp_path)
    theirs = model_tensors(ref_run / "train" / "ckpt" / "iter_0000004", tmp_path)
    assert ours.keys() == theirs.keys() and ours
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)

    # Killed after the iteration-2 checkpoint: resumes (non-distributed optimizer state from the
    # fully_reshardable format) on the same curve.
    shutil.rmtree(ckpt / "iter_0000004")
    write_latest(ckpt, 2)
    resumed = launch(run, 2, **NO_DISTOPT_ASYNC)
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    assert_same_curve(resumed[2:], want[2:])


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_dp2_without_distributed_optimizer_over_nccl(reference, assets, tmp_path):
    """The same run on 2 GPUs (NCCL, bf16) against the single-rank fp32 curve."""
    import numpy as np

    _, want = reference
    run = tmp_path / "dp2"
    shutil.copytree(assets / "pack", run / "pack")
    shutil.copytree(assets / "base_tied", run / "train" / "base")
    got = launch(run, 2, **NO_DISTOPT_ASYNC, **{"train.precision": "bf16"})
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=2e-2)
    assert (run / "train" / "ckpt" / "latest").read_text().strip() == "iter_0000004"
