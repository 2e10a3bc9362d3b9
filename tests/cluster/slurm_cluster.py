"""A real one-node Slurm for the tests: Debian's munged, slurmctld and slurmd, started as root on this machine.

    cluster = SlurmCluster.start()      # writes <root>/slurm.conf, starts the three daemons, waits for the node
    cluster.run("sbatch", ...)           # any Slurm command, talking to this cluster (SLURM_CONF) only
    cluster.stop()                       # cancels the cluster's jobs, stops exactly the daemons it started, and
                                         # removes the folder

Everything lives in one temporary folder (configuration, munge key and socket, state, spool, logs); the daemons
listen on free loopback ports, so a Slurm already on the machine is neither used nor disturbed. They are stopped by
pid (SIGTERM, then SIGKILL), and get SIGTERM from the kernel should the test process die first (PR_SET_PDEATHSIG).

The configuration is the minimal one the issue verified (`proctrack/linuxproc`, `task/none`, `select/cons_tres`) plus
two settings that keep a requeue from costing minutes, each a documented knob of slurm.conf(5):
  - `AuthInfo=...,cred_expire=5`: a requeued batch job may start only after the credential lifetime (+1 s), 120 s
    by default (slurmctld/job_mgr.c, batch_requeue_fini);
  - `SchedulerParameters=sched_interval=1`: a job whose begin time has passed waits for the main scheduling loop,
    every 60 s by default; nothing else triggers it.
There is no slurmdbd, so `sacct` answers nothing: job states come from `scontrol show job` while Slurm keeps the
record (MinJobAge, 300 s) and from the job completion log (`JobCompType=jobcomp/filetxt`), one line per end of each
run of a job, requeues included.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from megatron_ssd.runlock import die_with_parent

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "sinfo")
DEBIAN_PACKAGES = "slurmctld slurmd slurm-client munge"
PARTITION = "cpu"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, host: str, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    return f"""ClusterName=ssdtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.sock,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
MinJobAge=600
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    root: Path
    host: str
    env: dict[str, str]
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def start(cls, timeout_s: float = 60) -> "SlurmCluster":
        root = Path(tempfile.mkdtemp(prefix="ssd_slurm_"))  # short: the munge socket path must fit 108 bytes
        host = socket.gethostname().split(".")[0]
        for sub in ("state", "spool", "log", "munge"):
            (root / sub).mkdir()
        (root / "munge").chmod(0o755)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        conf = root / "slurm.conf"
        conf.write_text(slurm_conf(root, host, os.cpu_count() or 1, free_port(), free_port()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(conf)
        cluster = cls(root=root, host=host, env=env)
        try:
            munge = root / "munge"
            cluster._daemon("munged", ["munged", "--foreground", "--force", f"--socket={munge}/munge.sock",
                                       f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                                       f"--log-file={munge}/munged.log", f"--seed-file={munge}/seed"])
            cluster._wait_for(lambda: (munge / "munge.sock").exists(), timeout_s, "munged's socket")
            cluster._daemon("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
            cluster._daemon("slurmd", ["slurmd", "-D", "-N", host, "-f", str(conf)])
            cluster._wait_for(lambda: cluster.node_state() == "idle", timeout_s, f"node {host} idle")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _daemon(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self.daemons[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL,
                                              preexec_fn=partial(die_with_parent, parent=os.getpid()))
        log.close()

    def _wait_for(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.daemons.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {proc.returncode} while waiting for {what}:\n"
                                       + self.logs())
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}:\n" + self.logs())

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted((self.root / "log").iterdir()) if p.is_file())

    def run(self, *argv: str, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """A Slurm command against this cluster."""
        env = {**self.env, **kwargs.pop("env", {})}
        return subprocess.run(list(argv), env=env, capture_output=True, text=True, check=check, timeout=timeout,
                              **kwargs)

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-n", self.host, "-o", "%T", check=False, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Reason, Restarts, ExitCode, Priority, ...); {} once forgotten."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id, check=False, timeout=10)
        return dict(re.findall(r"(\w+)=(\S*)", out.stdout)) if out.returncode == 0 else {}

    def completions(self, job_id: str | None = None) -> list[dict[str, str]]:
        """The job completion log's records (of `job_id`, or all), one per end of a run of a job (a requeue
        included), oldest first."""
        path = self.root / "jobcomp.txt"
        lines = path.read_text().splitlines() if path.exists() else []
        records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines]
        return [r for r in records if job_id is None or r.get("JobId") == str(job_id)]

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 1.0, seen: list | None = None) -> dict[str, str]:
        """Poll until the job reaches a final state; every distinct (JobState, Reason, Priority) it passes through
        is appended to `seen`."""
        deadline = time.monotonic() + timeout_s
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.job(job_id)
            state = (info.get("JobState", ""), info.get("Reason", ""), info.get("Priority", ""))
            if seen is not None and (not seen or seen[-1] != state):
                seen.append(state)
            if info.get("JobState") in FINAL_STATES:
                return info
            time.sleep(poll_s)
        raise TimeoutError(f"job {job_id} did not finish in {timeout_s} s (last: {info}); states {seen}")

    def cancel_all(self, timeout_s: float = 60) -> None:
        self.run("scancel", "--partition", PARTITION, check=False, timeout=10)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = self.run("squeue", "-h", "-o", "%i", check=False, timeout=10)
            if out.returncode != 0 or not out.stdout.strip():
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the cluster's jobs (their processes are Slurm's to stop), then stop exactly the daemons started
        here, by pid: slurmd, slurmctld, munged."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.daemons.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not self.alive():
            shutil.rmtree(self.root, ignore_errors=True)

    def alive(self) -> list[int]:
        return [p.pid for p in self.daemons.values() if p.poll() is None]
