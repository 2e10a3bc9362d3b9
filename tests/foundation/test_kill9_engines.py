"""kill -9 of `ssd run` alone (not its process group) while a vLLM engine is up: nothing of the run survives.

vLLM's engine core and workers are spawned interpreters that run no code of ours but vLLM's plugins; the
`vllm.general_plugins` entry point of `megatron_ssd.generation.engine_lifetime` gives them a parent-death signal
and records them in the run directory. One run directory of the embedded default at a tiny size is killed three
times, once in each stage that starts an engine: during diagnose (the base model's engine), during sample (the same
engine, shared) and during evaluate (the SSD model's engine); each rerun resumes it. After every kill, within 10 s,
no process the launcher had started (engine core, workers, resource tracker, sandbox jobs) runs and no /dev/shm
entry they had open or mapped exists. The final run finishes (exit 0) with the same base evaluations, samples and
SSD evaluations as one uninterrupted run of the same config. Also: the run lock's takeover ends a recorded member
of a dead owner that lost its parent-death signal, and says so.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from megatron_ssd import runlock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG + /proc")
ROOT = Path(__file__).resolve().parents[2]
SSD = str(Path(sys.executable).parent / "ssd")
TINY = ["data.max_train_prompts=4", "data.max_eval_problems=2", "sample.max_tokens=32", "eval.max_tokens=32",
        "eval.n=2", "eval.k=[1,2]", "eval.temperature_sweep=[]", "sample.num_shards=4",
        "sample.max_inflight_requests=1", "train.seq_length=256", "train.train_iters=1",
        "train.global_batch_size=2", "sample.enforce_eager=true", "model.max_model_len=1024",
        "sample.cpu_kvcache_gib=1", "cluster.wandb_mode=offline",
        "eval.mechanism.enabled=false"]  # the locks-and-forks probe starts no engine: tests/integration covers it
GONE_S = 10.0  # the bound: a killed run's processes are gone this long after the kill
WAIT_S = 600  # a hang guard for a stage to start or a run to finish, never a performance bound


# ------------------------------------------------------------------------------------------- /proc helpers
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int, start: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X") and fields[19] == start


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of `root`."""
    parent_of, start_of = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat(int(stat.parent.name))
        if fields and fields[0] not in ("Z", "X"):
            parent_of[int(stat.parent.name)], start_of[int(stat.parent.name)] = int(fields[1]), fields[19]
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parent_of.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: start_of[pid] for pid in tree - {root}}


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def _shm_of(pids) -> set[str]:
    """The /dev/shm entries these processes have open or mapped."""
    out = set()
    for pid in pids:
        out |= {p for p in runlock._mapped_files(pid) if p.startswith("/dev/shm/")}
    return out


# ------------------------------------------------------------------------------------------------ the runs
def _start(run_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([SSD, "run", f"run_dir={run_dir}", f"runs_root={run_dir}.runs", *TINY],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "200", "WANDB_MODE": "offline"})


def _finish(run_dir: Path, log: Path) -> None:
    proc = _start(run_dir, log)
    assert proc.wait(timeout=WAIT_S) == 0, log.read_text()[-4000:]


def _kill_during(stage: str, run_dir: Path, log: Path) -> dict:
    """Run `ssd run` until `stage` has begun with a vLLM worker up, kill -9 the launcher alone, then measure."""
    proc = _start(run_dir, log)
    deadline = time.monotonic() + WAIT_S
    while True:
        assert proc.poll() is None, f"ssd run ended before {stage} could be killed:\n" + log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"gave up waiting for {stage}'s engine"
        tree = _descendants(proc.pid)
        if (run_dir / "logs" / f"{stage}.log").exists() and any(_command(p).startswith("VLLM::Worker") for p in tree):
            break
        time.sleep(0.05)
    commands = {p: _command(p) for p in tree}
    shm = _shm_of(tree)
    scratch = set((run_dir / runlock.SCRATCH_FILE).read_text().split()) if (run_dir / runlock.SCRATCH_FILE).exists() \
        else set()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.monotonic()
    while any(_alive(p, s) for p, s in tree.items()) and time.monotonic() < killed + GONE_S:
        time.sleep(0.05)
    left = {p: _command(p) for p, s in tree.items() if _alive(p, s)}
    shm_left = sorted(p for p in shm | scratch if p.startswith("/dev/shm/") and os.path.exists(p))
    for pid in left:  # never leave them running, whatever the assertions say
        os.kill(pid, signal.SIGKILL)
    return {"processes": commands, "left": left, "shm": sorted(shm), "shm_left": shm_left,
            "scratch": sorted(scratch), "gone_s": time.monotonic() - killed, "done": sorted(p.parent.name for p in run_dir.glob("*/.done"))}


def _digest(run_dir: Path) -> dict[str, str]:
    """sha256 of what the generating stages produced, without timings: each label's samples and their scores,
    and the training samples, in a fixed order."""
    import pyarrow.parquet as pq

    def sha(rows) -> str:
        return hashlib.sha256(json.dumps(sorted(rows), default=str).encode()).hexdigest()

    out = {}
    for f in sorted((run_dir / "eval").glob("*/results.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        out[f.parent.name] = sha([(r["prompt_id"], r["sample_idx"], r["text"], r["num_tokens"], r["passed"],
                                   r["outcome"]) for r in rows])
    samples = [row for f in sorted((run_dir / "samples").glob("shard_*.parquet"))
               for row in pq.read_table(f).to_pylist()]
    out["samples"] = sha([(r["prompt_id"], r["sample_idx"], r["token_ids"], r["text"], r["finish_reason"])
                          for r in samples])
    out["samples:count"] = str(len(samples))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """One uninterrupted run of the same config."""
    root = tmp_path_factory.mktemp("uninterrupted")
    _finish(root / "run", root / "ssd.log")
    return _digest(root / "run")


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill_9_in_each_engine_stage_leaves_nothing_and_the_rerun_matches(reference, tmp_path):
    run_dir, log = tmp_path / "run", tmp_path / "ssd.log"
    scratch: set[str] = set()
    for stage, done_before in (("diagnose", ["prompts"]), ("sample", ["diagnose", "prompts"]),
                               ("evaluate", ["diagnose", "export", "pack", "prompts", "sample", "train"])):
        m = _kill_during(stage, run_dir, log)
        print(f"{stage}: killed {len(m['processes'])} descendant(s) of ssd run, gone in {m['gone_s']:.2f} s; "
              f"/dev/shm entries {len(m['shm'])}, left {len(m['shm_left'])}")
        assert any(c.startswith("VLLM::EngineCore") for c in m["processes"].values()), m["processes"]
        assert not m["left"], f"{stage}: still running {GONE_S:g} s after kill -9 of ssd run: {m['left']}"
        assert m["shm"] and not m["shm_left"], f"{stage}: /dev/shm entries of the killed run remain: {m['shm_left']}"
        assert m["done"] == done_before, (stage, m["done"])  # killed inside the stage, not after it
        scratch |= set(m["scratch"])
    _finish(run_dir, log)
    assert not [p for p in scratch if os.path.exists(p)]  # e.g. vLLM's /tmp/vllm_dist_*: the takeover removed them
    text = log.read_text()
    assert "still running" not in text  # no survivor for the takeover to end: the engines died on their own
    assert _digest(run_dir) == reference
    assert {"base", "ssd"} <= set(reference) and reference["samples:count"] != "0"


# -------------------------------------------------------------------------------------- takeover of survivors
OWNER = """
    import signal, subprocess, sys, time
    from pathlib import Path
    from megatron_ssd.runlock import run_lock
    run, member_code, ready = sys.argv[1:4]
    with run_lock(run):
        child = subprocess.Popen([sys.executable, "-c", member_code, ready])
        time.sleep(600)
"""
# A member whose parent-death signal was lost (as when it re-parents before asking for it): it joins the run,
# maps a shared-memory segment, clears PR_SET_PDEATHSIG and then outlives its owner.
MEMBER = """
    import ctypes, sys, time
    from multiprocessing import shared_memory, resource_tracker
    from pathlib import Path
    from megatron_ssd.runlock import join_run
    join_run()
    shm = shared_memory.SharedMemory(create=True, size=1 << 20)
    resource_tracker.unregister(shm._name, "shared_memory")  # nobody else would remove it
    ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)
    Path(sys.argv[1]).write_text(shm._name)
    time.sleep(600)
"""


def test_takeover_ends_recorded_survivors_of_a_dead_owner_and_says_so(tmp_path, caplog):
    run, ready = tmp_path / "run", tmp_path / "member.shm"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(OWNER), str(run), textwrap.dedent(MEMBER),
                              str(ready)], env=env)
    member, start = 0, ""
    try:
        deadline = time.monotonic() + 120
        while not (ready.exists() and ready.read_text()):
            assert time.monotonic() < deadline and owner.poll() is None, "the member did not start"
            time.sleep(0.05)
        segment = Path("/dev/shm") / ready.read_text().lstrip("/")
        line = (run / runlock.MEMBERS_FILE).read_text().split()
        member, start = int(line[0]), line[1]
        assert segment.exists() and _alive(member, start)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        time.sleep(0.5)
        assert _alive(member, start)  # the lost signal: it survived its owner
        with caplog.at_level(logging.WARNING, logger="megatron_ssd.runlock"):
            with runlock.run_lock(run):
                assert not _alive(member, start)
                assert not segment.exists()
                assert (run / runlock.MEMBERS_FILE).read_text() == ""
        message = " ".join(r.getMessage() for r in caplog.records)
        assert f"ended 1 process(es) of its previous owner (pid {owner.pid})" in message
        assert f"pid {member} (" in message
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.wait()
        if member and _alive(member, start):
            os.kill(member, signal.SIGKILL)


# --------------------------------------------------------------------------------------------- sandbox jobs
EVALUATOR = """
    import sys
    from megatron_ssd.evaluation.sandbox.runner import SandboxConfig
    from megatron_ssd.evaluation.scoring import score_samples
    from megatron_ssd.problems import Problem
    problem = Problem(problem_id="toy/double", source="test", question="double x", style="humaneval",
                      starter_code="def f(x):\\n    pass\\n", entry_point="f",
                      test_code="def check(candidate):\\n    assert candidate(2) == 4\\n")
    text = "import time\\ndef f(x):\\n    time.sleep(600)\\n    return 2 * x\\n"
    score_samples([problem], [{"prompt_id": "toy/double", "sample_idx": i, "text": text} for i in range(2)],
                  SandboxConfig(workers=2, timeout_s=300.0, isolation=sys.argv[1]))
"""


@pytest.mark.parametrize("isolation", ["bwrap", "rlimits-only"])
def test_sandbox_jobs_die_with_a_killed_evaluator(isolation, tmp_path):
    """The stages score samples in sandboxes started from their threads: kill -9 of the evaluator ends them."""
    from megatron_ssd.evaluation.sandbox import isolation as iso_mod

    if isolation == "bwrap":
        try:
            usable = iso_mod.detect(iso_mod.BWRAP).mode == iso_mod.BWRAP
        except Exception:  # detect names what is missing; here that only means the bwrap case cannot run
            usable = False
        if not usable:
            pytest.skip("bubblewrap/user namespaces unavailable here")
    evaluator = subprocess.Popen([sys.executable, "-c", textwrap.dedent(EVALUATOR), isolation],
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                                 stderr=open(tmp_path / "evaluator.log", "w"))
    try:
        deadline = time.monotonic() + 120
        while True:
            assert evaluator.poll() is None, (tmp_path / "evaluator.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sandboxes did not start"
            tree = _descendants(evaluator.pid)
            if sum("time.sleep" in _command(p) or "python3" in _command(p) for p in tree) >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # let the harness start the candidate's process too
        tree = _descendants(evaluator.pid)
        evaluator.send_signal(signal.SIGKILL)
        evaluator.wait()
        killed = time.monotonic()
        while any(_alive(p, s) for p, s in tree.items()) and time.monotonic() < killed + GONE_S:
            time.sleep(0.05)
        left = {p: _command(p) for p, s in tree.items() if _alive(p, s)}
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert len(tree) >= 2 and not left, (tree, left)
    finally:
        if evaluator.poll() is None:
            evaluator.kill()
            evaluator.wait()


# ------------------------------------------------------------- both ways vLLM starts its processes, without vLLM
STARTER = """
    import multiprocessing, sys, time
    from megatron_ssd.generation import engine_lifetime
    from megatron_ssd.runlock import run_lock

    def engine_core(ready):  # what vLLM's plugin loader does first in a spawned child; nothing in a forked one
        if multiprocessing.get_start_method() == "spawn":
            engine_lifetime.in_engine_process()
        open(ready, "w").write("up")
        time.sleep(600)

    if __name__ == "__main__":
        method, run, ready = sys.argv[1:4]
        with run_lock(run):
            engine_lifetime.mark_engine_processes()
            multiprocessing.get_context(method).Process(target=engine_core, args=(ready,)).start()
            time.sleep(600)
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_engine_processes_die_with_their_starter_spawned_or_forked(method, tmp_path):
    """vLLM spawns on CPU and once CUDA is initialised, forks otherwise (GPU): either child dies with the process
    that started it and is recorded in the run for a takeover."""
    script, run, ready = tmp_path / "starter.py", tmp_path / "run", tmp_path / "ready"
    script.write_text(textwrap.dedent(STARTER))
    starter = subprocess.Popen([sys.executable, str(script), method, str(run), str(ready)],
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    tree = {}
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert starter.poll() is None and time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        tree = _descendants(starter.pid)
        child = [p for p in tree if str(p) in (run / runlock.MEMBERS_FILE).read_text().split()]
        assert child, ((run / runlock.MEMBERS_FILE).read_text(), tree)
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        killed = time.monotonic()
        while any(_alive(p, s) for p, s in tree.items()) and time.monotonic() < killed + GONE_S:
            time.sleep(0.05)
        assert not [p for p, s in tree.items() if _alive(p, s)]
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        for pid, start in tree.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
