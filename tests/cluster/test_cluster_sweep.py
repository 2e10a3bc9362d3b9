"""The sweep summary over fabricated run directories, the base-evaluation cache, the wandb naming, the submitit
launcher selected by cluster=slurm (multi-node points: only Slurm task 0 runs stages), and a sweep over a key
that does not exist. The real two-point sweep is in tests/integration/test_pipeline.py (Hydra's basic launcher) and
tests/cluster/test_real_slurm.py (submitit into a real Slurm)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_module
from hydra.types import RunMode

from megatron_ssd.config import SSDConfig, register
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.generation.base_eval_cache import reuse_base_evaluations
from megatron_ssd.launch import sweep_summary
from megatron_ssd.launch.cli import secondary_sweep_task
from megatron_ssd.launch.overrides import check_overrides
from megatron_ssd.rundir import RunDir
from megatron_ssd.tracking import eval_table, run_spec

SSD = str(Path(sys.executable).parent / "ssd")


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


def test_tied_cells_mark_no_best(tmp_path):
    """All-zero pass@1 (a tiny sweep) or any shared maximum: no cell is called best, the tie is stated."""
    root = tmp_path / "tgrid"
    make_point(root, 1.2, 0.8, {0.7: 0.0}, decode_only=0.0)
    make_point(root, 1.6, 0.8, {0.7: 0.0}, decode_only=0.0)
    assert sweep_summary.main([str(root)]) == 0
    summary = json.loads((root / "sweep_summary.json").read_text())
    assert summary["best"] == {} and summary["ties"] == {"0.8": {"pass@1": 0.0, "cells": 2}}
    md = (root / "sweep_summary.md").read_text()
    assert "**best**" not in md and "No best cell at top-p 0.8: 2 cells tie at SSD pass@1 0.0%." in md
    assert (root / "sweep_top_p0.8.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](sweep_top_p0.8.png)" in md


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


def composed(*overrides: str):
    """The config with Hydra's own section, as `ssd` composes it."""
    register()
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_cluster_slurm_selects_the_submitit_launcher():
    slurm = composed("cluster=slurm", "experiment=ssd_qwen3_4b_instruct")
    local = composed("experiment=ssd_qwen3_4b_instruct", "cluster=local")
    assert slurm.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert slurm.hydra.launcher.gpus_per_node == 8 and slurm.hydra.launcher.max_num_timeout > 0
    assert slurm.cluster.launcher == "slurm"
    assert local.hydra.launcher._target_.endswith("BasicLauncher") and local.cluster.launcher == "local"


def test_cluster_slurm_cpu_asks_slurm_for_no_gpu_and_no_cpu_count():
    cpu = composed("cluster=slurm_cpu", "experiment=cpu_default")
    assert cpu.cluster.launcher == "slurm"
    assert cpu.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert cpu.hydra.launcher.gpus_per_node is None and cpu.hydra.launcher.cpus_per_task is None
    assert cpu.hydra.launcher.nodes == cpu.parallel.nnodes == 1 and cpu.hydra.launcher.additional_parameters.exclusive
    assert cpu.hydra.launcher.max_num_timeout > 0 and "export SLURM_WAIT=0" in cpu.hydra.launcher.setup


def test_a_slurm_sweep_point_gets_the_nodes_of_its_layout():
    big = composed("cluster=slurm", "experiment=ssd_qwen3_30b_a3b_instruct")
    small = composed("cluster=slurm", "experiment=ssd_qwen3_4b_instruct")
    assert big.parallel.nnodes == 4
    assert (big.hydra.launcher.nodes, big.hydra.launcher.tasks_per_node, big.hydra.launcher.gpus_per_node) == (4, 1, 8)
    assert small.hydra.launcher.nodes == small.parallel.nnodes == 1
    assert "export SLURM_WAIT=0" in big.hydra.launcher.setup


def ssd(*args, cwd, **env):
    return subprocess.run([SSD, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, **env,
                               "COLUMNS": "400"})


def test_only_task_0_of_a_multi_node_sweep_point_runs_stages(tmp_path):
    """submitit calls the job function once per node; SLURM_PROCID tells the tasks apart (fake Slurm env)."""
    run_dir, sweep_dir = tmp_path / "run", tmp_path / "multirun"
    point = ["prompts", "-m", f"run_dir={run_dir}", f"hydra.sweep.dir={sweep_dir}"]
    other = ssd(*point, cwd=tmp_path, SLURM_PROCID="1", SUBMITIT_EXECUTOR="slurm")
    assert other.returncode == 0, other.stderr
    assert "Slurm task 1" in other.stderr and not run_dir.exists()  # returned before any stage
    first = ssd(*point, cwd=tmp_path, SLURM_PROCID="0", SUBMITIT_EXECUTOR="slurm")
    assert first.returncode == 0, first.stderr
    assert (run_dir / "prompts" / ".done").exists()
    # outside a sweep (the sbatch pipeline's `srun ssd sample` engines have SLURM_PROCID > 0) every task runs
    assert not secondary_sweep_task(RunMode.RUN, {"SLURM_PROCID": "3"})
    assert secondary_sweep_task(RunMode.MULTIRUN, {"SLURM_PROCID": "3"})
    assert not secondary_sweep_task(RunMode.MULTIRUN, {})


def test_a_sweep_over_a_key_that_does_not_exist_is_one_paragraph(tmp_path):
    out = ssd("run", "-m", "sample.nonexistent_key=1,2", f"runs_root={tmp_path / 'runs'}",
              f"hydra.sweep.dir={tmp_path / 'multirun'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert "\n\n" not in out.stderr.strip() and "Traceback" not in out.stderr  # one paragraph (rich may wrap it)
    message = " ".join(out.stderr.split())
    assert message.startswith("error: sample.nonexistent_key is not a config key, so the sweep over it cannot start")
    assert "sample.temperature" in message and "Nothing was started" in message
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_override_keys_are_checked_against_the_schema():
    with pytest.raises(ConfigError, match="sample.temprature is not a config key, so it cannot be set; the closest "
                                          "valid keys are sample.temperature"):
        check_overrides(["sample.temprature=1.2"])
    with pytest.raises(ConfigError, match="temperature_grid .* sweep over it .* closest valid keys are eval.temperat"):
        check_overrides(["temperature_grid=1,2"])
    with pytest.raises(ConfigError, match="qq is not a config key.*the sections are model, data, sample"):
        check_overrides(["qq=1"])
    # schema keys, list items, sections chosen as groups, Hydra's own keys and groups, flags: left to Hydra
    check_overrides(["-m", "--cfg", "job", "sample.temperature=1.1,1.5", "data.mix.0.weight=2", "model=smollm2_135m",
                     "experiment=ssd_qwen3_4b_instruct", "hydra.sweep.dir=x", "hydra/launcher=basic", "~eval.k",
                     "cluster.rdzv_join_timeout_s=60", "stage=run"])


def test_the_sweep_task_function_pickles_by_reference():
    """submitit sends each point's task function to its Slurm job with cloudpickle: by reference (module and name),
    not by value with the CLI module's console, which holds a lock and the terminal's file and cannot be pickled."""
    import cloudpickle

    from megatron_ssd.launch import cli

    task = cli.hydra_main.__wrapped__
    assert cloudpickle.loads(cloudpickle.dumps(task)) is task
