"""The command that starts the training ranks, and running it with its output streamed.

local:  python -m torch.distributed.run --nproc-per-node=N --nnodes=1 --standalone
            -m megatron_ssd.training.entry --config <run>/train/config.yaml
slurm:  srun --nodes=$SLURM_NNODES --ntasks-per-node=1 --kill-on-bad-exit=1 --overlap
            python -m torch.distributed.run --nproc-per-node=N --nnodes=$SLURM_NNODES
            --rdzv-backend=c10d --rdzv-endpoint=<first node of the allocation>:<port> --rdzv-id=$SLURM_JOB_ID
            --rdzv-conf=join_timeout=<cluster.rdzv_join_timeout_s>,read_timeout=<at most 60>
            -m megatron_ssd.training.entry --config ...
(one torchrun agent per node, which starts that node's ranks; the rendezvous host is the allocation's first node).
A rendezvous that fails (the head unreachable, a node that never joins) ends within the join timeout as one
`SSDError` naming the endpoint (`run_training`), not as torchrun's traceback, which stays in the log.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

from ..config.schema import SSDConfig
from ..errors import ConfigError, SSDError
from ..runlock import die_with_parent

ENTRY = "megatron_ssd.training.entry"
DEFAULT_PORT = 29500
# Inside an allocation without MASTER_PORT, the port is DEFAULT_PORT + job id % JOB_PORTS: two jobs whose head is
# the same node (sweep points or array tasks on a shared partition) would otherwise both bind 29500, and the second
# rendezvous fails. Every node of one job computes the same port from the same SLURM_JOB_ID.
JOB_PORTS = 1000
# torch's own default for the store's connect/read timeout; a shorter join timeout lowers it too, so a node that
# cannot reach the head gives up no later than one that waits for the others.
READ_TIMEOUT_S = 60
# What torchrun's agent raises when the rendezvous fails (torch.distributed.elastic.rendezvous.api): the agent
# prints the class name in its traceback, the only trace of the failure (no rank has started to write failure.json).
RENDEZVOUS_ERRORS = {
    "RendezvousConnectionError": "this node could not connect to the rendezvous store on the head node",
    "RendezvousTimeoutError": "not every node joined the rendezvous in time",
    "RendezvousClosedError": "the rendezvous was closed by another node",
    "RendezvousError": "the rendezvous failed",
}


def expand_nodelist(nodelist: str) -> list[str]:
    """The host names of a Slurm node list (`gpu[001-004,007],login1`), in order.

    `scontrol show hostnames` is Slurm's own answer; where it is missing (a dry run on a laptop) or cannot answer
    (no slurm.conf and no controller to fetch it from: "Could not establish a configuration source"), the list is
    expanded by submitit's parser (submitit comes with hydra-submitit-launcher and parses the same variable for its
    own jobs), which covers the syntax Slurm exports: comma-separated names, bracketed ranges and lists with
    zero padding, several bracket groups in one name."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=10).stdout.split()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    # why: submitit is imported only when Slurm's own tool cannot answer
    from submitit.slurm.slurm import SlurmParseException, _parse_node_list

    try:
        hosts = [h for h in _parse_node_list(nodelist) if h]
    except SlurmParseException as exc:
        raise SSDError(f"cannot expand SLURM_JOB_NODELIST={nodelist!r}: `scontrol show hostnames` did not answer and "
                       "the list is not in Slurm's node-list syntax (name[1-4,7],other); set SLURM_JOB_NODELIST to "
                       "the allocation's node list.") from exc
    if not hosts:
        raise SSDError(f"SLURM_JOB_NODELIST={nodelist!r} names no host.")
    return hosts


def slurm_head_node(env: dict[str, str]) -> str:
    """The rendezvous host: the first node of the allocation."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise SSDError("cluster.launcher=slurm must run inside a Slurm allocation (sbatch/salloc): "
                       "SLURM_JOB_NODELIST is not set. Use cluster.launcher=local on a single machine.")
    return expand_nodelist(nodelist)[0]


def rendezvous_port(env: dict[str, str]) -> str:
    """MASTER_PORT when set; else, inside an allocation, a port of the job's own (JOB_PORTS); else DEFAULT_PORT."""
    if env.get("MASTER_PORT"):
        return env["MASTER_PORT"]
    job = env.get("SLURM_JOB_ID", "")
    return str(DEFAULT_PORT + int(job) % JOB_PORTS) if job.isdigit() else str(DEFAULT_PORT)


def torchrun_command(cfg: SSDConfig, config_path: str | os.PathLike, *, env: dict[str, str] | None = None,
                     python: str | None = None) -> list[str]:
    env = dict(os.environ if env is None else env)
    c = cfg.cluster
    python = python or sys.executable
    if c.launcher != "slurm":  # local, or the error naming an unknown launcher
        return launch_argv(cfg, config_path, python=python)
    if c.dry_run and not (env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")):
        head, job = "$MASTER_ADDR", "$SLURM_JOB_ID"  # printed, not run: show where the values come from
    else:
        head, job = slurm_head_node(env), env.get("SLURM_JOB_ID", "ssd-train")
    return launch_argv(cfg, config_path, head=head, job_id=job, port=rendezvous_port(env), python=python)


def launch_argv(cfg: SSDConfig, config_path: str | os.PathLike, *, head: str = "$MASTER_ADDR",
                job_id: str = "$SLURM_JOB_ID", port: int | str = DEFAULT_PORT, python: str = "python") -> list[str]:
    """The launch command as data: reads no environment and asks Slurm nothing, so a dry run (slurm/*.sh with
    DRY_RUN=1) can print exactly what `torchrun_command` runs, with placeholders where the allocation's values go.
    `--overlap` lets the step start inside another step (a submitit sweep point) and is a no-op in a batch script."""
    p, c = cfg.parallel, cfg.cluster
    entry = ["-m", ENTRY, "--config", str(config_path)]
    if c.launcher == "local":
        if p.nnodes != 1:
            raise ConfigError(f"parallel.nnodes={p.nnodes} needs cluster.launcher=slurm (local runs on one machine).")
        return [python, "-m", "torch.distributed.run", f"--nproc-per-node={p.nproc_per_node}", "--nnodes=1",
                "--standalone", *entry]
    if c.launcher != "slurm":
        raise ConfigError(f"cluster.launcher={c.launcher!r}: choose local or slurm.")
    read_timeout = min(c.rdzv_join_timeout_s, READ_TIMEOUT_S)
    return ["srun", f"--nodes={p.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--overlap",
            python, "-m", "torch.distributed.run", f"--nproc-per-node={p.nproc_per_node}", f"--nnodes={p.nnodes}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={head}:{port}", f"--rdzv-id={job_id}",
            f"--rdzv-conf=join_timeout={c.rdzv_join_timeout_s},read_timeout={read_timeout}", *entry]


def _flag(cmd: list[str], name: str) -> str | None:
    prefix = f"--{name}="
    return next((a[len(prefix):] for a in cmd if a.startswith(prefix)), None)


def rendezvous_error(cmd: list[str], output: str, log_path: str | os.PathLike) -> SSDError | None:
    """The rendezvous failure that `output` (torchrun's, this attempt only) reports, as one paragraph, or None."""
    kind = next((k for k in RENDEZVOUS_ERRORS if k in output), None)
    endpoint = _flag(cmd, "rdzv-endpoint")
    if kind is None or endpoint is None:
        return None
    nnodes = _flag(cmd, "nnodes")
    conf = dict(kv.split("=", 1) for kv in (_flag(cmd, "rdzv-conf") or "").split(",") if "=" in kv)
    timeout = conf.get("join_timeout", "600 (torch's default)")
    host, _, port = endpoint.rpartition(":")
    return SSDError(
        f"the training ranks never started: {RENDEZVOUS_ERRORS[kind]} ({kind}) at --rdzv-endpoint={endpoint}, "
        f"join timeout {timeout} s, {nnodes} nodes. Check that the head node {host} is up and reachable from every "
        f"node of the allocation (same network, no firewall), that port {port} is free on it (another job's "
        "rendezvous on the same node? set MASTER_PORT to a free port), and that all nodes started (`srun "
        f"--nodes={nnodes}` got every node and none failed before torchrun); if nodes start slowly, raise "
        "cluster.rdzv_join_timeout_s. Nothing was trained in this attempt; rerun the train stage once fixed (it "
        f"resumes from the last checkpoint, if any). torchrun's traceback is in {log_path}.")


def rank_env(cfg: SSDConfig, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the ranks: CPU threads split between the local ranks; a forced terminal for the
    progress bar when the launcher itself writes to one."""
    env = dict(os.environ if base is None else base)
    if "OMP_NUM_THREADS" not in env:
        import torch

        if not torch.cuda.is_available():
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cfg.parallel.nproc_per_node))
    if sys.stdout.isatty():
        env["SSD_FORCE_TERMINAL"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def format_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) if not c.startswith("$") else c for c in cmd)


def run_training(cmd: list[str], env: dict[str, str], log_path: str | os.PathLike, out=None) -> int:
    """`run_streaming`, then a rendezvous failure raised as an `SSDError` (other failures: the exit status)."""
    log_path = Path(log_path)
    start = log_path.stat().st_size if log_path.exists() else 0  # the log appends: read this attempt's part only
    rc = run_streaming(cmd, env, log_path, out)
    if rc != 0 and log_path.exists():
        with open(log_path, "rb") as f:
            f.seek(start)
            error = rendezvous_error(cmd, f.read().decode("utf-8", errors="replace"), log_path)
        if error is not None:
            raise error
    return rc


def run_streaming(cmd: list[str], env: dict[str, str], log_path: str | os.PathLike, out=None) -> int:
    """Run `cmd`, copying its combined output to `out` (stdout) and `log_path` as it arrives (bytes, so the
    progress bar's carriage returns pass through). Ctrl-C stops the whole process group it started.

    The child runs in its own session (a Ctrl-C at the terminal reaches only this process, which stops the group
    in order) and gets SIGTERM when this process dies, even by kill -9: torchrun then stops its ranks, and the
    ranks, which join the run (`runlock.join_run`), get SIGTERM themselves should torchrun die first."""
    out = out or sys.stdout
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=partial(die_with_parent, parent=os.getpid()))
        try:
            fd = proc.stdout.fileno()
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                log.write(chunk)
                log.flush()
                buf = getattr(out, "buffer", None)
                if buf is not None:
                    buf.write(chunk)
                    buf.flush()
                else:
                    out.write(chunk.decode("utf-8", errors="replace"))
                    out.flush()
            return proc.wait()
        except BaseException:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            raise
        finally:
            proc.stdout.close()
