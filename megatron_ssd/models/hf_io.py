"""Reading and writing HF model folders (safetensors + config + tokenizer + chat template).

The reader is lazy (one tensor at a time through `safe_open`), so each conversion rank touches only the
tensors it owns. The writer produces what transformers' `save_pretrained` does for these models:
safetensors shards with an index when there is more than one, config.json (from the base model, dtype
updated), generation_config.json, tokenizer files and the chat template, copied from the base folder, and
last `checksums.sha256` (as in Megatron checkpoints, `megatron_ssd.models.checkpoint`), which readers verify.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import SSDError
from .checkpoint import CHECKSUMS, verify_checksums, write_checksums

WEIGHT_INDEX = "model.safetensors.index.json"
# Files of an HF folder that are weights (never copied from a template).
_WEIGHT_RE = re.compile(r".*\.(safetensors|bin|pt|pth|gguf|msgpack|h5|ckpt)$|.*\.index\.json$")
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class HFReader:
    """Tensor name -> file index of an HF folder's safetensors; `get(name)` reads one tensor."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        verify_hf_folder(self.folder)
        index = self.folder / WEIGHT_INDEX
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = {name: self.folder / f for name, f in weight_map.items()}
        else:
            files = sorted(self.folder.glob("*.safetensors"))
            if not files:
                raise SSDError(f"{self.folder}: no *.safetensors weights (convert .bin checkpoints to safetensors "
                               "first, e.g. load and save_pretrained with transformers).")
            self.files = {}
            for f in files:
                with safe_open(str(f), "pt") as s:
                    self.files.update({k: f for k in s.keys()})
        missing = sorted({str(f) for f in self.files.values() if not f.is_file()})
        if missing:
            raise SSDError(f"{self.folder}: weight files listed in {WEIGHT_INDEX} are missing: {', '.join(missing)}")

    def names(self) -> list[str]:
        return list(self.files)

    def get(self, name: str) -> torch.Tensor:
        if name not in self.files:
            raise SSDError(f"{self.folder}: tensor {name!r} is not in the safetensors files")
        with safe_open(str(self.files[name]), "pt") as s:
            return s.get_tensor(name)


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def write_hf_folder(
    tensors: dict[str, torch.Tensor],
    dst: str | Path,
    template: str | Path,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 5 * 1024**3,
) -> list[Path]:
    """Write `tensors` as safetensors shards into `dst` plus every non-weight file of `template`.

    `dst` is filled in place (callers write to a temporary folder and rename). Returns the weight files.
    """
    dst, template = Path(dst), Path(template)
    dst.mkdir(parents=True, exist_ok=True)
    copy_non_weight_files(template, dst)
    if dtype is not None:
        _set_config_dtype(dst / "config.json", dtype)
    names = sorted(tensors, key=_natural_key)
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    files: list[Path] = []
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in shard}, str(dst / fname), metadata={"format": "pt"})
        files.append(dst / fname)
        weight_map.update({n: fname for n in shard})
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (dst / WEIGHT_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    write_checksums(dst)
    return files


def verify_hf_folder(folder: str | Path) -> bool:
    """Verify an HF folder written by `write_hf_folder` against its checksums (False: none recorded, e.g. a
    downloaded model); SSDError naming the damaged file."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return verify_checksums(folder, what="exported model", remedy=(
        f"Delete {folder} and export again (`ssd export run_dir=<run>` rewrites it from the training checkpoint, "
        "or `ssd-convert megatron-to-hf`)."))


def copy_non_weight_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy config, generation config, tokenizer and chat-template files (top-level, not weights)."""
    src, dst = Path(src), Path(dst)
    if not (src / "config.json").is_file():
        raise SSDError(f"{src}: no config.json; the HF template must be the base model's folder.")
    copied = []
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith(".") and not _WEIGHT_RE.match(f.name) and f.name != CHECKSUMS:
            shutil.copy2(f, dst / f.name)
            copied.append(f.name)
    return copied


def _set_config_dtype(config_path: Path, dtype: torch.dtype) -> None:
    cfg = json.loads(config_path.read_text())
    name = _DTYPE_NAMES[dtype]
    # transformers >= 5 writes "dtype", older releases (and vLLM's readers) "torch_dtype"; keep whichever exist.
    keys = [k for k in ("dtype", "torch_dtype") if k in cfg] or ["torch_dtype"]
    for k in keys:
        cfg[k] = name
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def hf_dtype(folder: str | Path) -> torch.dtype | None:
    """The dtype config.json declares (None when absent or unknown)."""
    cfg = json.loads((Path(folder) / "config.json").read_text())
    name = cfg.get("dtype") or cfg.get("torch_dtype")
    return {v: k for k, v in _DTYPE_NAMES.items()}.get(name)


def iter_tensors(folder: str | Path) -> Iterable[tuple[str, torch.Tensor]]:
    reader = HFReader(folder)
    for name in reader.names():
        yield name, reader.get(name)
