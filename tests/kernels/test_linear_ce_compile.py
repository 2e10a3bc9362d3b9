"""The compiled (non-interpreter) path, checked without a GPU: every kernel lowers to sm_90 SASS with the
default tiles, fits in shared memory and does not spill registers (a silent 2-10x slowdown)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

H100_SHARED_BYTES = 227 * 1024


@pytest.mark.slow  # ptxas on 18 kernel variants: ~1-2 minutes on 2 busy cores
def test_kernels_compile_for_sm90_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("aot_compile.py")
    proc = subprocess.run([sys.executable, str(script), "--arch", "90"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 18
    for row in rows:
        assert row["shared_bytes"] <= H100_SHARED_BYTES, row
        assert row["spill_stack_bytes"] == 0, f"register spills with the default tiles: {row}"
