"""The train stage: config for the ranks, base-model conversion, the torchrun/srun command, dry runs, failures
reported from the ranks, and a finished run that is not trained again."""
from __future__ import annotations

import io
import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

import train_helpers as h
from megatron_ssd.errors import SSDError
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import train as train_stage
from megatron_ssd.training.launch import torchrun_command
from megatron_ssd.rundir import read_config
from megatron_ssd.training.paths import TrainPaths


def stage_cfg(run: Path, hf: Path, **overrides):
    cfg = h.config(run, **overrides)
    cfg.model = replace(cfg.model, source="hf", path=str(hf), dtype="float32")
    return cfg


def ctx_for(run: Path) -> tuple[StageContext, io.StringIO]:
    out = io.StringIO()
    return StageContext(run=RunDir(run), console=Console(file=out, width=200)), out


def test_dry_run_prints_the_command_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    cfg = stage_cfg(run, tmp_path / "hf", **{"cluster.dry_run": True, "parallel.nproc_per_node": 2})
    ctx, out = ctx_for(run)
    summary = train_stage.run(cfg, ctx)
    assert summary["incomplete"] and summary["dry_run"]
    cmd = summary["command"]
    assert "-m torch.distributed.run --nproc-per-node=2 --nnodes=1 --standalone" in cmd
    assert f"-m megatron_ssd.training.entry --config {run.resolve()}/train/config.yaml" in cmd
    assert cmd in out.getvalue().replace("\n", "")
    assert not (run / "train" / "base").exists()  # nothing converted, nothing launched
    assert read_config(run / "train" / "config.yaml").run_dir == str(run.resolve())


def test_slurm_command_takes_the_rendezvous_from_the_allocation(tmp_path, monkeypatch):
    cfg = h.config(tmp_path, **{"cluster.launcher": "slurm", "parallel.nnodes": 2, "parallel.nproc_per_node": 8})
    with pytest.raises(SSDError, match="inside a Slurm allocation"):
        torchrun_command(cfg, "c.yaml", env={})
    # a stand-in for `scontrol show hostnames`
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text("#!/bin/sh\necho gpu-node-07\necho gpu-node-08\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    env = {"SLURM_JOB_NODELIST": "gpu-node-[07-08]", "SLURM_JOB_ID": "4242", "MASTER_PORT": "29511"}
    cmd = torchrun_command(cfg, "c.yaml", env=env, python="python")
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--rdzv-endpoint=gpu-node-07:29511" in cmd and "--rdzv-id=4242" in cmd
    assert "--nproc-per-node=8" in cmd and "--nnodes=2" in cmd and "--rdzv-backend=c10d" in cmd
    dry = torchrun_command(replace(cfg, cluster=replace(cfg.cluster, dry_run=True)), "c.yaml", env={})
    assert "--rdzv-endpoint=$MASTER_ADDR:29500" in dry


def test_a_failing_rank_becomes_a_clear_stage_error(assets, tmp_path, monkeypatch):
    """The ranks' failure.json (written by rank 0, see test_single_rank's NaN test) reaches the user."""
    import megatron_ssd.training.launch as launch

    run = tmp_path / "run"
    shutil.copytree(assets / "pack", run / "pack")
    shutil.copytree(assets / "base_tied", run / "train" / "base")
    cfg = stage_cfg(run, assets / "hf_tied")

    def failing_ranks(cmd, env, log_path, out=None):
        Path(log_path).write_text("rank output\n")
        (run / "train" / "failure.json").write_text(json.dumps(
            {"kind": "NonFiniteLoss", "user_error": True, "message": "Training stopped at iteration 7 of 9: ..."}))
        return 3

    monkeypatch.setattr(launch, "run_streaming", failing_ranks)
    ctx, _ = ctx_for(run)
    with pytest.raises(SSDError, match=r"training stopped: Training stopped at iteration 7 of 9(.|\n)*launcher.log"):
        train_stage.run(cfg, ctx)

    def crashing_ranks(cmd, env, log_path, out=None):
        (run / "train" / "failure.json").unlink(missing_ok=True)
        return 1

    monkeypatch.setattr(launch, "run_streaming", crashing_ranks)
    with pytest.raises(SSDError, match="the training ranks failed .exit status 1.; the traceback is in"):
        train_stage.run(cfg, ctx)


def test_packed_data_from_another_tokenizer_is_refused(assets, tmp_path):
    run = tmp_path / "run"
    h.make_packed(run / "pack", fingerprint="another-tokenizer")
    shutil.copytree(assets / "base_tied", run / "train" / "base")
    ctx, _ = ctx_for(run)
    with pytest.raises(SSDError, match="tokenizer fingerprint"):
        train_stage.run(stage_cfg(run, assets / "hf_tied"), ctx)


def test_train_stage_end_to_end_then_done(assets, tmp_path):
    """Converts the base model itself, launches torchrun, returns the summary; a second call trains nothing."""
    run = tmp_path / "run"
    shutil.copytree(assets / "pack", run / "pack")
    cfg = stage_cfg(run, assets / "hf_tied", **{"train.train_iters": 2, "train.save_interval": 1,
                                                 "cluster.wandb_mode": "offline"})  # the default mode
    ctx, out = ctx_for(run)
    summary = train_stage.run(cfg, ctx)
    paths = TrainPaths(run.resolve())
    assert (paths.base / "latest").read_text().strip() == "iter_0000000"
    assert summary["iterations"] == 2 and summary["iterations_this_run"] == 2
    assert summary["tokens"] == 2 * 8 * h.SEQ and summary["tokens_per_s"] > 0
    assert summary["final_loss"] == h.step_records(run)[-1]["loss"]
    assert summary["checkpoint"] == str(paths.ckpt / "iter_0000002")
    assert (paths.ckpt / "latest").read_text().strip() == "iter_0000002"
    assert "iter 2:" in paths.log.read_text()  # the ranks' output was streamed into the log
    records = h.records(run)
    assert [r["kind"] for r in records] == ["start", "step", "checkpoint", "step", "checkpoint"]
    assert all(r["mfu"] > 0 and r["tokens_per_s"] > 0 for r in records if r["kind"] == "step")
    assert len(list((run / "wandb").glob("offline-run-*-run-train"))) == 1  # wandb logged offline (docs/WANDB.md)

    log_size = paths.log.stat().st_size
    again = train_stage.run(cfg, ctx)
    assert again == summary
    assert paths.log.stat().st_size == log_size  # nothing launched
    assert "nothing to train" in out.getvalue()
