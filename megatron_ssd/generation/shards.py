"""Sample shards on disk: the parquet schema, atomic writes, reading back.

A shard file exists only once all of its samples are generated (write to a temp file, then rename), so "the file
exists" is the resume test: finished shards are never regenerated and a partial one is redone from scratch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..rundir import atomic_path
from .seeds import shard_name

SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("prompt_text", pa.string()),
        ("prompt_token_ids", pa.list_(pa.int32())),
        ("text", pa.string()),
        ("token_ids", pa.list_(pa.int32())),
        ("finish_reason", pa.string()),
        ("num_tokens", pa.int32()),
        ("seed", pa.int64()),
        ("temperature", pa.float64()),
        ("top_k", pa.int32()),
        ("top_p", pa.float64()),
        ("min_p", pa.float64()),
        ("cumulative_logprob", pa.float64()),
    ]
)
# Columns added after the first shards were written: older shards lack them and read back with None.
OPTIONAL_COLUMNS = ("cumulative_logprob",)


def write_shard(folder: Path, shard: int, rows: Iterable[dict[str, Any]]) -> Path:
    rows = sorted(rows, key=lambda r: (r["prompt_id"], r["sample_idx"]))
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    target = folder / shard_name(shard)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)
    return target


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard_*.parquet"))


def read_samples(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in shard_files(folder):
        try:
            table = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"unreadable shard ({exc}); delete it and rerun the stage to regenerate it.", path=str(f))
        missing = set(SCHEMA.names) - set(table.column_names) - set(OPTIONAL_COLUMNS)
        if missing:
            raise DataError(f"shard lacks columns {sorted(missing)}; it was not written by this version.", path=str(f))
        absent = {c: None for c in OPTIONAL_COLUMNS if c not in table.column_names}
        rows.extend({**row, **absent} for row in table.to_pylist())
    return rows
