"""Read packed bins (written by `megatron_ssd.data.pack`) for training.

`PackedDataset(path)[i]` gives one bin of `seq_length` positions as numpy arrays:
    tokens        int64 [S]   input ids
    labels        int64 [S]   next-token targets
    loss_mask     float32 [S] 1.0 where labels[t] is a completion id; 0.0 on prompt targets and padding
    position_ids  int64 [S]   0, 1, ... restarting at every segment start
    cu_seqlens    int32 [n+1] segment boundaries, 0 ... S (the padding tail, if any, is the last segment)
The arrays are memory-mapped; a worker reads only the bins it is given. Bins are stored in packing order (bins
holding the longest documents first), so the trainer's sampler shuffles them (seeded).

The trainer turns a collated micro-batch into Megatron's `PackedSeqParams` (not built here, so this module does
not import Megatron): `qkv_format="thd"`, `cu_seqlens_q = cu_seqlens_kv = batch["cu_seqlens"]` (int32, on the
device), `max_seqlen_q = max_seqlen_kv = int(batch["max_seqlen"])`; for micro_batch_size > 1 it feeds the tokens
as one [1, mbs * S] sequence, which is what the offset cu_seqlens from `collate_packed` describe.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError

FORMAT = "megatron_ssd.packed"
FORMAT_VERSION = 1
RERUN = "re-run `ssd stage=pack` for this run directory (it rewrites the packed folder)"


class PackedDataset:
    """Bins of a packed folder; refuses data packed with another tokenizer or sequence length."""

    def __init__(
        self,
        path: str | Path,
        expected_tokenizer_fingerprint: str | None = None,
        expected_seq_length: int | None = None,
    ):
        self.path = Path(path)
        self._expected = (expected_tokenizer_fingerprint, expected_seq_length)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise DataError(f"no packed data here (meta.json missing); {RERUN}.", path=str(self.path))
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc}); {RERUN}.", path=str(meta_path)) from exc
        missing = [k for k in ("format", "format_version", "seq_length", "num_bins", "arrays") if k not in self.meta]
        if missing:
            raise DataError(f"lacks {', '.join(missing)}; {RERUN}.", path=str(meta_path))
        if self.meta.get("format") != FORMAT or self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"format {self.meta.get('format')!r} version {self.meta.get('format_version')!r}, this build reads "
                f"{FORMAT!r} version {FORMAT_VERSION}; {RERUN}.",
                path=str(meta_path),
            )
        fp = self.meta.get("tokenizer_fingerprint")
        if expected_tokenizer_fingerprint is not None and fp != expected_tokenizer_fingerprint:
            raise DataError(
                f"packed with tokenizer fingerprint {str(fp)[:12]}..., but the model being trained has "
                f"{expected_tokenizer_fingerprint[:12]}... (different tokenizer files or chat template); {RERUN} "
                "with the model you train.",
                path=str(meta_path),
            )
        self.seq_length = int(self.meta["seq_length"])
        if expected_seq_length is not None and self.seq_length != expected_seq_length:
            raise DataError(
                f"packed with seq_length={self.seq_length}, but train.seq_length={expected_seq_length}; {RERUN} "
                "with the current train.seq_length.",
                path=str(meta_path),
            )
        self._arrays = {name: self._open(name, spec) for name, spec in self.meta["arrays"].items()}
        for name in ("tokens", "labels", "loss_mask", "cu_seqlens", "cu_offsets"):
            if name not in self._arrays:
                raise DataError(f"meta.json lists no {name!r} array; {RERUN}.", path=str(meta_path))
        self.num_bins = int(self.meta["num_bins"])
        if len(self._arrays["cu_offsets"]) != self.num_bins + 1:
            raise DataError(f"cu_offsets.npy does not match num_bins={self.num_bins}; {RERUN}.", path=str(self.path))

    def __getstate__(self) -> dict[str, Any]:
        # pickling a memmap copies its data: send only the path to DataLoader workers (spawn) and reopen there
        return {"path": self.path, "expected": self._expected}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], *state["expected"])

    def _open(self, name: str, spec: dict[str, Any]) -> np.ndarray:
        f = self.path / f"{name}.npy"
        try:
            arr = np.load(f, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot open ({exc}); {RERUN}.", path=str(f)) from exc
        if list(arr.shape) != list(spec["shape"]) or str(arr.dtype) != spec["dtype"]:
            raise DataError(
                f"shape {list(arr.shape)} dtype {arr.dtype}, meta.json says {spec['shape']} {spec['dtype']}; the "
                f"folder is inconsistent, {RERUN}.",
                path=str(f),
            )
        return arr

    def __len__(self) -> int:
        return self.num_bins

    def cu_seqlens(self, i: int) -> np.ndarray:
        off = self._arrays["cu_offsets"]
        return np.asarray(self._arrays["cu_seqlens"][off[i]:off[i + 1]], dtype=np.int32)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not -self.num_bins <= i < self.num_bins:
            raise IndexError(f"bin {i} out of range for {self.num_bins} bins in {self.path}")
        i = int(i) % self.num_bins
        cu = self.cu_seqlens(i)
        return {
            "tokens": self._arrays["tokens"][i].astype(np.int64),
            "labels": self._arrays["labels"][i].astype(np.int64),
            "loss_mask": self._arrays["loss_mask"][i].astype(np.float32),
            "position_ids": position_ids(cu),
            "cu_seqlens": cu,
        }


def position_ids(cu_seqlens: np.ndarray) -> np.ndarray:
    """0..len-1 for every segment delimited by `cu_seqlens`."""
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    lengths = np.diff(cu)
    return np.arange(int(cu[-1]), dtype=np.int64) - np.repeat(cu[:-1], lengths)


def collate_packed(batch: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Stack bins into a micro-batch of torch tensors.

    tokens/labels/position_ids int64 [B, S], loss_mask float32 [B, S]; `cu_seqlens` int32 covers the flattened
    [B * S] sequence (bin b's boundaries shifted by b * S, shared boundaries written once) and `max_seqlen` is the
    longest segment (int32 scalar tensor).
    """
    import torch

    if not batch:
        raise ValueError("collate_packed needs at least one bin")
    S = len(batch[0]["tokens"])
    if any(len(b["tokens"]) != S for b in batch):
        raise ValueError("all bins of a micro-batch must have the same seq_length")
    keys = ("tokens", "labels", "loss_mask", "position_ids")
    out = {k: torch.from_numpy(np.stack([b[k] for b in batch])) for k in keys}
    cu = [np.asarray(batch[0]["cu_seqlens"], dtype=np.int64)]
    cu += [np.asarray(b["cu_seqlens"][1:], dtype=np.int64) + j * S for j, b in enumerate(batch) if j > 0]
    cu_all = np.concatenate(cu)
    out["cu_seqlens"] = torch.from_numpy(cu_all.astype(np.int32))
    out["max_seqlen"] = torch.tensor(int(np.diff(cu_all).max()), dtype=torch.int32)
    return out
