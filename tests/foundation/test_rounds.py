"""Round 2: refused unless round 1 passes the gate; a fresh prompt pool and the same held-out set."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_ssd.config import SSDConfig
from megatron_ssd.config.validate import collect_errors
from megatron_ssd.errors import SSDError
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.problems import Problem
from megatron_ssd.rounds import check_round2_gate
from megatron_ssd.rundir import RunDir, atomic_write_json
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import prompts as prompts_stage

SSD = str(Path(sys.executable).parent / "ssd")


def fake_round1(tmp_path, base_rate, ssd_rate, n=4, problems=40):
    """A round-1 run directory with eval summaries at the given per-sample pass rates."""
    cfg = SSDConfig(run_dir=str(tmp_path / "round1"))
    run = RunDir.open(cfg)
    probs = [Problem(problem_id=f"p{i}", source="jsonl", question=f"q{i}", style="assert", test_code="assert True")
             for i in range(problems)]
    for label, rate in (("base", base_rate), ("ssd", ssd_rate)):
        rows = [{"prompt_id": p.problem_id, "sample_idx": j, "passed": (i * n + j) % 100 < rate * 100,
                 "outcome": "passed" if (i * n + j) % 100 < rate * 100 else "failed", "isolation": "bwrap"}
                for i, p in enumerate(probs) for j in range(n)]
        for r in rows:
            r["passed"] = r["outcome"] == "passed"
        summary = summarize(rows, probs, [1, 2], n, 0.95, 500, 0)
        atomic_write_json(run.path / "eval" / label / "summary.json", summary)
    atomic_write_json(run.path / "eval" / "ssd" / "collapse.json", {"ok": True, "alerts": []})
    return run


def test_round2_needs_prev_run_dir_and_a_training_arm():
    cfg = SSDConfig(round=2)
    assert any("prev_run_dir" in e for e in collect_errors(cfg))
    cfg.prev_run_dir, cfg.arm = "x", "decode_only"
    assert any("decode_only has nothing to continue" in e for e in collect_errors(cfg))


def test_gate_refuses_round2_without_lift(tmp_path):
    round1 = fake_round1(tmp_path, 0.30, 0.30)
    cfg = SSDConfig(round=2, prev_run_dir=str(round1.path))
    with pytest.raises(SSDError, match=r"round=2 refused(.|\n)*FAIL: pass@1 lift \+0.00 pp"):
        check_round2_gate(cfg)


def test_gate_passes_a_clear_lift(tmp_path):
    round1 = fake_round1(tmp_path, 0.20, 0.60)
    result = check_round2_gate(SSDConfig(round=2, prev_run_dir=str(round1.path)))
    assert result["passed"] and result["lift_pp"] > 30


def test_cli_refuses_round2_with_reasons(tmp_path):
    round1 = fake_round1(tmp_path, 0.30, 0.31)
    out = subprocess.run([SSD, "prompts", f"run_dir={tmp_path}/r2", "round=2", f"prev_run_dir={round1.path}"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 2 and "round-2 gate" in out.stderr and "FAIL" in out.stderr
    assert not (tmp_path / "r2").exists()


def test_round2_prompts_are_fresh_and_eval_set_is_kept(tmp_path):
    pool = tmp_path / "pool.jsonl"
    import random

    rng = random.Random(0)
    vocab = [f"w{j}" for j in range(5000)]
    pool.write_text("".join(json.dumps({"id": f"t{i}", "question": " ".join(rng.sample(vocab, 30))}) + "\n"
                            for i in range(40)))
    cfg1 = SSDConfig(run_dir=str(tmp_path / "r1"))
    cfg1.data.source, cfg1.data.path, cfg1.data.eval_source, cfg1.data.eval_path = "jsonl", str(pool), "jsonl", str(pool)
    cfg1.data.max_train_prompts = 10
    r1 = RunDir.open(cfg1)
    prompts_stage.run(cfg1, StageContext(run=r1))
    cfg2 = SSDConfig(run_dir=str(tmp_path / "r2"), round=2, prev_run_dir=str(r1.path))
    cfg2.data = cfg1.data
    r2 = RunDir.open(cfg2)
    prompts_stage.run(cfg2, StageContext(run=r2))
    train1 = {p.problem_id for p in prompts_stage.load_prompts(r1.path, "train")}
    eval1 = {p.problem_id for p in prompts_stage.load_prompts(r1.path, "eval")}
    train2 = {p.problem_id for p in prompts_stage.load_prompts(r2.path, "train")}
    eval2 = {p.problem_id for p in prompts_stage.load_prompts(r2.path, "eval")}
    assert eval2 == eval1 and train2 and not train2 & (train1 | eval1)
