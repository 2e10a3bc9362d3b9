"""One HF -> Megatron conversion of a base model per (source folder, layout, dtype), shared by every run.

Every run directory trains from its own `<run>/train/base/`, and every point of a sweep starts from the same base
model: converting it again per run costs process start-ups and a full read and write of the weights (7 s for the
embedded default's 135M model, minutes for a 30B one). The conversion is made once in the model cache, next to
the HF folders of `base_model.py`, and placed into each run directory as hard links (a copy where the run
directory is on another filesystem). Nothing is lost by sharing: a checkpoint is read-only once written (training
writes to `<run>/train/ckpt/`), and its sha256 manifest is verified when a rank loads it, so a damaged cache entry
is refused by name in every run that links it. The locking and placing protocol is `shared_cache.py`'s.

The key hashes what decides the converted bytes: the source folder's path and each file's name, size and
modification time (hashing the content of a 60 GB folder would cost more than converting it), and the caller's
converter settings (the train stage passes TP and EP, which the vocab padding depends on, and the dtype; the padding
multiple is the converter's fixed default). An exclusive file lock per key makes concurrent
sweep points wait for the first conversion instead of all converting; an interrupted conversion publishes
nothing (it is written to a temporary folder and renamed).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..rundir import atomic_path, atomic_write_json, read_json
from ..shared_cache import content_key, locked, placing
from . import checkpoint as ckpt
from .convert import SUMMARY


def conversion_key(src: str | os.PathLike, settings: dict[str, Any]) -> str:
    src = Path(src).resolve()
    files = sorted((str(p.relative_to(src)), st.st_size, st.st_mtime_ns)
                   for p in src.rglob("*") if p.is_file() for st in (p.stat(),))
    return content_key({"source": str(src), "files": files, "settings": settings})


def cached_conversion(src: str | os.PathLike, dst: str | os.PathLike, *, cache_dir: str | os.PathLike,
                      settings: dict[str, Any], convert: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Place the conversion of `src` under `settings` at `dst` (which must not hold one), converting at most once
    per key with `convert(folder) -> summary`; returns the summary with `dst`'s paths and `cache_entry`."""
    dst, key = Path(dst), conversion_key(src, settings)
    entry = Path(cache_dir) / key
    with locked(cache_dir, [key]):
        hit = (entry / ckpt.LATEST).is_file() and (entry / SUMMARY).is_file()
        if not hit:
            with atomic_path(entry) as tmp:
                convert(tmp)
        summary = read_json(entry / SUMMARY) or {}
        with placing(entry, dst, link=True) as tmp:
            summary = {**summary, "checkpoint": str(dst / Path(summary.get("checkpoint", "")).name),
                       "cache_entry": str(entry), "cache_hit": hit}
            os.unlink(tmp / SUMMARY)  # a hard link: rewrite this run's copy, never the cache's
            atomic_write_json(tmp / SUMMARY, summary)
    return summary
