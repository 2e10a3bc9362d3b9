"""The command that starts the training ranks, and running it with its output streamed.

local:  python -m torch.distributed.run --nproc-per-node=N --nnodes=1 --standalone
            -m megatron_ssd.training.entry --config <run>/train/config.yaml
slurm:  srun --nodes=$SLURM_NNODES --ntasks-per-node=1 --kill-on-bad-exit=1 --overlap
            python -m torch.distributed.run --nproc-per-node=N --nnodes=$SLURM_NNODES
            --rdzv-backend=c10d --rdzv-endpoint=<first node of the allocation>:<port> --rdzv-id=$SLURM_JOB_ID
            -m megatron_ssd.training.entry --config ...
(one torchrun agent per node, which starts that node's ranks; the rendezvous host is the allocation's first node).
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


def slurm_head_node(env: dict[str, str]) -> str:
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise SSDError("cluster.launcher=slurm must run inside a Slurm allocation (sbatch/salloc): "
                       "SLURM_JOB_NODELIST is not set. Use cluster.launcher=local on a single machine.")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError) as exc:
        raise SSDError(f"cannot expand SLURM_JOB_NODELIST={nodelist!r} with `scontrol show hostnames` ({exc}).") from exc
    if not out:
        raise SSDError(f"`scontrol show hostnames {nodelist}` returned no host.")
    return out[0]


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
    return launch_argv(cfg, config_path, head=head, job_id=job, port=env.get("MASTER_PORT", str(DEFAULT_PORT)),
                       python=python)


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
    return ["srun", f"--nodes={p.nnodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--overlap",
            python, "-m", "torch.distributed.run", f"--nproc-per-node={p.nproc_per_node}", f"--nnodes={p.nnodes}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={head}:{port}", f"--rdzv-id={job_id}", *entry]


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
