"""The prepared GPU check (benchmarks/gpu/check.sh) stays runnable while no GPU is at hand: its dry run checks
the wheel list, every import (our package from the working tree through the PYTHONPATH overlay, not an
install) and the benchmarks' arguments, and writes the JSON the real run writes first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))

import check_tools  # noqa: E402


CHECK = str(REPO / "benchmarks" / "gpu" / "check.sh")


def test_dry_run_passes_and_writes_the_environment(tmp_path):
    out = tmp_path / "results"
    # the flag first: `check.sh --dry-run OUT_DIR` once took `--dry-run` for the folder
    proc = subprocess.run([CHECK, "--dry-run", str(out)], cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and summary["status"] == 0
    assert [p["part"] for p in summary["parts"]] == ["preflight", "gpu_tests", "linear_ce", "train_step"]
    env = json.loads((out / "environment.json").read_text())
    assert env["problems"] == [] and env["wheels"]["megatron-core"]
    assert env["imports"]["megatron_ssd.kernels"] == "working tree"
    assert {"date", "device", "versions"} <= env.keys()
    assert "test_linear_ce.py" in (out / "gpu_tests.log").read_text()  # the gpu tests were collected
    assert "plan: 48 rows" in (out / "linear_ce.log").read_text()
    assert "ok qwen3-1b-bf16-s8192-fused-ce" in (out / "train_step.log").read_text()


def test_wheel_list_is_pinned_once_per_package(tmp_path):
    pins = check_tools.read_wheel_list()
    assert {"megatron-core", "liger-kernel"} <= pins.keys()
    bad = tmp_path / "wheels.txt"
    bad.write_text("megatron-core==0.16.1\nliger-kernel>=0.8\n")
    with pytest.raises(ValueError, match=r"wheels.txt:2: .* is not `name==version`"):
        check_tools.read_wheel_list(bad)
    bad.write_text("megatron-core==0.16.1\nmegatron_core==0.16.0\n")
    with pytest.raises(ValueError, match="listed twice"):
        check_tools.read_wheel_list(bad)


def test_an_import_missing_from_image_and_wheel_list_is_reported(monkeypatch):
    monkeypatch.setitem(check_tools.IMPORTS, "einops", "einops")
    assert any("einops" in p for p in check_tools.check_wheels(check_tools.read_wheel_list()))


@pytest.mark.parametrize("args, message", [
    ([], "OUT_DIR is required for a real run"),
    (["--bogus", "out"], "unknown option --bogus"),
    (["a", "b", "--dry-run"], "one OUT_DIR only"),
])
def test_arguments_are_read_in_any_order_and_mistakes_are_named(tmp_path, args, message):
    proc = subprocess.run([CHECK, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "usage:" in proc.stderr
    assert not (tmp_path / "--dry-run").exists() and not list(tmp_path.iterdir())  # nothing written
