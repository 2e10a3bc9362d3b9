"""Megatron checkpoint layout shared by the converter, the trainer and the export stage.

    <root>/
      iter_0000000/                    a megatron-core dist_checkpointing dir, torch_dist backend
        metadata.json  .metadata  common.pt  __<rank>_<n>.distcp
      latest                           text: the directory name of the newest complete iteration,
                                       e.g. "iter_0000500" (a bare number is accepted too)
      latest_checkpointed_iteration.txt   text: the same iteration as a number (Megatron-LM's pointer)

The state dict saved is `{"model": model.sharded_state_dict(), "iteration": N, "checkpoint_version": 3.0}`
(+ whatever else the trainer adds, e.g. "optimizer", "rng_state"); tensor storage is keyed by Megatron's
global ShardedTensor keys, so a checkpoint loads under any TP/PP/EP whose layout divides the model, and the
local spec (CPU) and Transformer Engine spec (GPU) checkpoints are interchangeable. What is not
layout-free is the padded vocabulary size: it is read back from the embedding's global shape
(`checkpoint_info`) and must be passed to `build_gpt_model(padded_vocab_size=...)`.

Writers write the iteration directory under a temporary name, rename it, then update both pointers
(`write_latest`), so `latest` never names an incomplete checkpoint. The last file written into it is
`checksums.sha256` (sha256 of every other file, `sha256sum -c` format): readers verify it, so bytes damaged
after the write are refused by file name instead of loading as garbage weights. Checkpoints written before
checksums existed (no such file) load unverified.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import SSDError
from ..rundir import atomic_write_text, sha256_file

ITER_RE = re.compile(r"^iter_(\d{7,})$")
LATEST = "latest"
LATEST_MEGATRON = "latest_checkpointed_iteration.txt"
EMBEDDING_KEY = "embedding.word_embeddings.weight"
CHECKSUMS = "checksums.sha256"


def load_errors() -> tuple[type[BaseException], ...]:
    """What a failed torch checkpoint read raises: torch's CheckpointException derives from BaseException, so an
    `except Exception` lets it escape as a traceback."""
    from torch.distributed.checkpoint.api import CheckpointException

    return (Exception, CheckpointException)


def iter_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def write_latest(root: str | os.PathLike, iteration: int) -> None:
    """Point both `latest` files at `iter_XXXXXXX` (call after the iteration dir is complete)."""
    root = Path(root)
    atomic_write_text(root / LATEST, iter_dir_name(iteration) + "\n")
    atomic_write_text(root / LATEST_MEGATRON, f"{iteration}\n")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The iteration directory for `path`: an `iter_XXXXXXX` dir itself, or a root with a `latest` pointer.

    Raises SSDError naming the path when there is no pointer or it names a missing directory.
    """
    path = Path(path)
    if not path.exists():
        raise SSDError(f"{path}: no such checkpoint directory.")
    if ITER_RE.match(path.name) or (path / "metadata.json").is_file():
        return path
    for pointer in (LATEST, LATEST_MEGATRON):
        f = path / pointer
        if f.is_file():
            text = f.read_text().strip()
            name = iter_dir_name(int(text)) if text.isdigit() else text
            target = path / name
            if not ITER_RE.match(name) or not target.is_dir():
                raise SSDError(f"{f}: points to {text!r}, but {target} is not a checkpoint directory; "
                               "the checkpoint is incomplete (rerun training or fix the pointer).")
            return target
    found = sorted(p.name for p in path.iterdir() if ITER_RE.match(p.name))
    hint = f" (found {', '.join(found)} without a pointer: pass one of them directly)" if found else ""
    raise SSDError(f"{path}: no '{LATEST}' or '{LATEST_MEGATRON}' pointer; not a finished Megatron checkpoint{hint}.")


def iteration_of(ckpt_dir: Path) -> int:
    m = ITER_RE.match(ckpt_dir.name)
    return int(m.group(1)) if m else 0


def verify_complete(ckpt_dir: str | os.PathLike) -> None:
    """Check a dist checkpoint's files before loading: metadata present, every shard file present and long
    enough, contents matching its checksums. torch's own reader fails later with an opaque error (or a hang on
    some ranks), or not at all when the damaged bytes are weights."""
    d = Path(ckpt_dir)
    for f in ("metadata.json", ".metadata"):
        if not (d / f).is_file():
            raise SSDError(f"{d}: missing {f}; the checkpoint is incomplete or not a torch_dist dist checkpoint.")
    from torch.distributed.checkpoint import FileSystemReader

    try:
        meta = FileSystemReader(str(d)).read_metadata()
    except load_errors() as exc:  # corrupt pickle/truncated file
        raise SSDError(f"{d / '.metadata'}: unreadable ({type(exc).__name__}: {exc}); the checkpoint is corrupt. "
                       f"{_checkpoint_remedy(d)}") from exc
    needed: dict[str, int] = {}
    for info in (meta.storage_data or {}).values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for rel, end in sorted(needed.items()):
        f = d / rel
        if not f.is_file():
            raise SSDError(f"{f}: shard file missing; the checkpoint {d} is incomplete.")
        if f.stat().st_size < end:
            raise SSDError(f"{f}: shard file truncated ({f.stat().st_size} < {end} bytes); the checkpoint {d} is corrupt.")
    verify_checksums(d, what="checkpoint", remedy=_checkpoint_remedy(d))


# ---------------------------------------------------------------------------------------------- checksums
_verified: set[tuple] = set()  # (folder, manifest mtime, file stamps) this process has verified: ranks call it twice


def checksum_names(folder: str | os.PathLike) -> list[str]:
    """Every file under `folder` (relative, sorted) but the checksum manifest itself."""
    d = Path(folder)
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_checksums(folder: str | os.PathLike, digests: dict[str, str] | None = None) -> None:
    """Write `checksums.sha256` (atomically, as the folder's last file) from `digests` or by hashing every file."""
    d = Path(folder)
    if digests is None:
        digests = {name: sha256_file(d / name) for name in checksum_names(d)}
    atomic_write_text(d / CHECKSUMS, "".join(f"{digests[n]}  {n}\n" for n in sorted(digests)))


def write_checksums_collective(folder: str | os.PathLike) -> None:
    """Collective when torch.distributed is up: each rank hashes a strided share of the files, rank 0 writes."""
    import torch.distributed as dist

    names = checksum_names(folder)
    if not (dist.is_available() and dist.is_initialized()):
        write_checksums(folder)
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {n: sha256_file(Path(folder) / n) for n in names[rank::world]}
    parts: list[dict[str, str] | None] = [None] * world
    dist.all_gather_object(parts, mine)
    if rank == 0:
        write_checksums(folder, {n: h for part in parts for n, h in (part or {}).items()})


def verify_checksums(folder: str | os.PathLike, *, what: str, remedy: str) -> bool:
    """Compare every file listed in `folder`'s checksum manifest with its content. False when there is no
    manifest (written before checksums existed); SSDError naming the first damaged or missing file."""
    d = Path(folder)
    manifest = d / CHECKSUMS
    try:
        st = manifest.stat()
    except FileNotFoundError:
        return False
    key = (str(d.resolve()), st.st_mtime_ns, _stamps(d))
    if key in _verified:
        return True
    for lineno, line in enumerate(manifest.read_text().splitlines(), 1):
        want, sep, name = line.partition("  ")
        if not sep or len(want) != 64:
            raise SSDError(f"{manifest}:{lineno}: not a `sha256  file` line; the {what} {d} has a damaged checksum "
                           f"manifest. {remedy}")
        f = d / name
        if not f.is_file():
            raise SSDError(f"{f}: missing, but listed in {manifest}; the {what} {d} is incomplete. {remedy}")
        got = sha256_file(f)
        if got != want:
            raise SSDError(f"{f}: damaged (sha256 {got[:12]}... differs from {want[:12]}... recorded in {manifest} "
                           f"when it was written); the {what} {d} is corrupt and was not loaded. {remedy}")
    _verified.add(key)
    return True


def _stamps(folder: Path) -> tuple:
    """(name, size, mtime) of every file: what a write since the last verification would change."""
    return tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()))


def _checkpoint_remedy(ckpt_dir: Path) -> str:
    """Where to go from a damaged iteration: the newest older one in the same root, if any."""
    older = sorted((p for p in ckpt_dir.parent.iterdir() if ITER_RE.match(p.name) and p != ckpt_dir and
                    iteration_of(p) < iteration_of(ckpt_dir) and (p / "metadata.json").is_file()),
                   key=iteration_of) if ckpt_dir.parent.is_dir() else []
    if not older:
        return ("There is no older checkpoint next to it: restore it from a copy or delete it and rerun the stage "
                "that wrote it.")
    good = older[-1]
    return (f"The last good checkpoint before it is {good}: to continue from there, write {good.name} into "
            f"{ckpt_dir.parent / LATEST} (and {iteration_of(good)} into {ckpt_dir.parent / LATEST_MEGATRON}) "
            f"and delete {ckpt_dir}.")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    iteration: int
    padded_vocab_size: int
    dtype: torch.dtype
    hidden_size: int


def checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Padded vocab, parameter dtype and iteration of a checkpoint (from tensor metadata; no weights read)."""
    from megatron.core import dist_checkpointing

    d = resolve_checkpoint(path)
    verify_complete(d)
    try:
        meta = dist_checkpointing.load_tensors_metadata(str(d))
    except load_errors() as exc:
        raise SSDError(f"{d}: cannot read the checkpoint's tensor metadata ({type(exc).__name__}: {exc}); it is "
                       f"corrupt. {_checkpoint_remedy(d)}") from exc
    emb = [k for k in meta if k.endswith(EMBEDDING_KEY)]
    if not emb:
        raise SSDError(f"{d}: no {EMBEDDING_KEY} tensor; not a GPT model checkpoint.")
    t = meta[sorted(emb, key=len)[0]]
    rows, hidden = t.global_shape
    return CheckpointInfo(d, iteration_of(d), int(rows), t.dtype, int(hidden))


def save_model_checkpoint(model: Any, root: str | os.PathLike, iteration: int = 0, extra: dict | None = None) -> Path:
    """Collective: save `model`'s weights as `<root>/iter_XXXXXXX` and update the pointers (rank 0).

    Every rank of the world calls it with its own model shard.
    """
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    root = Path(root)
    final = root / iter_dir_name(iteration)
    tmp = root / f".{final.name}.tmp"
    if dist.get_rank() == 0:
        tmp.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            f.unlink()
    dist.barrier()
    state = {"model": model.sharded_state_dict(), "iteration": iteration, "checkpoint_version": 3.0}
    if extra:
        state.update(extra)
    dist_checkpointing.save(state, str(tmp))
    dist.barrier()
    write_checksums_collective(tmp)
    if dist.get_rank() == 0:
        if final.exists():
            import shutil

            shutil.rmtree(final)
        os.replace(tmp, final)
        write_latest(root, iteration)
    dist.barrier()
    return final


def load_model_weights(model: Any, path: str | os.PathLike) -> Path:
    """Collective: load the model weights of a checkpoint (root with `latest`, or an iteration dir) into
    `model` (this rank's shard, any TP/PP/EP layout). Other saved state (optimizer, RNG) is ignored;
    a model tensor absent from the checkpoint raises. Returns the iteration directory."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    d = resolve_checkpoint(path)
    verify_complete(d)
    m = model
    while hasattr(m, "module") and not hasattr(m, "decoder"):
        m = m.module
    sharded = {"model": m.sharded_state_dict()}
    try:
        loaded = dist_checkpointing.load(sharded, str(d), strict=StrictHandling.RAISE_UNEXPECTED)
    except SSDError:
        raise
    except load_errors() as exc:
        raise SSDError(f"{d}: cannot load the model weights ({type(exc).__name__}: {exc}); the checkpoint is "
                       f"corrupt or from another model. {_checkpoint_remedy(d)}") from exc
    m.load_state_dict(loaded["model"], strict=True)
    return d
