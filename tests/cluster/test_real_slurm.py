"""The cluster path on a real one-node Slurm (tests/cluster/slurm_cluster.py), as a user drives it:

1. `EXP=cpu_default sbatch --gpus-per-node=0 slurm/ssd_4b.sh <overrides>` on the CPU partition; while it trains,
   `scancel --signal=USR1 --batch` (what Slurm sends before the time limit with --signal=B:USR1@<secs>): the ranks
   checkpoint and exit 75, the job requeues itself (not held), resumes and ends COMPLETED with its report;
2. `ssd run -m cluster=slurm_cpu sample.temperature=1.1,1.5` through submitit into the same Slurm (a point per
   node, so here one after the other), then `ssd sweep-summary` on it;
3. the preempted run directory against the sweep's T=1.1 point, the same config run without interruption by
   another path (submitit, one `ssd run` process): equal where the run is deterministic on CPU, nothing duplicated
   or lost, and the base evaluation computed once for the three runs;
and, cheaply, a job whose stage fails ends FAILED, and `scontrol requeue` by hand runs it again: not held.

The chain is the embedded default scaled down (CHAIN); the three runs share the base evaluation cache (the sbatch
run's `runs_root/.base_eval_cache` is a link to the sweep's) and the session's base-model conversion cache.
Set SSD_REQUIRE_SLURM=1 (.ci/run does) to fail instead of skipping where Slurm or munge is missing.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from megatron_ssd.rundir import RunDir

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import DEBIAN_PACKAGES, PARTITION, SlurmCluster, missing_binaries  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SSD = str(VENV_BIN / "ssd")
T_TRAIN = 1.1
# cpu_default scaled down to what the checks need: 4 training prompts (their ~150-240-token samples pack into 4 bins
# of 256 tokens, 2 per step), 2 steps (the preemption lands after step 1), 4 eval problems with one sample each;
# no locks-and-forks probe (tests/integration/test_pipeline.py covers it).
CHAIN = ["data.max_train_prompts=4", "data.max_eval_problems=4", "sample.max_tokens=32", "eval.max_tokens=32",
         "eval.n=1", "eval.k=[1]", "eval.selection_diagnostic=false", "eval.temperature_sweep=[]",
         "train.seq_length=256", "train.train_iters=2", "train.global_batch_size=2", "sample.enforce_eager=true",
         "cluster.wandb_mode=offline", "eval.mechanism.enabled=false"]
STAGES = ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report")
JOB_TIMEOUT_S = 900
# Reasons a PENDING job shows while it is held rather than waiting for its begin time or resources.
HELD_REASONS = {"JobHeldUser", "JobHeldAdmin", "NonZeroExitCode", "launch_failed_requeued_held",
                "job_requeued_in_held_state"}


@pytest.fixture(scope="module")
def slurm():
    missing = missing_binaries()
    why = None
    if missing:
        why = f"Slurm/munge not installed (missing {', '.join(missing)}): apt-get install -y {DEBIAN_PACKAGES}"
    elif os.geteuid() != 0:
        why = "slurmd and munged are started as root here, and this process is not root"
    if why:
        if os.environ.get("SSD_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    cluster = SlurmCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert cluster.alive() == [], "a Slurm daemon started by the test survived its stop"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """(sbatch's runs_root, the sweep's runs_root, scratch): one shared base evaluation cache."""
    tmp = tmp_path_factory.mktemp("real_slurm")
    sbatch_root, sweep_root = tmp / "runs_sbatch", tmp / "tgrid"
    (sweep_root / ".base_eval_cache").mkdir(parents=True)
    sbatch_root.mkdir()
    (sbatch_root / ".base_eval_cache").symlink_to(sweep_root / ".base_eval_cache")
    return sbatch_root, sweep_root, tmp


def job_env(cluster: SlurmCluster, **extra) -> dict[str, str]:
    """What the submitting shell exports (sbatch passes it on): the venv's `ssd` first on PATH."""
    return {**cluster.env, "PATH": f"{VENV_BIN}{os.pathsep}{cluster.env['PATH']}", "COLUMNS": "200",
            "WANDB_MODE": "offline", **extra}


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(what)


def read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def train_started(run: Path) -> bool:
    """Rank 0 has begun training: its `start` event is in train/metrics.jsonl (the first step takes seconds)."""
    return '"kind": "start"' in read_text(run / "train" / "metrics.jsonl")


def test_a_failed_job_requeued_by_hand_is_not_held(slurm, roots):
    """A stage that fails ends the job FAILED (Reason=NonZeroExitCode) with a line saying how to continue;
    `scontrol requeue` then makes it eligible again, not held, and it runs a second time (here it fails again: the
    stand-in `ssd` is `false`)."""
    _, _, tmp = roots
    out = slurm.run("sbatch", "--parsable", "--gpus-per-node=0", f"--output={tmp}/failing-%j.out", "slurm/ssd_4b.sh",
                    f"runs_root={tmp / 'runs_failing'}", cwd=REPO,
                    env=job_env(slurm, EXP="cpu_default", SSD="false", PYTHON=sys.executable))
    job_id = out.stdout.strip().split(";")[0]
    first = slurm.wait(job_id, 120, poll_s=0.2)
    assert (first["JobState"], first["Reason"], first["ExitCode"]) == ("FAILED", "NonZeroExitCode", "1:0"), first
    slurm.run("scontrol", "requeue", job_id)
    seen: list = []
    second = slurm.wait(job_id, 120, poll_s=0.2, seen=seen)
    assert second["JobState"] == "FAILED" and second["Restarts"] == "1", second
    assert all(priority != "0" for state, _, priority in seen if state == "PENDING"), seen
    log = read_text(tmp / f"failing-{job_id}.out")
    assert log.count("ssd_pipeline: stage 'prompts' ended with exit status 1; the job ends FAILED and is not "
                     "requeued.") == 2, log
    assert f"scontrol requeue {job_id}" in log


@dataclass
class PreemptedJob:
    job_id: str
    run: Path
    log: str
    final: dict
    states: list
    completions: list
    signalled_after_s: float
    seconds: float


@pytest.fixture(scope="module")
def preempted_job(slurm, roots) -> PreemptedJob:
    sbatch_root, _, tmp = roots
    start = time.monotonic()
    out = slurm.run("sbatch", "--parsable", "--gpus-per-node=0", f"--partition={PARTITION}",
                    f"--output={tmp}/%x-%j.out", "slurm/ssd_4b.sh", f"runs_root={sbatch_root}",
                    f"sample.temperature={T_TRAIN}", *CHAIN, cwd=REPO, env=job_env(slurm, EXP="cpu_default"))
    job_id = out.stdout.strip().split(";")[0]
    log_path = tmp / f"ssd-qwen3-4b-{job_id}.out"

    def run_dir() -> Path | None:
        for line in read_text(log_path).splitlines():
            if line.startswith("# run directory: "):
                return Path(line.split()[3])
        return None

    def training_or_ended():
        if slurm.job(job_id).get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING"):
            return "ended"
        run = run_dir()
        return "training" if run is not None and train_started(run) else None

    try:
        where = wait_for(training_or_ended, JOB_TIMEOUT_S, f"job {job_id} never started training")
        assert where == "training", f"job {job_id} ended before training: {slurm.job(job_id)}\n{read_text(log_path)}"
        signalled_after = time.monotonic() - start
        slurm.run("scancel", "--signal=USR1", "--batch", job_id)
        states: list = []
        final = slurm.wait(job_id, JOB_TIMEOUT_S, seen=states)
    except BaseException:
        print(read_text(log_path)[-8000:], slurm.logs(), sep="\n")
        raise
    return PreemptedJob(job_id=job_id, run=run_dir(), log=read_text(log_path), final=final, states=states,
                        completions=slurm.completions(job_id), signalled_after_s=signalled_after,
                        seconds=time.monotonic() - start)


@dataclass
class Sweep:
    root: Path
    points: dict  # T_train -> run directory
    result: subprocess.CompletedProcess
    summary: subprocess.CompletedProcess
    submitit: Path
    seconds: float


@pytest.fixture(scope="module")
def sweep(slurm, roots, preempted_job) -> Sweep:
    """After the sbatch run, so that its base evaluation is the one the points reuse."""
    _, sweep_root, tmp = roots
    hydra_dir = tmp / "multirun"
    start = time.monotonic()
    # cluster=slurm_cpu as a user submits it: each point takes a node (exclusive), so on this one node the two
    # points of the job array run one after the other. (Side by side, two vLLM engines starting at once on one
    # machine failed once here: one engine's startup-time scratch files (generation/engine.py, scratch_files()
    # before/after) include the other's, and removing them broke its worker's spawn: SemLock FileNotFoundError.)
    argv = [SSD, "run", "-m", "cluster=slurm_cpu", f"hydra.launcher.partition={PARTITION}",
            f"runs_root={sweep_root}", f"hydra.sweep.dir={hydra_dir}", *CHAIN, f"sample.temperature={T_TRAIN},1.5"]
    out, err = tmp / "sweep.stdout", tmp / "sweep.stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(argv, cwd=tmp, env=job_env(slurm), stdout=stdout, stderr=stderr)
        # Without slurmdbd submitit cannot see a point's job fail (sacct answers nothing) and would wait for its
        # result forever: a point job that ends other than COMPLETED stops the sweep here, with the logs.
        deadline, failed_at = time.monotonic() + 2 * JOB_TIMEOUT_S, None
        while proc.poll() is None and time.monotonic() < deadline:
            ended = [r for r in slurm.completions() if r.get("Name") == "ssd-cpu_default"]
            if failed_at is None and any(r["JobState"] != "COMPLETED" for r in ended):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > 30:
                break
            time.sleep(1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.CompletedProcess(argv, proc.returncode, read_text(out), read_text(err))
    if result.returncode != 0:
        logs = "\n".join(f"--- {p}\n{read_text(p)[-3000:]}" for p in sorted((hydra_dir / ".submitit").rglob("*_log.*")))
        pytest.fail(f"ssd run -m failed ({result.returncode}; point jobs "
                    f"{[(r['JobId'], r['JobState']) for r in slurm.completions()]}):\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-5000:]}\n{logs}\n{slurm.logs()}")
    summary = subprocess.run([SSD, "sweep-summary", str(sweep_root)], cwd=tmp, env=job_env(slurm),
                             capture_output=True, text=True, timeout=300)
    points = {RunDir(d).config().sample.temperature: d for d in sweep_root.iterdir() if (d / "manifest.json").is_file()}
    return Sweep(root=sweep_root, points=points, result=result, summary=summary, submitit=hydra_dir / ".submitit",
                 seconds=time.monotonic() - start)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_sbatch_on_the_cpu_partition_preempts_requeues_resumes_and_completes(preempted_job):
    job, run = preempted_job, preempted_job.run
    print(f"sbatch chain with one preemption: {job.seconds:.1f} s (USR1 after {job.signalled_after_s:.1f} s)")
    assert job.final["JobState"] == "COMPLETED" and job.final["ExitCode"] == "0:0", job.final
    assert job.final["Restarts"] == "1"  # requeued exactly once, by the script itself
    # The completion log: the first run ended in the requeue (its record is written as the job turns PENDING), the
    # second run COMPLETED. sacct is not available without slurmdbd.
    assert [r["JobState"] for r in job.completions] == ["PENDING", "COMPLETED"], job.completions
    # Requeued, waiting for its begin time, never held.
    pending = [s for s in job.states if s[0] == "PENDING"]
    assert pending and all(reason not in HELD_REASONS and priority != "0" for _, reason, priority in pending), \
        job.states
    log = job.log
    assert "USR1 (the time limit or a preemption is near) during stage 'train'" in log
    assert f"requeueing job {job.job_id}; it resumes from {run}" in log
    # (checked at once: the job is still COMPLETING its first run, or already PENDING)
    assert f"job {job.job_id} is requeued (JobState=" in log and "not held" in log
    # The same run directory in both runs of the job, under the sbatch runs_root, named by the config hash.
    assert log.count(f"# run directory: {run}  (nodes 1 x 1 CPU ranks, no GPU, 1 CPU sampling engines)") == 2
    # The first run recorded it for the requeued runs (which would keep it should the config's hash change).
    assert (run.parent / f".slurm-job-{job.job_id}").read_text() == f"{run}\n"
    assert "--gpus" not in log  # nothing GPU-specific asked of Slurm
    # The ranks stopped after step 1 with the documented status, and the requeued job resumed from that checkpoint.
    assert "exitcode  : 75" in read_text(run / "train" / "launcher.log")
    kinds = [(e["kind"], e.get("iteration")) for e in events(run)]
    assert ("preempted", 1) in kinds and ("resume", 1) in kinds, kinds
    assert [i for k, i in kinds if k == "step"] == [1, 2]  # nothing trained twice, nothing skipped
    assert not (run / "train" / "stop.request").exists()  # consumed by the ranks
    for stage in STAGES:
        assert (run / stage / ".done").is_file(), stage
    assert (run / "report" / "report.md").is_file()


def test_a_submitit_sweep_runs_on_slurm_and_sweep_summary_reads_it(slurm, sweep):
    print(f"two-point sweep through submitit: {sweep.seconds:.1f} s")
    assert sorted(sweep.points) == [T_TRAIN, 1.5]
    for point in sweep.points.values():
        for stage in STAGES:
            assert (point / stage / ".done").is_file(), (point, stage)
    # One Slurm job per point (a job array of two tasks), each COMPLETED once: the completion log, where the jobs
    # carry the launcher's name ssd-<experiment>.
    assert len(list(sweep.submitit.glob("*_[01]/*_submitted.pkl"))) == 2
    # (a point's result reaches submitit before its job has ended: the record may take a moment)
    def point_jobs():
        records = [r for r in slurm.completions() if r["Name"] == "ssd-cpu_default"]
        return records if len(records) == 2 else None

    records = wait_for(point_jobs, 60, "two point jobs in the completion log")
    assert [r["JobState"] for r in records] == ["COMPLETED", "COMPLETED"], records
    # The train stage of each point ran `srun ... torchrun` inside the point's Slurm job (the command heads the
    # stage log), each on a rendezvous port of its own (an array task has a job id of its own: points that share a
    # node do not collide).
    train_lines = [next(x for x in read_text(p / "logs" / "train.log").splitlines() if x.startswith("srun "))
                   for p in sweep.points.values()]
    assert all(x.startswith("srun --nodes=1 --ntasks-per-node=1 --kill-on-bad-exit=1 --overlap") for x in train_lines)
    endpoints = {x.split("--rdzv-endpoint=")[1].split()[0] for x in train_lines}
    assert len(endpoints) == 2, train_lines
    assert sweep.summary.returncode == 0, sweep.summary.stdout + sweep.summary.stderr
    summary = json.loads((sweep.root / "sweep_summary.json").read_text())
    assert summary["points"] == 2 and len(summary["cells"]) == 2 and not summary["missing"]
    assert {c["t_train"] for c in summary["cells"]} == {T_TRAIN, 1.5}


def shard_rows(folder: Path) -> dict[tuple, dict]:
    """Every row of a folder's sample shards by (prompt_id, sample_idx); a key seen twice is an error."""
    out: dict[tuple, dict] = {}
    for path in sorted(folder.glob("shard_*.parquet")):
        for row in pq.read_table(path).to_pylist():
            key = (row["prompt_id"], row["sample_idx"])
            assert key not in out, f"{key} twice in {folder}"
            out[key] = row
    return out


# vLLM's CPU engine reproduces every sampled token across processes, but not the last bits of a summed fp32
# log-probability: the same sample's cumulative_logprob differed in the 9th significant digit between the sbatch
# run's `ssd evaluate` and the sweep point's in-process evaluate (-21.062062941622 vs -21.062062733006).
FLOAT_COLUMNS_RTOL = {"cumulative_logprob": 1e-6}


def differing(a: dict[tuple, dict], b: dict[tuple, dict]) -> list[tuple]:
    """(key, column) of every cell that differs, keys present on one side only included; the columns of
    FLOAT_COLUMNS_RTOL within their relative tolerance."""
    def same(column, x, y) -> bool:
        if column in FLOAT_COLUMNS_RTOL and isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=FLOAT_COLUMNS_RTOL[column])
        return x == y

    cells = [(k, "<row>") for k in sorted(set(a) ^ set(b))]
    return cells + [(k, c) for k in sorted(set(a) & set(b)) for c in sorted(set(a[k]) | set(b[k]))
                    if not same(c, a[k].get(c), b[k].get(c))]


def step_curve(run: Path) -> list[tuple]:
    return [(e["iteration"], e["loss"], e["grad_norm"], e["lr"]) for e in events(run) if e["kind"] == "step"]


def verdicts(eval_dir: Path) -> list[tuple]:
    """The sandbox's verdict on each sample, without its wall time."""
    lines = (eval_dir / "results.jsonl").read_text().splitlines()
    return sorted((r["prompt_id"], r["sample_idx"], r["passed"], r["outcome"], r["text"])
                  for r in map(json.loads, lines))


def exported_weights(run: Path) -> dict[str, str]:
    files = (run / "export" / "hf").glob("iter_*/*.safetensors")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_preempted_run_equals_an_uninterrupted_one(preempted_job, sweep):
    """Deterministic on CPU, and compared exactly: prompts, the sample shards (vLLM's CPU engine with per-sample
    seeds, the same batches), the packed bins, the loss curve (loss, grad norm, lr per step; a resume restores the
    data order and RNG), the exported weights, the SSD model's eval samples (every token), verdicts and pass@k.
    Compared within 1e-6 relative: the samples' summed log-probabilities (FLOAT_COLUMNS_RTOL). Not compared: wall
    times and throughput (step_time_s, tokens_per_s, mfu, seconds), timestamps, paths, logs, and the train events
    that record the interruption itself (preempted, resume, checkpoint)."""
    a, u = preempted_job.run, sweep.points[T_TRAIN]
    assert a != u and a.name == u.name  # the same config picks the same run-directory name on both paths
    assert pq.read_table(a / "prompts" / "prompts.parquet").equals(pq.read_table(u / "prompts" / "prompts.parquet"))
    # Samples: the same rows, each (prompt, sample) once, the same number of shards.
    sa = shard_rows(a / "samples")
    assert sa and differing(sa, shard_rows(u / "samples")) == []
    assert len(list((a / "samples").glob("shard_*.parquet"))) == len(list((u / "samples").glob("shard_*.parquet")))
    for name in ("tokens.npy", "labels.npy", "loss_mask.npy", "cu_seqlens.npy", "cu_offsets.npy"):
        assert np.array_equal(np.load(a / "pack" / name), np.load(u / "pack" / name)), name
    assert step_curve(a) == step_curve(u) and [s[0] for s in step_curve(a)] == [1, 2]
    assert exported_weights(a) and exported_weights(a) == exported_weights(u)
    for label in ("base", f"base_T{T_TRAIN:g}", "ssd"):
        ea, eu = RunDir(a).eval_summary(label), RunDir(u).eval_summary(label)
        assert ea["pass_at_k"] == eu["pass_at_k"], label
        assert differing(shard_rows(a / "eval" / label / "samples"), shard_rows(u / "eval" / label / "samples")) \
            == [], label
        assert verdicts(a / "eval" / label) == verdicts(u / "eval" / label), label
    # The base evaluation was computed once, by the sbatch run, and copied (mtime kept) into both sweep points.
    for label in ("base", f"base_T{T_TRAIN:g}"):
        mtime = (a / "eval" / label / "summary.json").stat().st_mtime
        assert (u / "eval" / label / "summary.json").stat().st_mtime == mtime, label
    assert (sweep.points[1.5] / "eval" / "base" / "summary.json").stat().st_mtime == \
        (a / "eval" / "base" / "summary.json").stat().st_mtime
    # The base model's Megatron conversion was shared too (the session's conversion cache).
    for point in sweep.points.values():
        assert json.loads((point / "train" / "summary.json").read_text())["base_conversion_reused"] is True
