"""Run model-written programs: one sandboxed process tree per sample, many samples in parallel.

`run_jobs(jobs, cfg)` executes `SandboxJob`s (built by `jobs.py`) with `cfg.workers`
threads, each driving one sandbox at a time, and returns one `SampleOutcome` per job (outcomes: `protocol.py`).

One run, step by step:
1. The job (program, tests, test inputs, limits; never the expected outputs of stdin/functional problems) goes into
   an unlinked temporary file whose descriptor is inherited; a fresh random nonce goes into a pipe; a third pipe
   carries the harness's result records back. The outer process runs as uid/gid 65534 when we are root.
2. The sandbox (`isolation.py`) starts ``/usr/bin/python3 -I -S -c <harness>``; the harness forks the child that runs
   the candidate under rlimits (`harness.py`).
3. This process reads stdout, stderr (both capped: anything beyond `outer_output_cap` is dropped, a flood kills
   the sandbox) and the result records, feeding them to a `ProtocolDecoder`; it kills the whole process group once the
   outcome is final (e.g. the first wrong answer), on the outer wall clock (`total_timeout + startup_slack_s`),
   or on a flood. With bwrap, killing the outer process tears down the sandbox's pid namespace and with it every
   process the program created; the fallback relies on the harness reaping them (it is a child subreaper).
4. A sandbox that fails to start (no "ready" record, e.g. a transient EAGAIN from the process limit while another
   sample's fork bomb is being killed) is retried with back-off.

Memory: every sample's process tree has one ceiling (`SandboxConfig.sample_memory_bytes`), enforced by a cgroup
where the host allows it, else by accounting (`cgroups.py`); rows record which (`Execution.memory_limit`).

Residual risks, stated plainly: in ``rlimits-only`` mode (an explicit opt-in) there is no filesystem/network/pid
isolation, and processes that start a new session can outlive a killed harness. docs/SANDBOX.md has the table.
"""
from __future__ import annotations

import os
import secrets
import selectors
import signal
import subprocess
import tempfile
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

from ...errors import SSDError
from . import cgroups
from . import isolation as iso_mod
from .protocol import LIVECODEBENCH, NATIVE, ProtocolDecoder, SampleOutcome

HARNESS_PATH = Path(__file__).with_name("harness.py")


@dataclass
class SandboxConfig:
    """Limits and parallelism of the sandbox. Defaults follow `EvalConfig` (workers, timeout_s, memory_mb)."""

    workers: int = 2
    timeout_s: float = 10.0  # per test case (humaneval/assert: the whole check) wall-clock limit
    max_total_timeout_s: float = 120.0  # cap on all cases of one sample together
    memory_mb: int = 1024  # RLIMIT_AS of the process running the candidate
    nproc: int = 32  # processes per sandbox (RLIMIT_NPROC inside its user namespace)
    fsize_mb: int = 16  # RLIMIT_FSIZE: largest file the program may write
    tmpfs_mb: int = 64  # size of the writable work dir (bwrap)
    shm_mb: int = 16  # size of /dev/shm inside bwrap (0: no writable /dev/shm)
    sample_memory_mb: int | None = None  # ceiling for the whole process tree (None: memory_mb + tmpfs + shm + 128)
    memory_limit: str = "auto"  # auto (a cgroup where the host allows it, else accounting) | accounting
    nofile: int = 256  # RLIMIT_NOFILE
    output_limit_bytes: int = 8 << 20  # stdout per case (stdin problems: what is compared)
    stderr_limit_bytes: int = 1 << 20
    outer_output_cap: int = 1 << 20  # what the harness itself may print before the sandbox is killed
    isolation: str = "bwrap"  # bwrap (required) | rlimits-only (the explicit opt-in; see isolation.py)
    bwrap: str | None = None  # bubblewrap executable (default: from PATH)
    python: str = "/usr/bin/python3"
    uid: int = 65534
    gid: int = 65534
    startup_slack_s: float = 20.0  # added to the outer wall clock for sandbox start-up on a loaded machine
    start_retries: int = 6  # back-off 0.25, 0.5, 1, 2, 4, 4 s: outlasts a fork bomb being torn down
    # stdin/functional problems: auto (livecodebench for problems of source livecodebench, else native) | native |
    # livecodebench (LiveCodeBench's run_test semantics; protocol.py, docs/SANDBOX.md)
    grader: str = "auto"
    lcb_timeout_s: int = 6  # grader=livecodebench: seconds per test (lcb_runner's --timeout, default 6)

    @classmethod
    def from_eval(cls, ecfg: Any, **overrides: Any) -> "SandboxConfig":
        """Build from an `EvalConfig` (workers, timeout_s, memory_mb, isolation, grader, lcb_timeout_s) + overrides."""
        base = {"workers": ecfg.workers, "timeout_s": ecfg.timeout_s, "memory_mb": ecfg.memory_mb,
                "isolation": ecfg.isolation, "grader": getattr(ecfg, "grader", "auto"),
                "lcb_timeout_s": getattr(ecfg, "lcb_timeout_s", 6)}
        base.update(overrides)
        return cls(**base)

    def sample_memory_bytes(self) -> int:
        mb = self.sample_memory_mb or self.memory_mb + self.tmpfs_mb + self.shm_mb + 128
        return int(mb) << 20

    def total_timeout(self, num_cases: int) -> float:
        return min(self.max_total_timeout_s, self.timeout_s * max(1, num_cases)) if num_cases > 1 else self.timeout_s

    def time_limits(self, job: "SandboxJob") -> tuple[float, float]:
        """(seconds per test, seconds for the whole sample) of a job. grader=livecodebench: LiveCodeBench's, its
        per-test alarm and check_correctness's join timeout (timeout + 1) * tests + 5
        (compute_code_generation_metrics.py:42-44), without our cap on the total."""
        if job.grader == LIVECODEBENCH:
            t = float(self.lcb_timeout_s)
            return t, (t + 1) * max(1, len(job.cases)) + 5
        return float(self.timeout_s), float(self.total_timeout(len(job.cases)))


@dataclass
class SandboxJob:
    """One candidate program and its tests, in the form the harness reads."""

    style: str  # humaneval | assert | functional | stdin
    program: str
    test_code: str = ""
    entry_point: str = ""
    cases: list[str] = field(default_factory=list)  # stdin text / JSON argument lines (inputs only)
    expected: list[str] = field(default_factory=list)  # compared outside the sandbox; never sent in
    use_solution_class: bool = False
    helper_code: str = ""  # humaneval: the prompt, run in the tests' process so its helpers (`poly`) are its own
    grader: str = NATIVE  # stdin/functional: native | livecodebench (protocol.GRADERS; set by jobs.build_job)


@dataclass
class Execution:
    """What came back from one sandbox run."""

    sample_outcome: SampleOutcome
    isolation: str
    duration_s: float
    attempts: int = 1
    stdout: str = ""
    stderr: str = ""
    cpu_s: float | None = None  # CPU seconds inside the sandbox as the harness measured them (None: not reported)
    memory_limit: str = ""  # how the tree's memory ceiling was enforced: cgroup-v2 | cgroup-v1 | accounting


@lru_cache(maxsize=1)
def harness_source() -> str:
    return HARNESS_PATH.read_text(encoding="utf-8")


def resolve_isolation(cfg: SandboxConfig) -> iso_mod.Isolation:
    """The isolation this config runs under; raises `SSDError` (nothing executed) when bwrap is required and absent."""
    return iso_mod.detect(cfg.isolation, cfg.python, cfg.uid, cfg.gid, cfg.tmpfs_mb << 20, cfg.bwrap,
                          cfg.shm_mb << 20)


def resolve_memory_limit(cfg: SandboxConfig) -> cgroups.Backend:
    """The mechanism behind the per-sample memory ceiling (`cgroups.py`)."""
    if cfg.memory_limit not in ("auto", cgroups.ACCOUNTING):
        raise SSDError(f"sandbox memory_limit {cfg.memory_limit!r}: choose auto or {cgroups.ACCOUNTING}.")
    return cgroups.detect_backend() if cfg.memory_limit == "auto" else cgroups.Backend(cgroups.ACCOUNTING,
                                                                                        note="requested")


def run_jobs(jobs: Iterable[SandboxJob], cfg: SandboxConfig,
             progress: Callable[[int], None] | None = None) -> list[Execution]:
    """Execute every job (in parallel over `cfg.workers` threads); results in input order."""
    jobs = list(jobs)
    isolation = resolve_isolation(cfg)
    if not jobs:
        return []

    def one(job: SandboxJob) -> Execution:
        result = run_job(job, cfg, isolation)
        if progress is not None:
            progress(1)
        return result

    with ThreadPoolExecutor(max_workers=max(1, cfg.workers), thread_name_prefix="sandbox") as pool:
        return list(pool.map(one, jobs))


def run_job(job: SandboxJob, cfg: SandboxConfig, isolation: iso_mod.Isolation | None = None) -> Execution:
    """Execute one job, retrying only when the sandbox itself failed to start."""
    isolation = isolation or resolve_isolation(cfg)
    start = time.monotonic()
    delay = 0.25
    for attempt in range(1, cfg.start_retries + 2):
        result = _execute_once(job, cfg, isolation)
        if not result.sample_outcome.infra or attempt > cfg.start_retries:
            result.attempts = attempt
            result.duration_s = round(time.monotonic() - start, 4)
            return result
        time.sleep(delay)
        delay = min(delay * 2, 4.0)
    raise AssertionError("unreachable")


def _job_payload(job: SandboxJob, cfg: SandboxConfig, isolation: iso_mod.Isolation) -> dict[str, Any]:
    nproc = cfg.nproc if isolation.mode == iso_mod.BWRAP else cfg.nproc * max(1, cfg.workers) + 16
    case_s, total_s = cfg.time_limits(job)
    return {
        "style": job.style, "program": job.program, "test_code": job.test_code, "entry_point": job.entry_point,
        "cases": job.cases, "use_solution_class": job.use_solution_class, "helper_code": job.helper_code, "isolation": isolation.mode,
        "grader": job.grader, "case_timeout_s": case_s, "total_timeout_s": total_s,
        "memory_bytes": int(cfg.memory_mb) << 20, "nproc": int(nproc), "fsize_bytes": int(cfg.fsize_mb) << 20,
        "nofile": int(cfg.nofile), "output_limit_bytes": int(cfg.output_limit_bytes),
        "stderr_limit_bytes": int(cfg.stderr_limit_bytes),
    }


def _execute_once(job: SandboxJob, cfg: SandboxConfig, isolation: iso_mod.Isolation) -> Execution:
    payload = _job_payload(job, cfg, isolation)
    nonce = secrets.token_hex(16)
    decoder = ProtocolDecoder(job.style, list(job.expected), nonce, payload["case_timeout_s"], grader=job.grader)
    job_file = tempfile.TemporaryFile()
    nonce_r, nonce_w = os.pipe()
    result_r, result_w = os.pipe()
    workdir = None
    cgroup = None
    backend = resolve_memory_limit(cfg)
    ceiling = cfg.sample_memory_bytes()
    start = time.monotonic()
    try:
        job_file.write(json.dumps(payload).encode("utf-8"))
        job_file.flush()
        job_file.seek(0)
        os.write(nonce_w, nonce.encode("ascii"))
        os.close(nonce_w)
        nonce_w = -1
        fds = (job_file.fileno(), nonce_r, result_r, result_w)
        inner = [isolation.python, *iso_mod.PYTHON_FLAGS, "-c", harness_source(), str(fds[0]), str(nonce_r),
                 str(result_w)]
        popen_kw: dict[str, Any] = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        pass_fds=(fds[0], nonce_r, result_w), start_new_session=True,
                                        **iso_mod.popen_identity(isolation))
        if backend.kind != cgroups.ACCOUNTING:
            try:
                cgroup = cgroups.SampleCgroup(backend, ceiling, int(payload["nproc"]) + 8)
            except OSError:  # e.g. the cgroup hierarchy went away: this sample is accounted instead
                cgroup = None
        memory_limit = backend.kind if cgroup is not None else cgroups.ACCOUNTING
        prefix = cgroup.join_prefix() if cgroup is not None else cgroups.join_prefix([])
        if isolation.mode == iso_mod.BWRAP:
            argv = prefix + iso_mod.launch_prefix(isolation) + iso_mod.bwrap_argv(
                isolation, cfg.tmpfs_mb << 20, inner, cfg.shm_mb << 20)
            popen_kw["env"] = {"PATH": "/usr/bin:/bin"}
            popen_kw["cwd"] = "/"
        else:
            workdir = _fallback_workdir(isolation)
            argv = prefix + iso_mod.launch_prefix(isolation) + inner
            popen_kw["env"] = iso_mod.fallback_env(workdir)
            popen_kw["cwd"] = workdir
        try:
            proc = subprocess.Popen(argv, **popen_kw)
        except OSError as exc:
            outcome = SampleOutcome("crash", f"could not start the sandbox: {exc}", infra=True)
            return Execution(outcome, isolation.mode, time.monotonic() - start, memory_limit=memory_limit)
        finally:
            os.close(result_w)
            os.close(nonce_r)
            job_file.close()
        outer_deadline = start + payload["total_timeout_s"] + cfg.startup_slack_s
        over = (lambda: cgroups.tree_rss_bytes(proc.pid) > ceiling) if cgroup is None else None
        timed_out, stdout, stderr, over_ceiling = _pump(proc, result_r, decoder, outer_deadline,
                                                        cfg.outer_output_cap,
                                                        max_record=payload["output_limit_bytes"] * 8 + (1 << 20),
                                                        over_ceiling=over)
        if isolation.mode == iso_mod.FALLBACK and not decoder.done:
            _kill_groups_as_sandbox_user(decoder.pgids, isolation)
        start_error = stderr.decode("utf-8", "replace").strip()[-500:]
        outcome = decoder.finish(timed_out=timed_out, returncode=proc.returncode, start_error=start_error)
        if not outcome.passed and (over_ceiling or (cgroup is not None and cgroup.oom_killed())):
            how = "killed by the evaluator" if over_ceiling else "cgroup OOM kill"
            outcome = SampleOutcome("memory", f"the sample's processes together exceeded the {ceiling >> 20} MB "
                                              f"memory ceiling ({memory_limit}: {how})")
        return Execution(outcome, isolation.mode, time.monotonic() - start,
                         stdout=stdout.decode("utf-8", "replace")[-2000:], stderr=start_error[-2000:],
                         cpu_s=decoder.cpu_s, memory_limit=memory_limit)
    finally:
        if cgroup is not None:
            cgroup.remove()
        if nonce_w != -1:
            os.close(nonce_w)
        os.close(result_r)
        if workdir is not None:
            _remove_tree(workdir)


def _pump(proc: subprocess.Popen, result_r: int, decoder: ProtocolDecoder, deadline: float, cap: int,
          max_record: int, over_ceiling: Callable[[], bool] | None = None) -> tuple[bool, bytes, bytes, bool]:
    """Read stdout/stderr/results until the sandbox ends, the decoder is done, a flood, the deadline, or (the
    accounting fallback) `over_ceiling()` says the tree uses too much memory.

    Returns (outer wall clock fired, stdout head, stderr head, killed over the memory ceiling). The process group is
    always dead on return.
    """
    sel = selectors.DefaultSelector()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    captured = {out_fd: bytearray(), err_fd: bytearray()}
    for fd in (out_fd, err_fd, result_r):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    buf = bytearray()
    timed_out = stop = over = False
    period = 1.0 if over_ceiling is None else cgroups.ACCOUNTING_PERIOD_S
    try:
        while sel.get_map() and not stop:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if over_ceiling is not None and over_ceiling():
                over = stop = True
                break
            for key, _ in sel.select(min(remaining, period)):
                try:
                    data = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                if key.fd == result_r:
                    buf += data
                    stop = _consume(buf, decoder) or stop
                    if len(buf) > max_record:
                        decoder.feed({"ev": "oversized"})
                        stop = True
                else:
                    out = captured[key.fd]
                    room = cap - len(out)
                    out += data[: max(0, room)]
                    if len(data) > room:
                        stop = True  # the harness prints (almost) nothing itself: this is a flood
    finally:
        sel.close()
        if proc.poll() is None:
            _kill_group(proc)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            _kill_group(proc)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if not stop and not timed_out and buf:
        buf += b"\n"
        _consume(buf, decoder)
    return timed_out, bytes(captured[out_fd]), bytes(captured[err_fd]), over


def _consume(buf: bytearray, decoder: ProtocolDecoder) -> bool:
    """Feed every complete line of `buf` to the decoder (removing it); True once the outcome is final."""
    while True:
        nl = buf.find(b"\n")
        if nl < 0:
            return decoder.sample_outcome is not None
        line = bytes(buf[:nl])
        del buf[: nl + 1]
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            rec = {"ev": "garbled-record"}
        if not isinstance(rec, dict):
            rec = {"ev": "garbled-record"}
        if decoder.feed(rec):
            return True


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the sandbox's process group (with bwrap this also ends its pid namespace)."""
    for target in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            target()
        except (ProcessLookupError, PermissionError, OSError):
            pass


def _kill_groups_as_sandbox_user(pgids: list[int], isolation: iso_mod.Isolation) -> None:
    """Fallback mode only: kill the candidate's process groups after the harness died or was killed.

    The harness's children outlive it there (no pid namespace). The kill runs *as the sandbox uid*, so even a stale
    or reused group id can never reach anything but sandbox processes.
    """
    if not pgids:
        return
    code = ("import os, signal, sys\n"
            "for g in sys.argv[1:]:\n"
            "    try: os.killpg(int(g), signal.SIGKILL)\n"
            "    except OSError: pass\n")
    try:
        subprocess.run([*iso_mod.launch_prefix(isolation), isolation.python, *iso_mod.PYTHON_FLAGS, "-c", code,
                        *map(str, pgids)], timeout=30, capture_output=True, stdin=subprocess.DEVNULL,
                       **iso_mod.popen_identity(isolation))
    except (OSError, subprocess.SubprocessError):
        pass


def _fallback_workdir(isolation: iso_mod.Isolation) -> str:
    path = tempfile.mkdtemp(prefix="ssd-sandbox-")
    if isolation.uid is not None:
        os.chown(path, isolation.uid, isolation.gid)
    os.chmod(path, 0o700)
    return path


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
