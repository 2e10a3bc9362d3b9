"""The train logger and the report start the wandb runs `tracking.run_spec` names (docs/WANDB.md), the report logs
the eval summaries as a table, mode "disabled" never imports wandb, and a wandb that cannot start costs a warning,
never the jsonl or the report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import wandb
from rich.console import Console

from megatron_ssd.config import SSDConfig
from megatron_ssd.evaluation.report import render_report
from megatron_ssd.evaluation.scoring import summarize
from megatron_ssd.problems import Problem
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import report as report_stage
from megatron_ssd.tracking import run_spec
from megatron_ssd.training.metrics import MetricsLogger

REPO = Path(__file__).resolve().parents[2]
IDENTITY = ("project", "group", "job_type", "name", "id", "mode", "dir", "resume")
KS = [1, 2, 4]
STEP = {"loss": 2.5, "grad_norm": 0.7, "lr": 1e-4, "tokens_per_s": 1000.0}


class FakeRun:
    def __init__(self):
        self.logged: list[tuple[dict, int | None]] = []
        self.summary: dict = {}
        self.exit_code: int | None = None

    def log(self, payload: dict, step: int | None = None) -> None:
        self.logged.append((payload, step))

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(monkeypatch):
    """wandb.init records its kwargs and returns a FakeRun; `calls` holds (kwargs, run) per init."""
    calls: list[tuple[dict, FakeRun]] = []

    def init(**kwargs):
        calls.append((kwargs, FakeRun()))
        return calls[-1][1]

    monkeypatch.setattr(wandb, "init", init)
    return calls


@pytest.fixture
def broken_wandb(monkeypatch):
    def init(**kwargs):
        raise RuntimeError("wandb-core did not answer")

    monkeypatch.setattr(wandb, "init", init)


def offline_cfg() -> SSDConfig:
    cfg = SSDConfig(experiment="toy")
    cfg.cluster.wandb_mode = "offline"
    return cfg


def identity(kwargs: dict) -> dict:
    return {k: kwargs[k] for k in IDENTITY}


def eval_run(run_dir: Path, labels=("base", "ssd")) -> Path:
    """A run directory with one eval summary per label (4 problems, 4 samples each)."""
    probs = [Problem(problem_id=f"p{i}", source="t", question="q", style="assert", test_code="assert True")
             for i in range(4)]
    for shift, label in enumerate(labels):
        rows = [{"prompt_id": p.problem_id, "sample_idx": j, "passed": j < (i + shift) % 4, "isolation": "bwrap",
                 "outcome": "passed" if j < (i + shift) % 4 else "failed", "num_tokens": 50}
                for i, p in enumerate(probs) for j in range(4)]
        summary = summarize(rows, probs, KS, 4, 0.95, 300, 0)
        summary.update(model=f"model-{label}", temperature=0.7)
        d = run_dir / "eval" / label
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(summary))
        (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------------- train
def test_the_train_logger_starts_the_run_run_spec_names_and_a_resume_continues_it(tmp_path, fake_wandb):
    cfg, run_dir = offline_cfg(), tmp_path / "toy-20250101-abcd"
    spec = run_spec(cfg, "train", run_dir=run_dir)
    metrics = run_dir / "train" / "metrics.jsonl"
    logger = MetricsLogger(metrics, enabled=True, resume_iteration=None, wandb_run=spec)
    logger.step(1, STEP)
    logger.event("end", iteration=1, final_loss=2.5)
    logger.close()

    kwargs, run = fake_wandb[0]
    assert identity(kwargs) == identity(spec.init_kwargs())
    assert (kwargs["job_type"], kwargs["name"], kwargs["id"]) == ("train", f"{run_dir.name}/train",
                                                                  f"{run_dir.name}-train")
    assert kwargs["group"] == "toy" and kwargs["config"]["experiment"] == "toy"
    assert run.logged == [({f"train/{k}": v for k, v in STEP.items()}, 1)]
    assert run.summary == {"end/iteration": 1, "end/final_loss": 2.5} and run.exit_code == 0

    resumed = MetricsLogger(metrics, enabled=True, resume_iteration=1, wandb_run=run_spec(cfg, "train",
                                                                                          run_dir=run_dir))
    resumed.close()
    assert fake_wandb[1][0]["id"] == kwargs["id"] and fake_wandb[1][0]["resume"] == "allow"
    assert [r["kind"] for r in records(metrics)] == ["step", "end"]  # the jsonl has no wandb warning


def test_ranks_without_a_spec_start_no_run(tmp_path, fake_wandb):
    logger = MetricsLogger(tmp_path / "metrics.jsonl", enabled=True, resume_iteration=None, wandb_run=None)
    logger.step(1, STEP)
    logger.close()
    assert fake_wandb == []


def test_a_failing_wandb_init_is_a_warning_and_the_jsonl_stays_intact(tmp_path, broken_wandb, capsys):
    run_dir = tmp_path / "toy-run"
    metrics = run_dir / "train" / "metrics.jsonl"
    logger = MetricsLogger(metrics, enabled=True, resume_iteration=None,
                           wandb_run=run_spec(offline_cfg(), "train", run_dir=run_dir))
    logger.step(1, STEP)
    logger.step(2, STEP)
    logger.close()

    err = capsys.readouterr().err
    assert "WARNING: wandb (offline, run toy-run/train) could not start: RuntimeError: wandb-core did not answer" in err
    recs = records(metrics)
    assert [r["kind"] for r in recs] == ["warning", "step", "step"]
    assert "wandb-core did not answer" in recs[0]["message"] and str(metrics) in recs[0]["message"]
    assert [r["iteration"] for r in recs[1:]] == [1, 2] and recs[2]["loss"] == STEP["loss"]


# --------------------------------------------------------------------------------------------- report
def test_the_report_run_has_the_run_spec_names_and_an_eval_table_row_per_label_and_k(tmp_path, fake_wandb):
    run_dir = eval_run(tmp_path / "toy-run")
    cfg, ctx = offline_cfg(), StageContext(run=RunDir(run_dir), console=Console(quiet=True))
    out = report_stage.run(cfg, ctx)

    assert out["wandb"] == "offline"
    (kwargs, run), = fake_wandb
    spec = run_spec(cfg, "report", run_dir=ctx.run.path)
    assert identity(kwargs) == identity(spec.init_kwargs())
    assert (kwargs["job_type"], kwargs["name"], kwargs["id"]) == ("report", "toy-run/report", "toy-run-report")
    (payload, _), = run.logged
    table = payload["eval/table"]
    assert isinstance(table, wandb.Table)
    rows = [dict(zip(table.columns, row)) for row in table.data]
    assert sorted((r["label"], r["k"]) for r in rows) == sorted((lbl, k) for lbl in ("base", "ssd") for k in KS)
    summary = json.loads((run_dir / "eval" / "ssd" / "summary.json").read_text())
    ssd_k2 = next(r for r in rows if (r["label"], r["k"]) == ("ssd", 2))
    assert ssd_k2["pass_at_k"] == summary["pass_at_k"]["2"]["estimate"] and ssd_k2["model"] == "model-ssd"
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    assert payload["base/pass@1"] == metrics["base/pass@1"]  # the report's scalars, as before
    assert {f"plots/{name}" for name in out["plots"]} <= set(payload) and out["plots"]
    assert run.exit_code == 0


def test_a_failing_wandb_init_does_not_fail_the_report(tmp_path, broken_wandb):
    run_dir = eval_run(tmp_path / "toy-run")
    out = render_report(run_dir, wandb_run=run_spec(offline_cfg(), "report", run_dir=run_dir))
    assert out["wandb"] == "failed: RuntimeError: wandb-core did not answer"
    assert (run_dir / "report" / "report.md").is_file() and (run_dir / "report" / "metrics.json").is_file()


def test_disabled_mode_never_imports_wandb(tmp_path):
    """The train logger and the report stage with cluster.wandb_mode=disabled, in a fresh interpreter."""
    run_dir = eval_run(tmp_path / "toy-run")
    code = """
import sys
from pathlib import Path
from rich.console import Console
from megatron_ssd.config import SSDConfig
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import report as report_stage
from megatron_ssd.tracking import run_spec
from megatron_ssd.training.metrics import MetricsLogger

run_dir = Path(sys.argv[1])
cfg = SSDConfig(experiment="toy")
cfg.cluster.wandb_mode = "disabled"
logger = MetricsLogger(run_dir / "train" / "metrics.jsonl", enabled=True, resume_iteration=None,
                       wandb_run=run_spec(cfg, "train", run_dir=run_dir))
logger.event("end", iteration=0)
logger.close()
out = report_stage.run(cfg, StageContext(run=RunDir(run_dir), console=Console(quiet=True)))
print(out["wandb"], "wandb" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["disabled", "False"]
