"""Folders computed once per content key and shared by every run that needs them.

Two things are expensive, identical across the points of a sweep, and live outside any one run directory: the
base model's evaluation (`generation/base_eval_cache.py`) and its HF -> Megatron conversion
(`models/converted_cache.py`). Both follow one protocol, kept here so that it has one implementation:

- a key hashes everything that decides the folder's bytes (`content_key`);
- an exclusive file lock per key (`locked`, taken in key order so that two runs never deadlock) makes concurrent
  runs wait for the first one instead of all computing the same folder;
- a folder enters the cache, and leaves it for a run directory, only through a rename (`publish`, `placing`), so a
  killed run publishes nothing half-written and a run never sees half a cache entry.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from filelock import FileLock

from .rundir import atomic_path


def content_key(blob: Any) -> str:
    """A short, stable key of a JSON-able description (keys sorted; anything else by its str)."""
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


@contextlib.contextmanager
def locked(root: str | os.PathLike, keys: Iterable[str]) -> Iterator[None]:
    """Hold the exclusive lock of each key under `root` (`<root>/<key>.lock`), acquired in sorted order."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for key in sorted(set(keys)):
            stack.enter_context(FileLock(str(root / f"{key}.lock")))
        yield


def link_tree(src: Path, dst: Path) -> None:
    """Recreate `src` at `dst` with hard links; copies the files a hard link cannot reach (another filesystem)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copy2(path, target)


@contextlib.contextmanager
def placing(entry: Path, dst: str | os.PathLike, *, link: bool) -> Iterator[Path]:
    """Build `dst` from a cache entry in a temporary folder the body may still edit, then rename it into place.

    `link=True` hard-links the files (for read-only folders such as a checkpoint: no bytes copied; a file the body
    rewrites must be unlinked first, or the cache's copy changes too); `link=False` copies them.
    """
    with atomic_path(dst) as tmp:
        if link:
            link_tree(Path(entry), tmp)
        else:
            shutil.copytree(entry, tmp)
        yield tmp


def publish(src: str | os.PathLike, entry: str | os.PathLike) -> None:
    """Copy a finished folder into the cache as `entry`, whole or not at all."""
    with atomic_path(entry) as tmp:
        shutil.copytree(src, tmp)
