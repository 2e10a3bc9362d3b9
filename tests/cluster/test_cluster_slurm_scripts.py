"""slurm/*.sh: syntax, shellcheck, the dry run under a fake Slurm allocation, the refusal outside one, and the
USR1 -> stop request -> requeue path with stand-ins for `ssd` and `scontrol` (no Slurm, no GPU)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# GPU presets refuse to start without a declared decision (config/decision.py); these tests check the layout only.
UNDECLARED = ["decision.required=false"]
SCRIPTS = sorted((REPO / "slurm").glob("*.sh"))
VENV_BIN = str(Path(sys.executable).parent)


def env_with(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = VENV_BIN + os.pathsep + env["PATH"]
    env.update(extra)
    return env


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
def test_shellcheck_clean():
    out = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("script", ["ssd_30b.sh", "ssd_4b.sh"])
def test_requeue_and_signal_flags(script):
    text = (REPO / "slurm" / script).read_text()
    assert "#SBATCH --requeue" in text
    assert "#SBATCH --signal=B:USR1@" in text
    assert "#SBATCH --open-mode=append" in text


def test_dry_run_30b_under_fake_slurm_prints_the_torchrun_line_and_layout(tmp_path):
    env = env_with(DRY_RUN="1", SLURM_JOB_ID="4242", SLURM_JOB_NUM_NODES="4", SLURM_JOB_NODELIST="gpu[001-004]",
                   RUN_DIR=str(tmp_path / "run"))
    env["PATH"] = VENV_BIN + os.pathsep + "/usr/bin:/bin"  # no scontrol: the rendezvous host is shown as a variable
    out = subprocess.run(["bash", "slurm/ssd_30b.sh", *UNDECLARED], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    stages = [line.split()[2] for line in lines if line.startswith("+ ssd ")]
    assert stages == ["prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"]
    sampler = next(line for line in lines if line.startswith("+ srun --ntasks"))
    assert "--ntasks=16" in sampler and "--gpus-per-task=2" in sampler  # 4 nodes x 8 GPUs / TP2 engines
    torchrun = next(line for line in lines if line.startswith("+ srun --nodes"))
    for part in ("--nodes=4", "--ntasks-per-node=1", "torch.distributed.run", "--nproc-per-node=8", "--nnodes=4",
                 "--rdzv-backend=c10d", "--rdzv-endpoint=$MASTER_ADDR:29500",
                 "--rdzv-conf=join_timeout=300,read_timeout=60", "megatron_ssd.training.entry",
                 str(tmp_path / "run" / "train" / "config.yaml")):
        assert part in torchrun, part
    text = out.stdout
    assert "TP=2 PP=1 CP=2 EP=8 DP=8 (expert-DP 2)" in text
    assert "world 32 = 4 nodes x 8" in text
    assert "node 3: ranks 24-31" in text
    assert "32 sequences of 65536 tokens per step" in text and "2500 iterations" in text
    assert not (tmp_path / "run").exists()  # a dry run creates nothing


def test_dry_run_outside_slurm_uses_nodes_and_picks_the_config_hash_run_dir():
    env = env_with(DRY_RUN="1", NODES="2")
    out = subprocess.run(["bash", "slurm/ssd_4b.sh", *UNDECLARED], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--nnodes=2" in out.stdout and "world 16 = 2 nodes x 8" in out.stdout
    run_dir = out.stdout.split("# run directory: ")[1].split()[0]
    assert run_dir.startswith("runs/ssd_qwen3_4b_instruct-")
    again = subprocess.run(["bash", "slurm/ssd_4b.sh", *UNDECLARED], cwd=REPO, env=env, capture_output=True, text=True)
    assert f"# run directory: {run_dir} " in again.stdout  # a second submission continues the same run


def test_outside_an_allocation_without_dry_run_is_one_paragraph():
    out = subprocess.run(["bash", "slurm/ssd_4b.sh"], cwd=REPO, env=env_with(), capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "SLURM_JOB_ID is not set" in out.stderr and "DRY_RUN=1" in out.stderr and "Nothing was started" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


FAKE_SSD = """#!/usr/bin/env bash
echo "$1" >> "$LOG"
if [[ $1 == train ]]; then
  run_dir=""; for a in "$@"; do [[ $a == run_dir=* ]] && run_dir=${a#run_dir=}; done
  touch "$run_dir/train_started"
  for _ in $(seq 300); do  # the ranks' side: stop when the request file appears
    if [[ -f $run_dir/train/stop.request ]]; then echo stopped-on-request >> "$LOG"; rm "$run_dir/train/stop.request"; exit 3; fi
    sleep 0.1
  done
  exit 0
fi
"""


def test_usr1_during_train_writes_the_stop_request_then_requeues(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake-ssd").write_text(FAKE_SSD)
    (bin_dir / "srun").write_text("#!/usr/bin/env bash\necho srun >> \"$LOG\"\n")
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\necho \"scontrol $*\" >> \"$LOG\"\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    run_dir, log = tmp_path / "run", tmp_path / "log"
    run_dir.mkdir()
    env = env_with(SSD="fake-ssd", LOG=str(log), RUN_DIR=str(run_dir), SLURM_JOB_ID="77", SLURM_JOB_NUM_NODES="1",
                   PYTHON=sys.executable)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.Popen(["bash", "slurm/ssd_4b.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if (run_dir / "train_started").exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"the train stage never started: {proc.communicate()}")
    proc.send_signal(signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert log.read_text().splitlines() == ["prompts", "diagnose", "srun", "sample", "pack", "train",
                                            "stopped-on-request", "scontrol requeue 77"]  # nothing after train
    assert "USR1" in stderr and "requeueing job 77" in stderr
