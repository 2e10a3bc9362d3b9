"""The `filter` and `report` stage modules against a hand-built run directory."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from megatron_ssd.config import SSDConfig
from megatron_ssd.errors import SSDError
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.problems import Problem
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import filter as filter_stage
from megatron_ssd.stages import report as report_stage

from eval_toys import assert_problem, double_problem

pytestmark = pytest.mark.timeout(300)


def sample_row(pid, idx, text, finish="stop"):
    return {"prompt_id": pid, "sample_idx": idx, "prompt_text": "p", "prompt_token_ids": [1, 2], "text": text,
            "token_ids": [3, 4], "finish_reason": finish, "num_tokens": 2, "seed": idx, "temperature": 1.6,
            "top_p": 0.8, "min_p": 0.0, "top_k": 20}


def make_run(tmp_path):
    run = RunDir(tmp_path / "run")
    untested = Problem(problem_id="toy/free", source="t", question="write anything")
    rows = []
    for p in (double_problem(), assert_problem(), untested):
        row = p.to_row()
        row["split"] = "train"
        rows.append(row)
    (run.path / "prompts").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), run.path / "prompts" / "prompts.parquet")
    (run.path / "samples").mkdir()
    shard0 = [sample_row("toy/double", 0, "```python\ndef f(x):\n    return 2 * x\n```"),
              sample_row("toy/double", 1, "def f(x):\n    return x\n"),
              sample_row("toy/double", 2, "def f(x):\n    pass\n"),
              sample_row("toy/double", 3, "def f(x):\n    return 2 * x\n", finish="length")]
    shard1 = [sample_row("toy/add", 0, "def add(a, b):\n    return a + b\n"),
              sample_row("toy/add", 1, "def add(a, b):\n    return a + b\n" + "# loop\n" * 40),
              sample_row("toy/free", 0, "print('hello')\n")]
    pq.write_table(pa.Table.from_pylist(shard0), run.path / "samples" / "shard_00000.parquet")
    pq.write_table(pa.Table.from_pylist(shard1), run.path / "samples" / "shard_00001.parquet")
    return run


def test_filter_stage_keeps_passing_samples_and_counts_every_drop(tmp_path):
    run = make_run(tmp_path)
    cfg = SSDConfig()
    cfg.eval.timeout_s = 10.0
    ctx = StageContext(run=run, console=Console(quiet=True))
    summary = filter_stage.run(cfg, ctx)
    assert summary["input"] == 7 and summary["kept"] == 2
    assert summary["dropped"] == {"empty_or_stub": 1, "truncated": 1, "looping": 1, "no_tests": 1, "failed_tests": 1}
    assert summary["input"] == summary["kept"] + sum(summary["dropped"].values())
    kept0 = pq.read_table(run.path / "filter" / "shard_00000.parquet")
    assert kept0.schema == pq.read_table(run.path / "samples" / "shard_00000.parquet").schema
    assert kept0.column("sample_idx").to_pylist() == [0]
    assert pq.read_table(run.path / "filter" / "shard_00001.parquet").column("prompt_id").to_pylist() == ["toy/add"]
    assert json.loads((run.path / "filter" / "meta.json").read_text())["kept"] == 2
    # a rerun reuses finished shards
    (run.path / "samples" / "shard_00000.parquet").write_bytes(b"not parquet any more")
    assert filter_stage.run(cfg, ctx)["kept"] == 2


def test_filter_stage_with_post_filters_switched_off(tmp_path):
    """data.postfilters=[]: the truncated-but-correct sample reaches the sandbox and is kept; the stub and the
    looping sample are judged by their tests alone."""
    run = make_run(tmp_path)
    cfg = SSDConfig()
    cfg.eval.timeout_s = 10.0
    cfg.data.postfilters = []
    summary = filter_stage.run(cfg, StageContext(run=run, console=Console(quiet=True)))
    assert summary["postfilters"] == [] and summary["kept"] == 4
    assert summary["dropped"] == {"empty_or_stub": 0, "truncated": 0, "looping": 0, "no_tests": 1, "failed_tests": 2}
    kept0 = pq.read_table(run.path / "filter" / "shard_00000.parquet").column("sample_idx").to_pylist()
    assert kept0 == [0, 3]


def test_unknown_post_filter_is_a_config_error():
    from megatron_ssd.config import validate
    from megatron_ssd.errors import ConfigError

    cfg = SSDConfig()
    cfg.data.postfilters = ["truncated", "too_long"]
    with pytest.raises(ConfigError, match=r"data.postfilters=.*unknown \['too_long'\]"):
        validate(cfg)


def test_filter_stage_errors(tmp_path):
    run = RunDir(tmp_path / "empty")
    run.path.mkdir()
    with pytest.raises(SSDError, match="no samples"):
        filter_stage.run(SSDConfig(), StageContext(run=run, console=Console(quiet=True)))


def fake_summary(ids, c_of, n=4, difficulty_of=None, temperature=None):
    rows, probs = [], []
    for pid in ids:
        probs.append(Problem(problem_id=pid, source="t", question="q", style="assert", test_code="assert True"))
        rows += [{"prompt_id": pid, "sample_idx": j, "passed": j < c_of(pid), "isolation": "bwrap",
                  "outcome": "passed" if j < c_of(pid) else "failed", "num_tokens": 50 + j} for j in range(n)]
    s = summarize(rows, probs, [1, 2, 4], n, 0.95, 300, 0, difficulty_of=difficulty_of)
    if temperature is not None:
        s["temperature"] = temperature
    return s, rows


def write_eval(run_dir, label, summary, rows):
    d = run_dir / "eval" / label
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_with_all_arms(tmp_path):
    run_dir = tmp_path / "run"
    ids = [f"p{i}" for i in range(24)]
    base, base_rows = fake_summary(ids, lambda p: int(p[1:]) % 3)
    write_eval(run_dir, "base", base, base_rows)
    dec, dec_rows = fake_summary(ids, lambda p: int(p[1:]) % 4, difficulty_of=base["difficulty_of"])
    write_eval(run_dir, "base_T1.6", dec, dec_rows)
    hot, hot_rows = fake_summary(ids, lambda p: 1, difficulty_of=base["difficulty_of"])
    write_eval(run_dir, "base_T2.0", hot, hot_rows)
    ssd, ssd_rows = fake_summary(ids, lambda p: min(4, int(p[1:]) % 3 + 1), difficulty_of=base["difficulty_of"])
    write_eval(run_dir, "ssd", ssd, ssd_rows)
    (run_dir / "eval" / "ssd" / "collapse.json").write_text(json.dumps(
        {"alerts": [{"probe": "self_bleu", "message": "self_bleu rose +30.0% vs base"}], "base": {}, "model": {}}))
    (run_dir / "diagnose").mkdir()
    (run_dir / "diagnose" / "verdict.json").write_text(json.dumps(
        {"verdict": "GO-SSD", "reason": "pass@4 − pass@1 = 30 pp", "gaps": {"4": {"gap_pp": 30.0, "ci_low_pp": 20.0,
                                                                              "ci_high_pp": 40.0}},
         "weaknesses": ["only 24 held-out problems"]}))
    for stage, secs in (("sample", 120.0), ("train", 600.0), ("evaluate", 60.0)):
        (run_dir / stage).mkdir(exist_ok=True)
        (run_dir / stage / ".done").write_text(json.dumps({"seconds": secs, "summary": {}}))
    run_dir.joinpath("manifest.json").write_text(json.dumps({"config": {"experiment": "toy", "arm": "minimal",
                                                                        "sample": {"temperature": 1.6},
                                                                        "eval": {"temperature": 0.7}}}))
    cfg = SSDConfig()
    cfg.cluster.wandb_mode = "disabled"
    out = report_stage.run(cfg, StageContext(run=RunDir(run_dir), console=Console(quiet=True)))
    md = (run_dir / "report" / "report.md").read_text()
    html = (run_dir / "report" / "report.html").read_text()
    assert out["arms"] == {"base": "base", "decode-only": "base_T1.6", "ssd": "ssd"}
    for needle in ("GO-SSD", "pass@k by arm", "decode-only (`base_T1.6`)", "Per-difficulty change", "T_eval sweep",
                   "ALERT self_bleu", "Round-2 gate", "**FAIL**", "Device-hours and accuracy per device-hour",
                   "CPU core-hours", "Pareto comparison", "**Rollback**: not declared", "Small run: 24 problems",
                   "plots/passk_curves.png"):
        assert needle in md, needle
    assert "not run" in md  # the filter section: this arm had none
    assert html.count("data:image/png;base64,") == len(out["plots"]) >= 4
    assert "<b>GO-SSD</b>" in html and "plots/" not in html
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert metrics["base/pass@1"] == pytest.approx(base["pass_at_k"]["1"]["estimate"])
    assert metrics["sweep/base/T2/pass@1"] == pytest.approx(0.25)
    assert metrics["gate/passed"] == 0


def test_report_tolerates_an_empty_run(tmp_path):
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    cfg = SSDConfig()
    cfg.cluster.wandb_mode = "disabled"
    out = report_stage.run(cfg, StageContext(run=RunDir(run_dir), console=Console(quiet=True)))
    md = (run_dir / "report" / "report.md").read_text()
    assert md.count("not run") >= 5 and out["plots"] == [] and out["verdict"] is None


@pytest.mark.slow
def test_report_logs_to_wandb_offline(tmp_path):
    from megatron_ssd.evaluation.report import render_report
    from megatron_ssd.tracking import run_spec

    run_dir = tmp_path / "run"
    ids = [f"p{i}" for i in range(8)]
    base, rows = fake_summary(ids, lambda p: 1)
    write_eval(run_dir, "base", base, rows)
    cfg = SSDConfig()
    cfg.cluster.wandb_mode = "offline"
    out = render_report(run_dir, wandb_run=run_spec(cfg, "report", run_dir=run_dir))
    assert out["wandb"] == "offline", out["wandb"]
    assert list((run_dir / "wandb").glob("offline-run-*-run-report"))


def test_the_report_and_the_launcher_panel_share_one_definition_of_the_arms(tmp_path):
    """decode-only is the base model at the declared training temperature; without that label it was not run (the
    best base_T* of the sweep is never picked: that would choose it on the eval set)."""
    from megatron_ssd.launch.results_table import final_panel
    from megatron_ssd.evaluation.report.arms import arm_labels

    run_dir = tmp_path / "run"
    ids = [f"p{i}" for i in range(8)]
    for label, c in (("base", 1), ("base_T1.0", 3), ("base_T1.2", 2)):
        s, rows = fake_summary(ids, lambda p, c=c: c)
        write_eval(run_dir, label, s, rows)
    summaries = {lbl: json.loads((run_dir / "eval" / lbl / "summary.json").read_text())
                 for lbl in ("base", "base_T1.0", "base_T1.2")}
    assert arm_labels(summaries, 1.2) == {"base": "base", "decode-only": "base_T1.2"}
    assert arm_labels(summaries, 1.6) == {"base": "base"}  # base_T1.0 scores best, but was not declared
    cfg = SSDConfig()
    cfg.arm, cfg.sample.temperature = "decode_only", 1.2
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    console.print(final_panel(cfg, RunDir(run_dir)))
    text = console.export_text()
    assert "decode-only - base, pass@1: +25.0 pp" in text and "SSD" not in text.split("SSD result")[1]
