"""Read `shard_*.parquet` sample shards (docs/CONTRACTS.md) into flat numpy arrays, validating as we go.

Token lists stay as Arrow's flat values + offsets (no per-row Python lists), so 10^5-10^6 samples load in seconds.
Every problem is reported with the file, the column and, where it applies, the row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import DataError

SHARD_GLOB = "shard_*.parquet"
# column -> predicate on its Arrow type, and the type as written in docs/CONTRACTS.md for error messages
REQUIRED_COLUMNS: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "prompt_id": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
    "sample_idx": (pa.types.is_integer, "int32"),
    "prompt_text": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
    "prompt_token_ids": (lambda t: _is_int_list(t), "list<int32>"),
    "token_ids": (lambda t: _is_int_list(t), "list<int32>"),
    "finish_reason": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string"),
}
CHECKED_OPTIONAL = {"num_tokens": (pa.types.is_integer, "int32")}


def _is_int_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type)


@dataclass
class SampleTable:
    """All samples of a folder. Row i's prompt ids are `prompt_values[prompt_offsets[i]:prompt_offsets[i + 1]]`,
    its completion ids likewise in `completion_*`."""

    shard_paths: list[Path]
    shard: np.ndarray  # int32, index into shard_paths
    row: np.ndarray  # int64, row inside its shard
    prompt_id: np.ndarray  # object (str)
    sample_idx: np.ndarray  # int64
    finish_reason: np.ndarray  # object (str)
    prompt_values: np.ndarray  # int32
    prompt_offsets: np.ndarray  # int64, len n + 1
    completion_values: np.ndarray  # int32
    completion_offsets: np.ndarray  # int64, len n + 1
    # (table index, prompt_text) of the few rows kept for the re-tokenisation check
    check_rows: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.row)

    @property
    def prompt_lengths(self) -> np.ndarray:
        return np.diff(self.prompt_offsets)

    @property
    def completion_lengths(self) -> np.ndarray:
        return np.diff(self.completion_offsets)

    def prompt_ids(self, i: int) -> np.ndarray:
        return self.prompt_values[self.prompt_offsets[i]:self.prompt_offsets[i + 1]]

    def completion_ids(self, i: int) -> np.ndarray:
        return self.completion_values[self.completion_offsets[i]:self.completion_offsets[i + 1]]

    def where(self, i: int) -> str:
        return f"{self.shard_paths[self.shard[i]]} row {self.row[i]}"


def list_shards(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    shards = sorted(folder.glob(SHARD_GLOB))
    if not shards:
        raise DataError(
            f"no {SHARD_GLOB} files here; run the stage that writes them first (`ssd stage=sample`, or "
            "`ssd stage=filter` for arm=verifier_aware).",
            path=str(folder),
        )
    return shards


def _token_lists(table: pa.Table, column: str, path: Path, vocab_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    arr = table.column(column).combine_chunks()
    if arr.null_count:
        row = int(np.flatnonzero(np.asarray(arr.is_null()))[0])
        raise DataError(f"column {column!r} is null at row {row}; every sample needs its token ids.", path=str(path))
    lengths = np.asarray(pc.list_value_length(arr), dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    flat = arr.flatten()
    if flat.null_count:
        pos = int(np.flatnonzero(np.asarray(flat.is_null()))[0])
        row = int(np.searchsorted(offsets, pos, side="right") - 1)
        raise DataError(f"column {column!r} has a null token id at row {row}.", path=str(path))
    values = flat.to_numpy()
    if len(values):
        bad = (values < 0) | (values >= vocab_size) if vocab_size is not None else values < 0
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            row = int(np.searchsorted(offsets, pos, side="right") - 1)
            raise DataError(
                f"column {column!r} row {row}: token id {int(values[pos])} is outside the tokenizer's vocabulary "
                f"[0, {vocab_size}); the samples were made with another tokenizer. Re-run `ssd stage=sample` with "
                "this model, or pack with the tokenizer that produced them.",
                path=str(path),
            )
    return values.astype(np.int32, copy=False), offsets


def read_shard(path: Path) -> pa.Table:
    """Read one shard after checking its columns and types against the contract."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"not a readable parquet file ({exc}); delete it and re-run the stage that wrote it.", path=str(path)
        ) from exc
    for name, (ok, spelled) in {**REQUIRED_COLUMNS, **CHECKED_OPTIONAL}.items():
        if name not in schema.names:
            if name in REQUIRED_COLUMNS:
                raise DataError(
                    f"missing column {name!r} (type {spelled}); a samples shard needs "
                    f"{', '.join(REQUIRED_COLUMNS)} (docs/CONTRACTS.md).",
                    path=str(path),
                )
            continue
        if not ok(schema.field(name).type):
            raise DataError(f"column {name!r} has type {schema.field(name).type}, expected {spelled}.", path=str(path))
    columns = [*REQUIRED_COLUMNS, *(c for c in CHECKED_OPTIONAL if c in schema.names)]
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read ({exc}); delete it and re-run the stage that wrote it.", path=str(path)) from exc


def read_samples(
    folder: str | Path,
    vocab_size: int | None = None,
    check_rows: int = 32,
    on_shard: Callable[[Path], None] | None = None,
) -> SampleTable:
    """Load every shard of `folder`; token ids must lie in [0, vocab_size) when it is given. The prompt texts of
    the first `check_rows` rows (spread over the shards, at least one per shard while they last) are kept for
    `check_prompt_tokenisation`."""
    shards = list_shards(folder)
    per_shard = max(1, check_rows // len(shards))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("shard", "row", "pid", "sidx", "fr", "pv", "pl", "cv", "cl")}
    checks: list[tuple[int, str]] = []
    start = 0
    for si, path in enumerate(shards):
        t = read_shard(path)
        n = t.num_rows
        for col in ("prompt_id", "sample_idx", "finish_reason", "prompt_text"):
            if t.column(col).null_count:
                row = int(np.flatnonzero(np.asarray(t.column(col).is_null()))[0])
                raise DataError(f"column {col!r} is null at row {row}.", path=str(path))
        pv, po = _token_lists(t, "prompt_token_ids", path, vocab_size)
        cv, co = _token_lists(t, "token_ids", path, vocab_size)
        if "num_tokens" in t.column_names:
            num = np.asarray(t.column("num_tokens").fill_null(-1), dtype=np.int64)
            bad = np.flatnonzero(num != np.diff(co))
            if len(bad):
                r = int(bad[0])
                raise DataError(
                    f"row {r}: num_tokens={num[r]} but token_ids has {int(co[r + 1] - co[r])} ids; the shard is "
                    "inconsistent, re-run the stage that wrote it.",
                    path=str(path),
                )
        take = min(per_shard, check_rows - len(checks))
        texts = t.column("prompt_text").slice(0, max(take, 0)).to_pylist()
        checks.extend((start + r, text) for r, text in enumerate(texts))
        start += n
        parts["shard"].append(np.full(n, si, dtype=np.int32))
        parts["row"].append(np.arange(n, dtype=np.int64))
        parts["pid"].append(np.asarray(t.column("prompt_id").to_pylist(), dtype=object))
        parts["sidx"].append(np.asarray(t.column("sample_idx"), dtype=np.int64))
        parts["fr"].append(np.asarray(t.column("finish_reason").to_pylist(), dtype=object))
        parts["pv"].append(pv)
        parts["pl"].append(np.diff(po))
        parts["cv"].append(cv)
        parts["cl"].append(np.diff(co))
        if on_shard is not None:
            on_shard(path)

    def cat(key: str, dtype: type) -> np.ndarray:
        return np.concatenate(parts[key]).astype(dtype, copy=False)

    def offsets(key: str) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(cat(key, np.int64))))

    return SampleTable(
        shard_paths=shards,
        shard=cat("shard", np.int32),
        row=cat("row", np.int64),
        prompt_id=cat("pid", object),
        sample_idx=cat("sidx", np.int64),
        finish_reason=cat("fr", object),
        prompt_values=cat("pv", np.int32),
        prompt_offsets=offsets("pl"),
        completion_values=cat("cv", np.int32),
        completion_offsets=offsets("cl"),
        check_rows=checks,
    )
