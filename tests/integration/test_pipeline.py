"""`ssd run` end to end on the embedded default at a tiny size: real vLLM, real Megatron-core, real sandbox.

prompts -> diagnose -> sample -> pack -> train -> export -> evaluate -> report, then a rerun that does nothing and
prints the same table. Numbers at this size say nothing about SSD; the test checks the wiring and the artifacts.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
SSD = str(Path(sys.executable).parent / "ssd")
TINY = ["data.max_train_prompts=4", "data.max_eval_problems=4", "sample.max_tokens=48", "eval.max_tokens=48",
        "eval.n=2", "eval.k=[1,2]", "eval.temperature_sweep=[]", "train.seq_length=512", "train.train_iters=2",
        "train.global_batch_size=2", "sample.enforce_eager=true",
        "cluster.wandb_mode=offline"]


def ssd_run(run_dir, *extra):
    return subprocess.run([SSD, "run", f"run_dir={run_dir}", *TINY, *extra], capture_output=True, text=True,
                          timeout=2400, env={**os.environ, "COLUMNS": "200", "WANDB_MODE": "offline"})


def test_whole_chain_then_noop_rerun(tmp_path):
    run_dir = tmp_path / "run"
    first = ssd_run(run_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    for stage in ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"):
        assert (run_dir / stage / ".done").exists(), stage
    for label in ("base", "base_T1.2", "ssd"):
        summary = json.loads((run_dir / "eval" / label / "summary.json").read_text())
        assert summary["num_problems"] == 4 and set(summary["pass_at_k"]) == {"1", "2"}
        assert sum(1 for _ in open(run_dir / "eval" / label / "results.jsonl")) == 8
    verdict = json.loads((run_dir / "diagnose" / "verdict.json").read_text())
    assert verdict["verdict"] in ("GO-SSD", "GO-VERIFIER-AWARE-SSD", "GO-OTHER", "UNDECIDED", "INCONCLUSIVE")
    if verdict["verdict"] != "GO-SSD":  # the embedded default forces training past it, and says so everywhere
        override = json.loads((run_dir / "diagnose" / "override.json").read_text())
        assert override["forced"] and override["overrode_verdict"] == verdict["verdict"]
        assert "TRAINING FORCED" in first.stderr
    assert (run_dir / "report" / "report.md").exists() and (run_dir / "report" / "report.html").exists()
    assert list((run_dir / "export" / "hf").glob("iter_*/model*.safetensors"))
    assert "SSD result" in first.stderr and "decode-only" in first.stderr

    again = ssd_run(run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("nothing to do") == 8 and "SSD result" in again.stderr
    assert "VLLM" not in again.stderr and "torch.distributed.run" not in again.stderr


def test_decode_only_arm_skips_training(tmp_path):
    out = ssd_run(tmp_path / "run", "arm=decode_only", "eval.n=1", "eval.k=[1]")
    assert out.returncode == 0, out.stderr[-3000:]
    assert not (tmp_path / "run" / "train").exists()
    assert (tmp_path / "run" / "eval" / "base_T1.2" / "summary.json").exists()
    assert "SSD result" in out.stderr
