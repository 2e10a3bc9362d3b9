"""Choosing and building the isolation layer around one sandboxed run.

`eval.isolation` (and `SandboxConfig.isolation`) names what the user asked for; every result row names the mode a
sample actually ran under. docs/SANDBOX.md has the table of what each mode guarantees.

- ``bwrap`` (the default, and required unless the user opts out by name): bubblewrap with every namespace unshared
  (user, pid, net, ipc, uts, cgroup), a new session, a cleared environment, read-only binds of /usr (and the /bin,
  /lib, /lib64, /sbin links or dirs), a minimal read-only /dev (null, zero, full, random, urandom, tty) with a
  size-capped tmpfs on /dev/shm (none when its size is 0), a size-capped tmpfs as the only other writable dir (/tmp),
  a read-only root and uid/gid 65534 inside. When the evaluator runs as root it first drops to uid/gid 65534
  *outside* too, so bwrap runs unprivileged (RLIMIT_NPROC is enforced; a root-mapped user namespace is exempt).
  No /proc, no /etc but /etc/alternatives (read-only symlinks into /usr), no network, no home directory is
  visible. Without a working bwrap, evaluation stops before any sample runs with one paragraph naming the fix
  (`scripts/bootstrap.sh`) and the opt-in.
- ``rlimits-only`` (only when asked for by name; rows say ``fallback-rlimits``): a plain subprocess in a new
  session, uid/gid 65534 when we are root, rlimits set by the harness, a private temporary work dir. It has no
  filesystem, network or pid isolation.

Rlimits (address space, CPU, processes, file size, open files) are applied inside by the harness (`harness.py`)
before any candidate code runs; the memory ceiling of a sample's whole process tree is `cgroups.py`'s.
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
FALLBACK = "fallback-rlimits"  # the mode recorded in result rows when eval.isolation=rlimits-only
RLIMITS_ONLY = "rlimits-only"  # the explicit opt-in to running model-written code without bubblewrap
REQUESTS = (BWRAP, RLIMITS_ONLY)
_ALIASES = {"fallback": RLIMITS_ONLY}  # the old spelling, still accepted by the sandbox API (benchmarks)
BOOTSTRAP_HINT = ("run `bash scripts/bootstrap.sh` (it installs bubblewrap as root or with passwordless sudo on "
                  "Debian/Ubuntu and checks user namespaces), or `sudo apt-get install bubblewrap` / `sudo dnf install "
                  "bubblewrap`")
OPT_IN_HINT = ("To run model-written code WITHOUT filesystem, network and process isolation instead, opt in by name: "
               "eval.isolation=rlimits-only (ssd-eval-samples: --isolation rlimits-only); every result row and "
               "the summary then record it.")
SYSTEM_DIRS = ("/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin")
SANDBOX_WORKDIR = "/tmp"
# -I: isolated mode (no PYTHON* variables, no user site, no script dir on sys.path). -S: no `site` module, so the
# candidate sees the standard library only, identically on every host, and no distribution hook runs at start-up
# (Debian's sitecustomize imports apport's crash handler, ~0.1 s per process).
PYTHON_FLAGS = ("-I", "-S")


class IsolationWarning(UserWarning):
    """Emitted when samples are executed without bubblewrap (eval.isolation=rlimits-only)."""


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


def detect(requested: str = BWRAP, python: str = "/usr/bin/python3", uid: int = 65534, gid: int = 65534,
           tmpfs_bytes: int = 64 << 20, bwrap: str | None = None, shm_bytes: int = 16 << 20) -> Isolation:
    """Check the isolation mode once per process (probing bwrap costs one sandboxed run of `python -c pass`).

    requested: "bwrap" (the default: raise `SSDError` with the fix when bubblewrap cannot run) or "rlimits-only"
    (skip bwrap, with a warning; the explicit opt-in). bwrap: the executable (default: `bwrap` on PATH, else
    /usr/bin/bwrap).
    """
    requested = _ALIASES.get(requested, requested)
    key = (requested, python, uid, gid, tmpfs_bytes, bwrap, shm_bytes)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        iso = _detect(requested, python, uid, gid, tmpfs_bytes, bwrap, shm_bytes)
        _CACHE[key] = iso
    if iso.mode == FALLBACK:
        warnings.warn(f"SANDBOX IS DEGRADED: eval.isolation=rlimits-only runs model-written code WITHOUT bubblewrap. "
                      f"Only rlimits{', a uid drop' if iso.uid is not None else ''} and a new session protect this "
                      "machine; there is no filesystem, network or process isolation.", IsolationWarning,
                      stacklevel=2)
    return iso


def _detect(requested: str, python: str, uid: int, gid: int, tmpfs_bytes: int, bwrap: str | None,
            shm_bytes: int) -> Isolation:
    if requested not in REQUESTS:
        raise SSDError(f"sandbox isolation {requested!r}: choose {BWRAP} (the default: bubblewrap, required) or "
                       f"{RLIMITS_ONLY} (the explicit opt-in to running samples without bubblewrap).")
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise SSDError(f"the sandbox runs candidates with the system interpreter {python}, which is missing; install "
                       "python3 from the OS packages (the virtualenv's python is never used inside the sandbox).")
    root = os.geteuid() == 0
    drop_uid, drop_gid = (uid, gid) if root else (None, None)
    setpriv = (shutil.which("setpriv") or None) if root else None
    if requested == RLIMITS_ONLY:
        return Isolation(FALLBACK, python, None, drop_uid, drop_gid, "eval.isolation=rlimits-only requested",
                         setpriv)
    if bwrap is None:
        bwrap = shutil.which("bwrap") or ("/usr/bin/bwrap" if Path("/usr/bin/bwrap").exists() else None)
    elif not Path(bwrap).is_file():
        bwrap = None
    if bwrap is None:
        raise SSDError(f"The evaluation sandbox needs bubblewrap (bwrap), which is not installed on this machine, so "
                       f"no sample was run. To fix it, {BOOTSTRAP_HINT}. {OPT_IN_HINT}")
    iso = Isolation(BWRAP, python, bwrap, drop_uid, drop_gid, "bwrap probe succeeded", setpriv)
    problem = _probe(iso, tmpfs_bytes, shm_bytes)
    if problem is not None:
        raise SSDError(f"The evaluation sandbox could not start bubblewrap ({bwrap}), so no sample was run: {problem}. "
                       f"{_probe_fix(problem)} {OPT_IN_HINT}")
    return iso


def _probe_fix(problem: str) -> str:
    """The fix for a failed bwrap probe, from what bwrap said."""
    text = problem.lower()
    if "namespace" in text or "uid map" in text or "permission" in text or "operation not permitted" in text:
        return ("Unprivileged user namespaces are disabled here: allow them (as root: `sysctl -w "
                "kernel.unprivileged_userns_clone=1` on Debian, `sysctl -w user.max_user_namespaces=15000`, and on "
                "Ubuntu 24.04+ `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`); inside a container, "
                "start it with user namespaces allowed (e.g. docker --security-opt seccomp=unconfined "
                "--security-opt apparmor=unconfined). `bash scripts/bootstrap.sh` checks this.")
    return f"Check that `{shutil.which('bwrap') or 'bwrap'} --ro-bind / / true` works; {BOOTSTRAP_HINT}."


def _probe(iso: Isolation, tmpfs_bytes: int, shm_bytes: int) -> str | None:
    argv = launch_prefix(iso) + bwrap_argv(iso, tmpfs_bytes, [iso.python, *PYTHON_FLAGS, "-c",
                                                                "import sys; sys.stdout.write('ok')"], shm_bytes)
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


ALTERNATIVES_DIR = "/etc/alternatives"


def bwrap_argv(iso: Isolation, tmpfs_bytes: int, inner: list[str], shm_bytes: int = 0) -> list[str]:
    """The bwrap command line; /dev holds only bwrap's minimal device nodes and is read-only, /dev/shm is a tmpfs
    of `shm_bytes` (none when 0), /tmp a tmpfs of `tmpfs_bytes`: a sample cannot fill host memory through files."""
    argv = [iso.bwrap or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--clearenv", "--ro-bind", "/usr", "/usr"]
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            argv += ["--ro-bind", d, d]
    # Debian resolves some shared libraries in /usr through /etc/alternatives symlinks (numpy's libblas.so.3):
    # that folder of symlinks, read-only, is all of /etc the sandbox sees.
    argv += ["--ro-bind-try", ALTERNATIVES_DIR, ALTERNATIVES_DIR]
    argv += ["--dev", "/dev"]
    if shm_bytes > 0:
        argv += ["--size", str(int(shm_bytes)), "--perms", "1777", "--tmpfs", "/dev/shm"]
    argv += ["--remount-ro", "/dev"]
    argv += ["--size", str(int(tmpfs_bytes)), "--tmpfs", SANDBOX_WORKDIR, "--remount-ro", "/",
             "--chdir", SANDBOX_WORKDIR, "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", SANDBOX_WORKDIR,
             "--setenv", "TMPDIR", SANDBOX_WORKDIR, "--setenv", "LANG", "C.UTF-8", "--uid", "65534", "--gid", "65534",
             "--hostname", "sandbox", "--"]
    return argv + inner


def fallback_env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
