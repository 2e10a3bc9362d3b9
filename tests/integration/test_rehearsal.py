"""`ssd run experiment=<paper preset> rehearsal=true` end to end, for each of the five paper presets.

Each rehearsal is the preset's chain (prompts -> diagnose -> sample -> pack -> train -> export -> evaluate ->
report) with real vLLM, Megatron-core ranks on gloo in the preset's layout kinds (the 30B presets at TP2 CP2 EP2 on
4 ranks) and the sandbox, on a tiny random model of the preset's class and the shipped data fixtures
(config/rehearsal.py). What is checked is that it finishes and says everywhere that it is a rehearsal.
"""
from __future__ import annotations

import json
import time

import pyarrow.parquet as pq
import pytest

from embedded import ssd
from megatron_ssd.rundir import RunDir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PRESETS = ("ssd_qwen3_4b_instruct", "ssd_qwen3_4b_thinking", "ssd_llama31_8b_instruct",
           "ssd_qwen3_30b_a3b_instruct", "ssd_qwen3_30b_a3b_thinking")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_rehearsal_runs_the_whole_chain(preset, tmp_path):
    start = time.perf_counter()
    result = ssd("run", f"experiment={preset}", "rehearsal=true", f"runs_root={tmp_path / 'runs'}",
                 "cluster.wandb_mode=offline", cwd=tmp_path)
    wall = time.perf_counter() - start
    print(f"{preset} rehearsal: {wall:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "REHEARSAL" in result.stderr
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir() if (d / "manifest.json").is_file()]
    assert run_dir.name.startswith(f"{preset}-rehearsal-")
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    section = manifest["rehearsal"]
    changes = {c["key"]: c for c in section["changes"]}
    assert changes["model.path"]["rehearsal"] == manifest["config"]["model"]["path"]
    layout = section["layout"]
    assert layout["world"] <= 4 and layout["tensor"] == 2 and layout["context"] == 2
    if "30b" in preset:
        assert layout["expert"] == 2 and manifest["config"]["model"]["arch"] == "qwen3_moe"
    # every stage ran; training went through the preset's layout and wrote its checkpoints
    for stage in ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"):
        assert run.is_done(stage), stage
    train = json.loads((run_dir / "train" / "summary.json").read_text())
    assert train["iterations"] == manifest["config"]["train"]["train_iters"]
    assert (run_dir / "export" / "hf").exists()
    cfg = run.config()
    labels = {p.name for p in (run_dir / "eval").iterdir() if (p / "summary.json").is_file()}
    assert {"base", "ssd"} <= labels and len(labels) >= 2 + len(cfg.eval.temperature_sweep)
    if cfg.model.thinking:  # the family's template opens the reasoning in the prompt
        rows = pq.read_table(next((run_dir / "samples").glob("shard_*.parquet"))).to_pylist()
        assert rows and all(r["prompt_text"].endswith("<think>\n") for r in rows)
    # the report's first lines say it is a rehearsal and list what changed
    report = (run_dir / "report" / "report.md").read_text().splitlines()
    assert report[0].startswith("# REHEARSAL - not a result")
    head = "\n".join(report[:60])
    assert "not a result" in head and "`train.seq_length`" in head and "`model.path`" in head
    if "30b" in preset:
        assert "`parallel.expert`" in head
