"""One owner per run directory: an advisory lock held by every process that works on it.

Two stages of one run directory running at once (a second `ssd` in another terminal, a rerun while the ranks of
a killed run still train) corrupt it silently, so the command that runs stages owns the run directory:

    <run>/.ssd.lock      flock LOCK_EX by the owning command (LOCK_SH by the engine tasks of a data-parallel
                         `sample` launched by Slurm, which share the run); its content names the owner
    <run>/.ssd.members   flock LOCK_SH by every process of the owner's tree: the owner, forked children (they
                         inherit the open file), and the processes started anew (torchrun ranks), which re-take it
                         with `join_run()` from the environment the owner exported; its lines ("pid start-time
                         token") record those and vLLM's engine core and workers, so that a takeover can end them
    <run>/.ssd.scratch   files outside the run directory its processes created (vLLM's shared memory), to remove
                         when the run dies without cleaning up

A new owner needs `.ssd.lock` exclusively *and* `.ssd.members` free, so it waits for neither a live owner nor
the orphans of a dead one. The kernel drops a flock when its last holder exits, so a kill -9 never leaves a lock
behind; what it leaves is the owner's record, the temporary files of its atomic writes and its scratch files,
which the next owner removes and reports. Children started by an owner die with it (`die_with_parent`), so a
killed `ssd` stops training and its vLLM engines within seconds instead of leaving them running re-parented to
PID 1. Should one survive anyway (a parent-death signal is lost when its process re-parents before asking for it),
the next owner ends the members its dead predecessor recorded (pid and start time, so a reused pid is never hit)
and says so. Their environment cannot name them: vLLM's `setproctitle` overwrites what /proc/<pid>/environ shows.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config.schema import SSDConfig
from .errors import SSDError

LOCK_FILE = ".ssd.lock"
MEMBERS_FILE = ".ssd.members"
SCRATCH_FILE = ".ssd.scratch"
ENV_DIR = "SSD_RUN_LOCK_DIR"
ENV_TOKEN = "SSD_RUN_LOCK_TOKEN"
# Temporaries of rundir.atomic_write_* (".name.XXXXXXXX.tmp"), rundir.atomic_path (".name.tmp-PID") and the
# checkpoint writers (".iter_XXXXXXX.tmp"): only ever renamed into place, so any that exist without an owner
# belong to a process that died.
TEMP_RE = re.compile(r"^\..+\.tmp(-\d+)?$")
_PR_SET_PDEATHSIG = 1
SURVIVOR_WAIT_S = 10.0  # how long a takeover waits for the killed survivors of a dead owner to exit
# Filesystems without flock support (some NFS/Lustre mounts); the run proceeds unlocked with a warning.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)

log = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------- the owner lock
class _Held:
    """What this process holds on one run directory (re-entered by nested `run_lock` blocks)."""

    def __init__(self, path: Path, lock_fd: int | None, members_fd: int | None, token: str, saved_env: dict):
        self.path, self.lock_fd, self.members_fd, self.token, self.saved_env = (
            path, lock_fd, members_fd, token, saved_env)
        self.depth = 1


_held: dict[Path, _Held] = {}
_joined: dict[Path, int] = {}  # run dir -> members fd of a process that joined its owner (kept until exit)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, cfg: SSDConfig | None = None) -> Iterator[None]:
    """Own `run_dir` for the block (re-entrant): refuse with the holder's pid and command when another process
    owns it or orphans of an earlier owner still run; take over what a dead owner left (and say so). The engine
    tasks of a Slurm-launched data-parallel `sample` (`sample.engine_rank >= 0`) share the run instead."""
    path = Path(run_dir).resolve()
    if path in _held:
        _held[path].depth += 1
    else:
        shared = cfg is not None and cfg.stage == "sample" and cfg.sample.engine_rank >= 0
        _held[path] = _acquire(path, shared=shared)
    try:
        yield
    finally:
        held = _held[path]
        held.depth -= 1
        if held.depth == 0:
            del _held[path]
            _release(held)


def _acquire(path: Path, *, shared: bool) -> _Held:
    path.mkdir(parents=True, exist_ok=True)
    lock_fd = _open(path / LOCK_FILE)
    try:
        if not _flock(lock_fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX):
            raise SSDError(_busy_message(path, lock_fd))
        members_fd = _open(path / MEMBERS_FILE)
        try:
            if not shared:
                ended = end_survivors(path, _read_record(lock_fd))
                if not _flock(members_fd, fcntl.LOCK_EX):
                    raise SSDError(_orphans_message(path))
                _take_over(path, lock_fd, ended)
            # Shared from here on so the processes of this tree can re-take it (a conversion; only an owner, which
            # holds .ssd.lock exclusively, ever converts, so nobody can slip in between).
            if not _flock(members_fd, fcntl.LOCK_SH):
                raise SSDError(_orphans_message(path))
        except BaseException:
            os.close(members_fd)
            raise
    except BaseException:
        os.close(lock_fd)
        raise
    token = "" if shared else secrets.token_hex(8)  # engine tasks share the run: their children check no owner
    if not shared:
        _write_record(lock_fd, {"pid": os.getpid(), "host": platform.node(), "command": _command(os.getpid()),
                                "started": _now(), "token": token})
    saved = {k: os.environ.get(k) for k in (ENV_DIR, ENV_TOKEN)}
    os.environ[ENV_DIR], os.environ[ENV_TOKEN] = str(path), token  # what children started from here join
    return _Held(path, lock_fd, members_fd, token, saved)


def _release(held: _Held) -> None:
    for key, value in held.saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if held.token:  # exclusive: a clean exit leaves no record, so the next owner has nothing to take over
        with contextlib.suppress(OSError):
            os.ftruncate(held.lock_fd, 0)
    for fd in (held.members_fd, held.lock_fd):
        # LOCK_UN releases the lock for forked children sharing this open file too (an idle vLLM engine).
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise storage_error(exc) or exc


def _flock(fd: int, kind: int) -> bool:
    """Non-blocking flock; False when another process holds a conflicting lock."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        log.warning("this filesystem does not support file locks (%s); nothing stops two commands from running "
                    "stages of the same run directory at once.", exc.strerror)
        return True


# -------------------------------------------------------------------------------------- refusals and takeover
def _busy_message(path: Path, lock_fd: int) -> str:
    record = _read_record(lock_fd)
    holders = _local_holders(path / LOCK_FILE)
    if record.get("pid") and record.get("host") in (None, platform.node()) and record["pid"] not in holders:
        holders.setdefault(record["pid"], _command(record["pid"]))
    if record.get("pid") and not holders:
        who = (f"pid {record['pid']} on {record.get('host', '?')} ({record.get('command', '?')}, since "
               f"{record.get('started', '?')})")
    else:
        who = _describe(holders) or "another process (of a data-parallel sample, or on another host)"
    return (f"{path} is in use by {who}: one run directory takes one command at a time, or its stages would "
            f"overwrite each other. Wait for it to finish, or stop it (kill <pid>) and rerun to resume; use another "
            f"run_dir for a separate experiment. Nothing was written.")


def _orphans_message(path: Path) -> str:
    who = _describe(_local_holders(path / MEMBERS_FILE)) or "processes on another host"
    return (f"{path}: processes of an earlier command on this run directory are still running: {who}. They stop "
            f"within seconds of losing their parent; wait and rerun, or stop them (kill <pid>). Nothing was written.")


def _take_over(path: Path, lock_fd: int, ended: dict[int, str]) -> None:
    """As the new exclusive owner: remove what a dead owner left and say so."""
    record = _read_record(lock_fd)
    temps = remove_stale_temps(path)
    scratch = remove_scratch(path)
    with contextlib.suppress(OSError):
        os.truncate(path / MEMBERS_FILE, 0)  # its members are gone; this owner's record theirs anew
    if ended:
        _say("%s: ended %d process(es) of its previous owner (pid %s) that were still running: %s.", path,
             len(ended), record.get("pid", "?"), _describe(ended))
    if record.get("pid") or temps or scratch:
        before = (f"its previous owner, pid {record['pid']} ({record.get('command', '?')}, started "
                  f"{record.get('started', '?')}), stopped without releasing it" if record.get("pid")
                  else "it was left by a process that stopped")
        _say("%s: %s; taking it over. Removed %d temporary file(s)/folder(s) of unfinished writes%s and "
             "%d scratch file(s) of its engines.", path, before, len(temps),
             f" ({', '.join(str(t.relative_to(path)) for t in temps[:5])}{', ...' if len(temps) > 5 else ''})"
             if temps else "", len(scratch))


def _say(fmt: str, *args: Any) -> None:
    """A takeover's report, a warning the user must see: logged, and written to stderr where logging would drop
    it (no handler, or a logging config that disabled this logger or raised its level)."""
    if log.disabled or not log.isEnabledFor(logging.WARNING) or not log.hasHandlers():
        print(fmt % args, file=sys.stderr, flush=True)
    else:
        log.warning(fmt, *args)


def end_survivors(run_dir: Path, record: dict[str, Any]) -> dict[int, str]:
    """SIGKILL the recorded members of the dead owner `record` (its token, its host) that still run, wait for them
    to exit, and remove the shared memory they had mapped once nothing else maps it; pid -> command of those ended.
    Call only while holding `.ssd.lock` exclusively (no owner is alive). A clean exit leaves no record: nothing to end.
    SIGKILL, not SIGTERM: vLLM's engine core drains on SIGTERM, a training rank would checkpoint into the run."""
    token = record.get("token")
    if not token or record.get("host") not in (None, platform.node()):
        return {}
    survivors = {pid: _command(pid) for pid in recorded_members(run_dir, token) if pid != os.getpid()}
    if not survivors:
        return {}
    shm = {p for pid in survivors for p in _mapped_files(pid) if p.startswith("/dev/shm/")}
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + SURVIVOR_WAIT_S
    while any(process_alive(pid) for pid in survivors) and time.monotonic() < deadline:
        time.sleep(0.05)
    busy = files_in_use()
    for p in sorted(shm - busy):
        with contextlib.suppress(OSError):
            os.unlink(p)
    return survivors


def recorded_members(run_dir: str | os.PathLike, token: str) -> list[int]:
    """Live processes recorded in `<run>/.ssd.members` under `token` whose start time still matches the record."""
    try:
        lines = (Path(run_dir) / MEMBERS_FILE).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == token and parts[0].isdigit() and parts[1].isdigit():
            pid = int(parts[0])
            if process_start_time(pid) == int(parts[1]) and process_alive(pid) and pid not in out:
                out.append(pid)
    return out


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid, a name for a
    process that a reused pid cannot take."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Running, not a zombie (an init that does not reap keeps those around)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def remove_stale_temps(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of atomic writes under `run_dir` (call only as its exclusive owner)."""
    removed = []
    for root, dirs, files in os.walk(run_dir):
        for name in [d for d in dirs if TEMP_RE.match(d)]:
            dirs.remove(name)
            shutil.rmtree(Path(root) / name, ignore_errors=True)
            removed.append(Path(root) / name)
        for name in files:
            if TEMP_RE.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(Path(root) / name)
                removed.append(Path(root) / name)
    return sorted(removed)


def _read_record(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 65536, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


def _write_record(fd: int, record: dict[str, Any]) -> None:
    # In place, not by rename: the lock belongs to this inode.
    data = (json.dumps(record) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


# ------------------------------------------------------------------------------------- the owner's children
def join_run(sig: int = signal.SIGTERM, parent: int | None = None, *, hold: bool = True) -> Path | None:
    """In a process started by an owner (a training rank, an engine worker): hold the run directory's members
    lock for this process's life, record this process as a member, and die with the parent (`sig`; `parent` as in
    `die_with_parent`). A no-op outside a run or in the owner itself.

    `hold=False` records without holding the lock: for vLLM's engine processes, which the owner caches across its
    `run_lock` blocks (a stage run on its own re-takes the lock while the engine of the previous one still idles);
    a takeover ends them from the record (`end_survivors`)."""
    run_dir = os.environ.get(ENV_DIR)
    if not run_dir:
        return None
    path = Path(run_dir)
    if path in _held or path in _joined:
        return path
    fd = _open(path / MEMBERS_FILE)
    if not _flock(fd, fcntl.LOCK_SH):
        os.close(fd)
        raise SSDError(f"{path}: another command is taking this run directory over; this process "
                       f"(pid {os.getpid()}) of an earlier one stops.")
    owner, token = _read_record_path(path / LOCK_FILE), os.environ.get(ENV_TOKEN)
    if token and owner.get("token") != token:
        os.close(fd)
        raise SSDError(f"{path} now belongs to pid {owner.get('pid')} ({owner.get('command', '?')}); this process "
                       f"(pid {os.getpid()}) was started by an earlier owner and stops.")
    die_with_parent(sig, parent)
    record_member(path, token or "")
    if hold:
        _joined[path] = fd
    else:
        os.close(fd)
    return path


def record_member(run_dir: Path, token: str, pid: int | None = None) -> None:
    """Append "pid start-time token" to `<run>/.ssd.members` (one short O_APPEND write: lines never interleave)."""
    pid = os.getpid() if pid is None else pid
    start = process_start_time(pid)
    if start is None or not token:
        return
    with contextlib.suppress(OSError):
        fd = os.open(run_dir / MEMBERS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, f"{pid} {start} {token}\n".encode())
        finally:
            os.close(fd)


def _read_record_path(p: Path) -> dict[str, Any]:
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        return _read_record(fd)
    finally:
        os.close(fd)


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux PR_SET_PDEATHSIG; survives exec).

    Usable as a `preexec_fn` with `parent=os.getpid()` of the launcher, which closes the race of a parent dying
    before the call. The signal follows the death of the parent *thread* that started the child, so start
    children from a thread that lives as long as they should."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def forked_children_die_with_parent(sig: int = signal.SIGTERM) -> None:
    """From now on, children this process forks from its main thread (vLLM's engine core and workers where vLLM
    forks them, which run no code of ours: its plugins load once per interpreter, before the fork) get `sig` when
    it dies, and are recorded as members of the run (for a takeover). Forks from other threads are left alone: the
    signal would follow the death of that thread, not of the process. The hook is inherited by forked children."""
    global _fork_hook
    if _fork_hook or not hasattr(os, "register_at_fork"):
        return
    _fork_hook = True
    forking: dict[str, Any] = {}

    def before() -> None:
        forking.update(parent=os.getpid(), main=threading.current_thread() is threading.main_thread())

    def in_child() -> None:
        if forking.get("main"):
            die_with_parent(sig, parent=forking["parent"])
            run_dir = os.environ.get(ENV_DIR)
            if run_dir:
                record_member(Path(run_dir), os.environ.get(ENV_TOKEN, ""))

    os.register_at_fork(before=before, after_in_child=in_child)


_fork_hook = False


# ----------------------------------------------------------------------------------------- scratch files
def register_scratch(paths: Iterable[str | os.PathLike]) -> None:
    """Record files outside the run directory (shared memory, rendezvous files) that a process of the current
    run created, so the next owner removes them if this run dies before `remove_scratch` runs."""
    run_dir = os.environ.get(ENV_DIR)
    lines = "".join(f"{p}\n" for p in paths)
    if not run_dir or not lines:
        return
    with open(Path(run_dir) / SCRATCH_FILE, "a") as f:  # appends of one short write do not interleave
        f.write(lines)


def remove_scratch(run_dir: str | os.PathLike, only: Iterable[str | os.PathLike] | None = None) -> list[Path]:
    """Remove recorded scratch files (all, or those in `only`) that no live process has open or mapped."""
    registry = Path(run_dir) / SCRATCH_FILE
    recorded = [Path(line) for line in registry.read_text().splitlines() if line.strip()] if registry.is_file() else []
    wanted = {Path(p) for p in only} if only is not None else set(recorded)
    recorded = list(dict.fromkeys([*recorded, *sorted(wanted)]))
    busy = files_in_use()
    removed, kept = [], []
    for p in recorded:
        if p not in wanted or str(p) in busy:
            kept.append(p)
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    if kept and registry.parent.is_dir():
        registry.write_text("".join(f"{p}\n" for p in dict.fromkeys(kept)))
    else:
        registry.unlink(missing_ok=True)
    return removed


def files_in_use() -> set[str]:
    """Paths that some process we can inspect has open or memory-mapped (from /proc)."""
    busy: set[str] = set()
    for pid_dir in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            busy |= _mapped_files(int(pid_dir.name))
    return busy


def _mapped_files(pid: int) -> set[str]:
    """Paths process `pid` has open or memory-mapped (empty when it is gone or not ours to inspect)."""
    out: set[str] = set()
    pid_dir = Path(f"/proc/{pid}")
    with contextlib.suppress(OSError):
        for fd in (pid_dir / "fd").iterdir():
            with contextlib.suppress(OSError):
                out.add(os.readlink(fd))
    with contextlib.suppress(OSError):
        for line in (pid_dir / "maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                out.add(parts[5].removesuffix(" (deleted)"))
    return out


# ------------------------------------------------------------------------------------------------ helpers
def _local_holders(lock_path: Path) -> dict[int, str]:
    """pid -> command line of the processes on this host holding a flock on `lock_path` (from /proc/locks)."""
    try:
        inode = lock_path.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return {}
    out: dict[int, str] = {}
    for line in lines:
        f = line.split()
        if "->" in f[:2] or len(f) < 6 or f[1] != "FLOCK":  # waiters, POSIX locks
            continue
        pid, dev_ino = int(f[4]), f[5]
        if dev_ino.rsplit(":", 1)[-1] == str(inode):
            out[pid] = _command(pid)
    return out


def _describe(holders: dict[int, str]) -> str:
    return ", ".join(f"pid {pid} ({cmd})" for pid, cmd in sorted(holders.items()))


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    cmd = " ".join(" ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a).split())  # one line
    return cmd if len(cmd) <= 200 else cmd[:197] + "..."


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def storage_error(exc: OSError) -> SSDError | None:
    """A read-only or full disk as a user error (one paragraph naming the path), or None for other OSErrors."""
    reasons = {errno.EROFS: "is on a read-only filesystem", errno.ENOSPC: "is on a full disk",
               errno.EDQUOT: "is over its disk quota"}
    if exc.errno not in reasons:
        return None
    where = exc.filename or "a file of the run"
    return SSDError(f"cannot write {where}: it {reasons[exc.errno]} ({exc.strerror}). Free space or choose a "
                    "writable location (run_dir=..., runs_root=..., model.cache_dir=...) and rerun; finished stages "
                    "and shards are kept.")
