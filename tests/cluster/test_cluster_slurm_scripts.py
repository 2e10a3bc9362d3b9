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


def without_slurm_tools(tmp_path: Path, **extra) -> dict[str, str]:
    """An environment whose PATH has the venv and the basic tools but no Slurm command (bash, python, coreutils)."""
    bin_dir = tmp_path / "no-slurm-bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "env", "dirname", "nproc", "cat", "grep", "cut", "mkdir", "rm"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    env = env_with(**extra)
    env["PATH"] = VENV_BIN + os.pathsep + str(bin_dir)
    return env


def fake_scontrol(tmp_path: Path, script: str) -> str:
    """A folder whose `scontrol` runs `script` (bash), first on PATH."""
    bin_dir = tmp_path / "fake-scontrol"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\n" + script)
    (bin_dir / "scontrol").chmod(0o755)
    return str(bin_dir)


def test_dry_run_30b_under_fake_slurm_prints_the_torchrun_line_and_layout(tmp_path):
    # No Slurm tools on this machine: the node list is expanded all the same (launch.expand_nodelist).
    env = without_slurm_tools(tmp_path, DRY_RUN="1", SLURM_JOB_ID="4242", SLURM_JOB_NUM_NODES="4",
                              SLURM_JOB_NODELIST="gpu[001-004]", RUN_DIR=str(tmp_path / "run"))
    out = subprocess.run(["bash", "slurm/ssd_30b.sh", *UNDECLARED], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    stages = [line.split()[2] for line in lines if line.startswith("+ ssd ")]
    assert stages == ["prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"]
    sampler = next(line for line in lines if line.startswith("+ srun --ntasks"))
    assert "--ntasks=16" in sampler and "--gpus-per-task=2" in sampler  # 4 nodes x 8 GPUs / TP2 engines
    torchrun = next(line for line in lines if line.startswith("+ srun --nodes"))
    for part in ("--nodes=4", "--ntasks-per-node=1", "torch.distributed.run", "--nproc-per-node=8", "--nnodes=4",
                 "--rdzv-backend=c10d", "--rdzv-endpoint=gpu001:29742", "--rdzv-id=4242",  # 29500 + id % 1000
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
                                            "stopped-on-request", "scontrol requeue 77",
                                            "scontrol show job --oneliner 77"]  # nothing after train
    assert "USR1" in stderr and "requeueing job 77" in stderr


def test_dry_run_falls_back_to_its_own_expansion_when_scontrol_cannot_answer(tmp_path):
    """`scontrol` present but without a controller or slurm.conf to ask (a login node outside the cluster, a laptop
    with the client installed): the dry run still names the head node."""
    failing = fake_scontrol(tmp_path, 'echo "scontrol: fatal: Could not establish a configuration source" >&2\n'
                                      'exit 1\n')
    env = env_with(DRY_RUN="1", SLURM_JOB_ID="4243", SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="node[07-08]",
                   RUN_DIR=str(tmp_path / "run"))
    env["PATH"] = failing + os.pathsep + env["PATH"]
    out = subprocess.run(["bash", "slurm/ssd_4b.sh", *UNDECLARED], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--rdzv-endpoint=node07:29743" in out.stdout and "cannot expand" not in out.stderr


def test_dry_run_on_a_cpu_partition_asks_slurm_for_no_gpu(tmp_path):
    """GPUS_PER_NODE=0 (or an allocation from `sbatch --gpus-per-node=0`): the same chain and run directory, CPU
    ranks for torchrun, CPU sampling engines that split the node's CPUs."""
    overrides = ["experiment=cpu_default"]
    gpu = subprocess.run(["bash", "slurm/ssd_4b.sh", *overrides], cwd=REPO, capture_output=True, text=True,
                         env=env_with(DRY_RUN="1", GPUS_PER_NODE="1"))
    for env in (env_with(DRY_RUN="1", GPUS_PER_NODE="0"),
                env_with(DRY_RUN="1", SLURM_JOB_ID="9", SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="cpu01",
                         SLURM_GPUS_PER_NODE="0", SLURM_CPUS_ON_NODE="6", CPU_ENGINES_PER_NODE="3")):
        out = subprocess.run(["bash", "slurm/ssd_4b.sh", *overrides], cwd=REPO, env=env, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr
        assert "--gpus" not in out.stdout and "GPUs" not in out.stdout
        lines = out.stdout.splitlines()
        stages = [line.split()[2] for line in lines if line.startswith("+ ssd ")]
        assert stages == ["prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"]
        run_dir = out.stdout.split("# run directory: ")[1].split()[0]
        assert f"# run directory: {run_dir} " in gpu.stdout  # the run directory does not depend on the hardware
        sampler = next(line for line in lines if line.startswith("+ srun --ntasks"))
        torchrun = next(line for line in lines if line.startswith("+ srun --nodes"))
        assert "--nproc-per-node=1 " in torchrun and "parallel.nproc_per_node=1 " in out.stdout
        if "SLURM_JOB_ID" in env:
            assert "--ntasks=3 --cpus-per-task=2 " in sampler and "sample.num_engines=3" in sampler
            assert "3 CPU sampling engines" in out.stdout and "--rdzv-endpoint=cpu01:29509" in torchrun
        else:
            assert f"--ntasks=1 --cpus-per-task={os.cpu_count()} " in sampler


def test_a_gpu_count_that_is_not_a_number_is_one_paragraph():
    out = subprocess.run(["bash", "slurm/ssd_4b.sh"], cwd=REPO, capture_output=True, text=True,
                         env=env_with(DRY_RUN="1", GPUS_PER_NODE="eight"))
    assert out.returncode == 2 and "GPUS_PER_NODE=eight is not a number" in out.stderr and out.stdout == ""


@pytest.mark.parametrize("script", ["ssd_30b.sh", "ssd_4b.sh"])
def test_the_job_log_folder_exists(script):
    """Slurm does not create the --output folder: a job whose folder is missing fails at launch (JobLaunchFailure)
    and writes nothing, so the folder the #SBATCH line names ships with the repository."""
    line = next(x for x in (REPO / "slurm" / script).read_text().splitlines() if x.startswith("#SBATCH --output="))
    folder = REPO / Path(line.split("=", 1)[1]).parent
    assert folder.is_dir() and (folder / ".gitignore").is_file(), folder


HELD_SCONTROL = """echo "scontrol $*" >> "$LOG"
if [[ $1 == show ]]; then
  echo "JobId=77 JobName=ssd UserId=u(1) Priority=0 Nice=0 JobState=PENDING Reason=JobHeldUser Dependency=(null)"
fi
"""


def test_a_requeue_that_leaves_the_job_held_releases_it_and_says_so(tmp_path):
    """Should the requeue leave the job held (a cluster's RequeueExitHold, the MaxBatchRequeue limit, Priority=0),
    the script releases it instead of leaving it PENDING forever, and its log says what it did."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake-ssd").write_text("#!/usr/bin/env bash\necho \"$1\" >> \"$LOG\"\n"  # USR1 while diagnosing
                                      "if [[ $1 == diagnose ]]; then kill -USR1 \"$PPID\"; sleep 2; fi\n")
    (bin_dir / "srun").write_text("#!/usr/bin/env bash\necho srun >> \"$LOG\"\n")
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\n" + HELD_SCONTROL)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    run_dir, log = tmp_path / "run", tmp_path / "log"
    run_dir.mkdir()
    env = env_with(SSD="fake-ssd", LOG=str(log), RUN_DIR=str(run_dir), SLURM_JOB_ID="77", SLURM_JOB_NUM_NODES="1",
                   PYTHON=sys.executable)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    out = subprocess.run(["bash", "slurm/ssd_4b.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == ["prompts", "diagnose", "scontrol requeue 77",
                                            "scontrol show job --oneliner 77", "scontrol release 77"]
    assert "USR1 (the time limit or a preemption is near) during stage 'diagnose'" in out.stderr
    assert ("job 77 was requeued held (JobState=PENDING Reason=JobHeldUser Priority=0); released it" in
            " ".join(out.stderr.split()))


@pytest.mark.parametrize("restarts", ["0", "1"])
def test_a_requeued_job_keeps_the_run_directory_its_first_run_chose(restarts, tmp_path):
    """The run directory's name is a hash of the composed config: after a code or preset change while the job was
    requeued it would differ, and the job would start over. The first run records its choice; a requeued run
    (SLURM_RESTART_COUNT > 0) continues there and says so."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake-ssd").write_text("#!/usr/bin/env bash\nfor a in \"$@\"; do [[ $a == run_dir=* ]] && "
                                      "echo \"$1 $a\" >> \"$LOG\"; done; true\n")
    (bin_dir / "srun").write_text("#!/usr/bin/env bash\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    runs, log = tmp_path / "runs", tmp_path / "log"
    first = runs / "cpu_default-0123456789"  # what an older config hashed to
    runs.mkdir()
    (runs / ".slurm-job-78").write_text(f"{first}\n")
    env = env_with(SSD="fake-ssd", LOG=str(log), SLURM_JOB_ID="78", SLURM_JOB_NUM_NODES="1", GPUS_PER_NODE="0",
                   SLURM_RESTART_COUNT=restarts, EXP="cpu_default", PYTHON=sys.executable)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    out = subprocess.run(["bash", "slurm/ssd_4b.sh", f"runs_root={runs}"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    used = {line.split()[1] for line in log.read_text().splitlines()}
    assert len(used) == 1
    if restarts == "1":
        assert used == {f"run_dir={first}"}
        assert f"continues {first}, where its first run started" in " ".join(out.stderr.split())
    else:  # a first run records its own choice, whatever an earlier job of the same id left
        (chosen,) = used
        assert chosen != f"run_dir={first}" and chosen.startswith(f"run_dir={runs}/cpu_default-")
        assert (runs / ".slurm-job-78").read_text() == chosen.removeprefix("run_dir=") + "\n"
