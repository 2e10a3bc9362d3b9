"""A memory ceiling for a sample's whole process tree, not per process.

RLIMIT_AS bounds each process, but a sample may start dozens of them. Where the host allows it, every sample runs in
its own cgroup with a memory limit (swap included) and a process limit, created under the evaluator's own cgroup:

- ``cgroup-v2``: the unified hierarchy, when the memory controller is available to the evaluator's cgroup (root in a
  container, or a delegated sub-tree such as one made by ``systemd-run --user --scope -p Delegate=yes``);
- ``cgroup-v1``: the legacy ``memory`` (and ``pids``) hierarchies, when writable (root on a v1/hybrid host).

Elsewhere the ``accounting`` fallback applies: the evaluator sums the resident memory of the sample's processes
every `ACCOUNTING_PERIOD_S` and kills the sandbox above the ceiling (a sample can overshoot between two looks, by at
most what its processes allocate in that time, each still under RLIMIT_AS). Every result row names the mechanism
(`memory_limit`). The processes of a sample get oom_score_adj 1000 in every mode, so when the host itself runs out
of memory the kernel kills a sample, not the evaluator. docs/SANDBOX.md has the table.
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CGROUP_V2 = "cgroup-v2"
CGROUP_V1 = "cgroup-v1"
ACCOUNTING = "accounting"
ACCOUNTING_PERIOD_S = 0.05
# Runs as the first program of every sandbox launch, before the uid drop: joins the sample's cgroups (their
# cgroup.procs files are the arguments after the count) and marks the whole tree as the OOM killer's first choice.
_JOIN_SCRIPT = ('echo 1000 > /proc/self/oom_score_adj 2>/dev/null; n=$1; shift; '
                'while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"')
_COUNTER = itertools.count()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Backend:
    kind: str  # CGROUP_V2 | CGROUP_V1 | ACCOUNTING
    memory_parent: Path | None = None  # where the per-sample memory cgroups are created
    pids_parent: Path | None = None  # v1: the pids hierarchy's parent (v2: the same dir as memory, when enabled)
    note: str = ""  # why this backend (what was missing for the better ones)


def _own_cgroups() -> dict[str, str]:
    """controller ('' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctrl in (parts[1].split(",") if parts[1] else [""]):
                out[ctrl] = parts[2]
    return out


def _mounts() -> list[tuple[str, str, set[str]]]:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        f = line.split()
        if len(f) >= 4 and f[2] in ("cgroup", "cgroup2"):
            out.append((f[1], f[2], set(f[3].split(","))))
    return out


def _usable(parent: Path, limit_file: str) -> bool:
    """Can we create a child cgroup here and set its memory limit?"""
    probe = parent / f"ssd-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        (probe / limit_file).write_text(str(64 << 20))
        return True
    except OSError:
        return False
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def _detect_v2(own: dict[str, str], mounts) -> Backend | None:
    if "" not in own:
        return None
    for mnt, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        parent = Path(mnt) / own[""].lstrip("/")
        try:
            controllers = (parent / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if "memory" not in controllers:
            continue
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        for ctrl in ("memory", "pids"):
            if ctrl not in enabled and ctrl in controllers:
                try:  # refused (EBUSY) when our cgroup holds processes and is not the root: then it is not ours
                    (parent / "cgroup.subtree_control").write_text(f"+{ctrl}")
                except OSError:
                    pass
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if "memory" in enabled and _usable(parent, "memory.max"):
            return Backend(CGROUP_V2, parent, parent if "pids" in enabled else None, f"cgroup v2 under {parent}")
    return None


def _detect_v1(own: dict[str, str], mounts) -> Backend | None:
    memory = pids = None
    for mnt, fstype, opts in mounts:
        if fstype != "cgroup":
            continue
        if "memory" in opts and "memory" in own:
            memory = Path(mnt) / own["memory"].lstrip("/")
        if "pids" in opts and "pids" in own:
            pids = Path(mnt) / own["pids"].lstrip("/")
    if memory is None or not _usable(memory, "memory.limit_in_bytes"):
        return None
    if pids is not None and not _usable(pids, "pids.max"):
        pids = None
    return Backend(CGROUP_V1, memory, pids, f"cgroup v1 under {memory}")


def detect_backend() -> Backend:
    """The best memory-ceiling mechanism this host offers to this process (probed once; sandbox threads share it)."""
    with _LOCK:
        return _detect_backend()


@lru_cache(maxsize=1)
def _detect_backend() -> Backend:
    own, mounts = _own_cgroups(), _mounts()
    backend = _detect_v2(own, mounts) or _detect_v1(own, mounts)
    if backend is not None:
        return backend
    return Backend(ACCOUNTING, note="no writable cgroup with the memory controller (run as root, or inside a "
                                    "delegated cgroup v2 sub-tree, e.g. systemd-run --user --scope -p Delegate=yes)")


class SampleCgroup:
    """The cgroup(s) of one sample: created before the launch, joined by the launch itself, removed afterwards."""

    def __init__(self, backend: Backend, limit_bytes: int, max_procs: int):
        self.backend = backend
        with _LOCK:
            name = f"ssd-sample-{os.getpid()}-{next(_COUNTER)}"
        self.dirs: list[Path] = []
        v2 = backend.kind == CGROUP_V2
        mem = backend.memory_parent / name
        mem.mkdir()
        self.dirs.append(mem)
        self.memory_dir = mem
        if v2:
            _write_optional(mem / "memory.swap.max", "0")
            (mem / "memory.max").write_text(str(limit_bytes))
            _write_optional(mem / "pids.max", str(max_procs))
        else:
            (mem / "memory.limit_in_bytes").write_text(str(limit_bytes))
            _write_optional(mem / "memory.memsw.limit_in_bytes", str(limit_bytes))
            if backend.pids_parent is not None:
                pids = backend.pids_parent / name
                pids.mkdir()
                self.dirs.append(pids)
                (pids / "pids.max").write_text(str(max_procs))

    def join_prefix(self) -> list[str]:
        return join_prefix([str(d / "cgroup.procs") for d in self.dirs])

    def oom_killed(self) -> bool:
        """Did the kernel kill a process of this sample at the memory ceiling?"""
        name = "memory.events" if self.backend.kind == CGROUP_V2 else "memory.oom_control"
        try:
            text = (self.memory_dir / name).read_text()
        except OSError:
            return False
        fields = dict(line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)
        if fields.get("oom_kill", "0") != "0" or fields.get("oom", "0") != "0":
            return True
        if self.backend.kind == CGROUP_V1:  # kernels without oom_kill in oom_control: the limit was hit
            return _read_int(self.memory_dir / "memory.failcnt") > 0 and fields.get("under_oom", "0") != "0"
        return False

    def remove(self) -> None:
        """Kill whatever is left in the cgroups and remove them (retried briefly while the kernel releases them)."""
        for d in self.dirs:
            kill = d / "cgroup.kill"
            if kill.exists():
                _write_optional(kill, "1")
            for _ in range(100):
                pids = _pids_in(d)
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.01)


def join_prefix(procs_files: list[str]) -> list[str]:
    """argv prefix that joins the given cgroups (may be none) and sets oom_score_adj 1000, then execs the rest."""
    return ["/bin/sh", "-c", _JOIN_SCRIPT, "ssd-sandbox", str(len(procs_files)), *procs_files]


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of `root_pid` and all its descendants (the accounting fallback's measure)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 22:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * page
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total


def _pids_in(d: Path) -> list[int]:
    try:
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _write_optional(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError:
        pass
