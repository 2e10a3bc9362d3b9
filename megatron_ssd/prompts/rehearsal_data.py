"""The rehearsals' data sources (`config/rehearsal.py`): small fixtures shipped with the package, written in the
formats the paper presets read, so that `rehearsal=true` goes through the same readers as a real run.

- rStar-Coder `seed_sft` rows (question_id, question, starter_code, response, code, verified, is_passed), written as
  parquet, the format the dataset is released in; one statement repeats another up to whitespace, for the exact
  de-duplication the presets configure.
- LiveCodeBench `code_generation_lite` rows (question_content, starter_code, public_test_cases, private_test_cases
  as JSON text and as base64(zlib(pickle(JSON))), metadata with func_name, contest_date, difficulty, platform),
  written as jsonl, the format of the release's test*.jsonl files: stdin (AtCoder) and functional (LeetCode)
  problems inside the v6 window, and one outside it for the date filter.
"""
from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..rundir import atomic_write_bytes
from .readers import read_rows

FIXTURES = Path(__file__).parent / "rehearsal_fixtures"
RSTARCODER_FIXTURE = FIXTURES / "rstarcoder_seed_sft.jsonl"
LCB_FIXTURE = FIXTURES / "code_generation_lite.jsonl"


def _write_if_changed(path: Path, data: bytes) -> None:
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write_bytes(path, data)


def write_rehearsal_data(rstarcoder: str | Path, livecodebench: str | Path) -> None:
    """The rStar-Coder fixture as parquet at `rstarcoder`, the LiveCodeBench fixture as jsonl at `livecodebench`
    (rewritten only when their bytes would differ, so a finished rehearsal's recorded inputs keep their hashes)."""
    rows = [row for _, row in read_rows(RSTARCODER_FIXTURE)]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    _write_if_changed(Path(rstarcoder), buf.getvalue())
    _write_if_changed(Path(livecodebench), LCB_FIXTURE.read_bytes())
