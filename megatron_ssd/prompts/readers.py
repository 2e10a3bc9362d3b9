"""Row readers for local files: jsonl, parquet, and HF datasets saved with `save_to_disk`.

Every row comes with its location (file and line or row index) so a malformed record is reported where it is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError

Row = tuple[str, dict[str, Any]]  # (location, row)


def read_rows(path: str | Path) -> Iterator[Row]:
    """Yield (location, row) from a .jsonl/.jsonl.gz, .parquet, or a `save_to_disk` dataset folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("no such file or folder; check data.path / data.eval_path.", path=str(p))
    if p.is_dir():
        yield from _read_saved_dataset(p)
    elif p.suffix == ".parquet":
        yield from _read_parquet(p)
    elif p.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        yield from _read_jsonl(p)
    else:
        raise DataError("unknown file type; use .jsonl, .jsonl.gz, .parquet or a save_to_disk folder.", path=str(p))


def _read_jsonl(p: Path) -> Iterator[Row]:
    import gzip

    opener = gzip.open if p.name.endswith(".gz") else open
    with opener(p, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"line is not valid UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as "
                                "UTF-8.", path=str(p), line=lineno) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON ({exc.msg}, column {exc.colno}); fix or remove this line.",
                                path=str(p), line=lineno) from None
            if not isinstance(row, dict):
                raise DataError(f"expected a JSON object per line, got {type(row).__name__}.", path=str(p), line=lineno)
            yield f"{p}:{lineno}", row


def _read_table(table: pa.Table, where: str) -> Iterator[Row]:
    for i, row in enumerate(table.to_pylist()):
        yield f"{where} row {i}", row


def _read_parquet(p: Path) -> Iterator[Row]:
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable parquet file ({exc}).", path=str(p)) from None
    yield from _read_table(table, str(p))


def _read_saved_dataset(folder: Path) -> Iterator[Row]:
    """An HF `Dataset.save_to_disk` folder (arrow stream files listed in state.json), or a DatasetDict of them."""
    state = folder / "state.json"
    if not state.exists():
        splits = [d for d in sorted(folder.iterdir()) if (d / "state.json").exists()]
        if not splits:
            raise DataError("not a saved HF dataset (no state.json here or in a split folder).", path=str(folder))
        for split in splits:
            yield from _read_saved_dataset(split)
        return
    files = [folder / f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
    for f in files:
        try:
            with pa.memory_map(str(f)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"unreadable arrow file of a saved dataset ({exc}).", path=str(f)) from None
        yield from _read_table(table, str(f))


def require(row: dict[str, Any], where: str, *fields: str) -> None:
    missing = [f for f in fields if f not in row or row[f] is None]
    if missing:
        raise DataError(f"{where}: missing required field(s) {', '.join(missing)}; every record needs "
                        f"{', '.join(fields)}.")
