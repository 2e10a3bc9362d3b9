"""SIGUSR1 to a training rank: checkpoint at the end of the current step, exit with EXIT_PREEMPTED; the rerun
resumes from that checkpoint and the loss curve equals an uninterrupted run's, bit for bit."""
from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import train_helpers as h  # noqa: E402

os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.mark.slow
def test_sigusr1_checkpoints_exits_and_the_rerun_continues_the_same_loss_curve(tmp_path, monkeypatch):
    from megatron_ssd.models.convert import hf_to_megatron
    from megatron_ssd.training import entry
    from megatron_ssd.training.preemption import EXIT_PREEMPTED, STOP_REQUEST
    from megatron_ssd.training.trainer import Trainer

    hf = h.tiny_hf_model(tmp_path / "hf")
    hf_to_megatron(hf, tmp_path / "base", tp=1, dtype="float32")
    h.make_packed(tmp_path / "pack", fingerprint=h.fingerprint(hf))
    runs = {}
    for name in ("whole", "preempted"):
        run = tmp_path / name
        shutil.copytree(tmp_path / "pack", run / "pack")
        shutil.copytree(tmp_path / "base", run / "train" / "base")
        runs[name] = h.write_cfg(h.config(run, **{"train.save_interval": 100}))

    h.single_rank_env(monkeypatch)
    assert entry.main(["--config", str(runs["whole"])]) == 0
    whole = [(r["iteration"], r["loss"], r["grad_norm"], r["lr"]) for r in h.step_records(tmp_path / "whole")]

    original = Trainer.train_step

    def signalled_during_step_2(self, iteration):
        if iteration == 1:
            os.kill(os.getpid(), signal.SIGUSR1)  # arrives mid-step; honoured after the step
        return original(self, iteration)

    monkeypatch.setattr(Trainer, "train_step", signalled_during_step_2)
    h.single_rank_env(monkeypatch)
    assert entry.main(["--config", str(runs["preempted"])]) == EXIT_PREEMPTED
    run = tmp_path / "preempted"
    assert (run / "train" / "ckpt" / "latest").read_text().strip() == "iter_0000002"  # not a save_interval step
    assert "after iteration 2 of 4" in (run / "train" / "failure.json").read_text()
    assert [r["iteration"] for r in h.step_records(run)] == [1, 2]
    assert h.records(run)[-1]["kind"] == "preempted"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is gone with the trainer

    monkeypatch.setattr(Trainer, "train_step", original)
    h.single_rank_env(monkeypatch)
    (run / "train" / STOP_REQUEST).write_text("")  # the file channel, as slurm/ssd_pipeline.sh writes it
    assert entry.main(["--config", str(runs["preempted"])]) == EXIT_PREEMPTED
    assert (run / "train" / "ckpt" / "latest").read_text().strip() == "iter_0000003"
    assert not (run / "train" / STOP_REQUEST).exists()  # consumed

    h.single_rank_env(monkeypatch)
    assert entry.main(["--config", str(runs["preempted"])]) == 0
    resumed = [(r["iteration"], r["loss"], r["grad_norm"], r["lr"]) for r in h.step_records(run)]
    assert resumed == whole
