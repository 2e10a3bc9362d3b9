"""The sweep summary over fabricated run directories, the base-evaluation cache, the wandb naming, and the
submitit launcher selected by cluster=slurm."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_module

from megatron_ssd.config import SSDConfig, register
from megatron_ssd.errors import SSDError
from megatron_ssd.generation.base_eval_cache import reuse_base_evaluations
from megatron_ssd.launch import sweep_summary
from megatron_ssd.rundir import RunDir
from megatron_ssd.tracking import eval_table, run_spec


def est(x: float) -> dict:
    return {"estimate": x, "ci_low": x - 0.05, "ci_high": x + 0.05}


def make_point(root: Path, t_train: float, top_p: float, ssd: dict[float, float], decode_only: float,
               **changes) -> Path:
    """A run directory whose config has these decodings and whose eval/ holds ssd summaries per T_eval."""
    t_evals = sorted(ssd)
    cfg = SSDConfig(runs_root=str(root), experiment="grid")
    cfg.sample = replace(cfg.sample, temperature=t_train, top_p=top_p)
    cfg.eval = replace(cfg.eval, temperature=t_evals[0], temperature_sweep=t_evals[1:], k=[1, 2])
    for key, value in changes.items():
        group, leaf = key.split(".")
        setattr(cfg, group, replace(getattr(cfg, group), **{leaf: value}))
    run = RunDir.open(cfg)
    for t_eval, p1 in ssd.items():
        label = "ssd" if t_eval == t_evals[0] else f"ssd_T{t_eval:g}"
        run.write_eval_summary(label, {"pass_at_k": {"1": est(p1), "2": est(p1 + 0.1)}})
    run.write_eval_summary(f"base_T{t_train:g}", {"pass_at_k": {"1": est(decode_only)}})
    run.write_eval_summary("base", {"pass_at_k": {"1": est(0.3)}})
    return run.path


def test_summary_table_heatmaps_best_cell_and_decode_only(tmp_path):
    root = tmp_path / "tgrid"
    make_point(root, 1.2, 0.8, {0.7: 0.40, 1.1: 0.45}, decode_only=0.35)
    best = make_point(root, 1.6, 0.8, {0.7: 0.42, 1.1: 0.52}, decode_only=0.33)
    make_point(root, 1.6, 0.95, {0.7: 0.38, 1.1: 0.41}, decode_only=0.30)
    running = SSDConfig(runs_root=str(root), experiment="grid")
    running.sample = replace(running.sample, temperature=2.0)
    running.eval = replace(running.eval, k=[1, 2])
    RunDir.open(running)  # a point still running: no summaries yet
    assert sweep_summary.main([str(root)]) == 0
    summary = json.loads((root / "sweep_summary.json").read_text())
    assert summary["points"] == 4 and summary["k"] == "2" and len(summary["cells"]) == 6
    b = summary["best"]["0.8"]
    assert (b["t_train"], b["t_eval"], b["run_dir"]) == (1.6, 1.1, str(best))
    assert b["pass@1"]["estimate"] == 0.52 and b["decode_only_pass@1"]["estimate"] == 0.33
    assert summary["best"]["0.95"]["t_eval"] == 1.1
    assert list(summary["missing"].values()) == [["ssd"]]
    md = (root / "sweep_summary.md").read_text()
    assert "| 1.6 | 0.8 | 1.1 | 52.0 [47.0, 57.0] **best** | 62.0 [57.0, 67.0] | 33.0 [28.0, 38.0] |" in md
    for png in ("sweep_top_p0.8.png", "sweep_top_p0.95.png"):
        assert (root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in md


def test_a_run_directory_of_another_experiment_is_refused_by_name(tmp_path, capsys):
    root = tmp_path / "tgrid"
    make_point(root, 1.2, 0.8, {0.7: 0.4}, decode_only=0.3)
    other = make_point(root, 1.6, 0.8, {0.7: 0.4}, decode_only=0.3, **{"train.lr": 1e-3})
    with pytest.raises(SSDError, match="belongs to another experiment") as err:
        sweep_summary.collect(root)
    assert str(other) in str(err.value) and "train.lr" in str(err.value)
    assert sweep_summary.main([str(root)]) == sweep_summary.EXIT_USER_ERROR
    assert not (root / "sweep_summary.json").exists()


def test_an_empty_folder_is_one_clear_error(tmp_path):
    with pytest.raises(SSDError, match="holds no run directory"):
        sweep_summary.collect(tmp_path)


def write_eval_prompts(run: Path) -> None:
    (run / "prompts").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"problem_id": ["a", "b"], "question": ["q1", "q2"], "split": ["eval", "eval"]}),
                   run / "prompts" / "prompts.parquet")


def test_base_evaluation_is_computed_once_and_reused_under_concurrency(tmp_path):
    from megatron_ssd.generation.engine import Decoding

    cfg = SSDConfig()
    decodings = {"base": Decoding.from_config(cfg.eval)}
    runs = [tmp_path / f"run{i}" for i in range(3)]
    computed = []

    def point(run: Path) -> None:
        write_eval_prompts(run)
        with reuse_base_evaluations(cfg, run, decodings, tmp_path / "cache") as status:
            if status["base"] == "computed":
                computed.append(run)
                (run / "eval" / "base").mkdir(parents=True)
                (run / "eval" / "base" / "summary.json").write_text(json.dumps({"from": run.name}))

    threads = [threading.Thread(target=point, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(computed) == 1
    for run in runs:
        assert json.loads((run / "eval" / "base" / "summary.json").read_text()) == {"from": computed[0].name}
    # another eval set is another key
    other = tmp_path / "other"
    write_eval_prompts(other)
    pq.write_table(pa.table({"problem_id": ["c"], "question": ["q3"], "split": ["eval"]}),
                   other / "prompts" / "prompts.parquet")
    with reuse_base_evaluations(cfg, other, decodings, tmp_path / "cache") as status:
        assert status == {"base": "computed"}


def test_wandb_conventions():
    cfg = SSDConfig(experiment="ssd_qwen3_4b_instruct")
    spec = run_spec(cfg, "train", run_dir="runs/ssd_qwen3_4b_instruct-abc")
    assert (spec.project, spec.group, spec.job_type, spec.name, spec.mode) == (
        "megatron-ssd", "ssd_qwen3_4b_instruct", "train", "ssd_qwen3_4b_instruct-abc/train", "offline")
    assert spec.config["sample"]["temperature"] == cfg.sample.temperature and "T_train:1" in " ".join(spec.tags)
    swept = run_spec(replace(cfg, runs_root="runs/tgrid"), "evaluate", run_dir="runs/tgrid/x")
    assert swept.group == "sweep-tgrid" and swept.job_type == "evaluate"
    cols, rows = eval_table({"ssd": {"model": "m", "temperature": 1.1, "pass_at_k": {"10": est(0.6), "1": est(0.4)}}})
    assert [r[cols.index("k")] for r in rows] == [1, 10] and rows[0][cols.index("pass_at_k")] == 0.4


def test_cluster_slurm_selects_the_submitit_launcher():
    register()
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        slurm = compose("config", overrides=["cluster=slurm", "experiment=ssd_qwen3_4b_instruct"],
                        return_hydra_config=True)
        local = compose("config", overrides=["experiment=ssd_qwen3_4b_instruct", "cluster=local"],
                        return_hydra_config=True)
    assert slurm.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert slurm.hydra.launcher.gpus_per_node == 8 and slurm.hydra.launcher.max_num_timeout > 0
    assert slurm.cluster.launcher == "slurm"
    assert local.hydra.launcher._target_.endswith("BasicLauncher") and local.cluster.launcher == "local"
