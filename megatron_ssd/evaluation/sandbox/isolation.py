"""Choosing and building the isolation layer around one sandboxed run.

Two modes, and every result row names the one it ran under:

- ``bwrap`` (preferred): bubblewrap with every namespace unshared (user, pid, net, ipc, uts, cgroup), a new session,
  a cleared environment, read-only binds of /usr (and the /bin, /lib, /lib64, /sbin links or dirs), a private /dev,
  a size-capped tmpfs as the only writable work dir (/tmp), a read-only root, and uid/gid 65534 inside. When the
  evaluator runs as root it first drops to uid/gid 65534 *outside* too, so bwrap runs unprivileged: the sandbox is
  then a real unprivileged user (RLIMIT_NPROC is enforced; a root-mapped user namespace would be exempt from it).
  No /proc, no /etc, no network, no home directory is visible.
- ``fallback-rlimits``: when bwrap or unprivileged user namespaces are unavailable. A plain subprocess in a new
  session, uid/gid 65534 when we are root, rlimits set by the harness, a private temporary work dir. It has no
  filesystem, network or pid isolation; it is announced loudly (a warning, and ``isolation`` in every row).

Rlimits (address space, CPU, processes, file size, open files) are applied inside by the harness
(`megatron_ssd/evaluation/harness.py`) before any candidate code runs; see `SandboxConfig` for the values.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...errors import SSDError

BWRAP = "bwrap"
FALLBACK = "fallback-rlimits"
SYSTEM_DIRS = ("/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin")
SANDBOX_WORKDIR = "/tmp"
# -I: isolated mode (no PYTHON* variables, no user site, no script dir on sys.path). -S: no `site` module, so the
# candidate sees the standard library only, identically on every host, and no distribution hook runs at start-up
# (Debian's sitecustomize imports apport's crash handler, ~0.1 s per process).
PYTHON_FLAGS = ("-I", "-S")


class IsolationWarning(UserWarning):
    """Emitted when samples are executed without bubblewrap."""


@dataclass(frozen=True)
class Isolation:
    mode: str  # BWRAP or FALLBACK
    python: str  # the interpreter that runs inside (the system python, never the venv)
    bwrap: str | None = None
    uid: int | None = None  # drop to this uid/gid before starting (None: keep ours, we are not root)
    gid: int | None = None
    note: str = ""  # why this mode was chosen
    setpriv: str | None = None  # util-linux setpriv, used for the uid drop when present (see `launch_prefix`)


_CACHE: dict[tuple, Isolation] = {}
_LOCK = threading.Lock()


def detect(requested: str = "auto", python: str = "/usr/bin/python3", uid: int = 65534, gid: int = 65534,
           tmpfs_bytes: int = 64 << 20, bwrap: str | None = None) -> Isolation:
    """Pick the isolation mode once per process (probing bwrap costs one sandboxed run).

    requested: "auto" (bwrap when it works, else the fallback with a warning), "bwrap" (fail if it does not work),
    or "fallback" (skip bwrap; for hosts where it cannot run and for testing the fallback itself).
    bwrap: the bubblewrap executable (default: `bwrap` on PATH, else /usr/bin/bwrap).
    """
    key = (requested, python, uid, gid, tmpfs_bytes, bwrap)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        iso = _detect(requested, python, uid, gid, tmpfs_bytes, bwrap)
        _CACHE[key] = iso
    if iso.mode == FALLBACK:
        warnings.warn(f"SANDBOX IS DEGRADED: running model-written code WITHOUT bubblewrap ({iso.note}). Only rlimits"
                      f"{', a uid drop' if iso.uid is not None else ''} and a new session protect this machine; "
                      "there is no filesystem, network or process isolation. Install bubblewrap "
                      "(apt-get install bubblewrap) and allow unprivileged user namespaces.", IsolationWarning,
                      stacklevel=2)
    return iso


def _detect(requested: str, python: str, uid: int, gid: int, tmpfs_bytes: int, bwrap: str | None) -> Isolation:
    if requested not in ("auto", "bwrap", "fallback"):
        raise SSDError(f"sandbox isolation {requested!r}: choose auto, bwrap or fallback.")
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise SSDError(f"the sandbox runs candidates with the system interpreter {python}, which is missing; install "
                       "python3 from the OS packages (the virtualenv's python is never used inside the sandbox).")
    root = os.geteuid() == 0
    drop_uid, drop_gid = (uid, gid) if root else (None, None)
    setpriv = (shutil.which("setpriv") or None) if root else None
    if requested == "fallback":
        return Isolation(FALLBACK, python, None, drop_uid, drop_gid, "fallback requested", setpriv)
    if bwrap is None:
        bwrap = shutil.which("bwrap") or ("/usr/bin/bwrap" if Path("/usr/bin/bwrap").exists() else None)
    elif not Path(bwrap).is_file():
        bwrap = None
    problem = "bwrap is not installed" if bwrap is None else None
    if bwrap is not None:
        iso = Isolation(BWRAP, python, bwrap, drop_uid, drop_gid, "bwrap probe succeeded", setpriv)
        problem = _probe(iso, tmpfs_bytes)
        if problem is None:
            return iso
    if requested == "bwrap":
        raise SSDError(f"sandbox isolation=bwrap was requested but {problem}. Install bubblewrap and allow "
                       "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / "
                       "user.max_user_namespaces > 0), or set isolation=auto to fall back loudly.")
    return Isolation(FALLBACK, python, None, drop_uid, drop_gid, problem or "bwrap unavailable", setpriv)


def _probe(iso: Isolation, tmpfs_bytes: int) -> str | None:
    argv = launch_prefix(iso) + bwrap_argv(iso, tmpfs_bytes, [iso.python, *PYTHON_FLAGS, "-c",
                                                                "import sys; sys.stdout.write('ok')"])
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                              **popen_identity(iso))
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not be started ({exc})"
    if proc.returncode != 0 or proc.stdout != b"ok":
        err = proc.stderr.decode("utf-8", "replace").strip()[:300]
        return f"the bwrap probe failed (exit {proc.returncode}: {err or 'no output'})"
    return None


def launch_prefix(iso: Isolation) -> list[str]:
    """Argv prefix that drops to the sandbox uid/gid (with no_new_privs) before exec, when setpriv exists.

    Preferred over Popen(user=...): CPython cannot use vfork when it must change the uid itself, and forking a large
    evaluator process (e.g. one holding a model) for every sample is slow; no_new_privs additionally stops setuid
    binaries from regaining privileges in the fallback mode.
    """
    if iso.uid is None or iso.setpriv is None:
        return []
    return [iso.setpriv, f"--reuid={iso.uid}", f"--regid={iso.gid}", "--clear-groups", "--no-new-privs", "--"]


def popen_identity(iso: Isolation) -> dict:
    """Popen keyword arguments for the uid drop when `launch_prefix` cannot do it (no setpriv on this host)."""
    if iso.uid is None or iso.setpriv is not None:
        return {}
    return {"user": iso.uid, "group": iso.gid, "extra_groups": []}


def bwrap_argv(iso: Isolation, tmpfs_bytes: int, inner: list[str]) -> list[str]:
    argv = [iso.bwrap or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--clearenv", "--ro-bind", "/usr", "/usr"]
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            argv += ["--ro-bind", d, d]
    argv += ["--dev", "/dev", "--size", str(int(tmpfs_bytes)), "--tmpfs", SANDBOX_WORKDIR, "--remount-ro", "/",
             "--chdir", SANDBOX_WORKDIR, "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", SANDBOX_WORKDIR,
             "--setenv", "TMPDIR", SANDBOX_WORKDIR, "--setenv", "LANG", "C.UTF-8", "--uid", "65534", "--gid", "65534",
             "--hostname", "sandbox", "--"]
    return argv + inner


def fallback_env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
