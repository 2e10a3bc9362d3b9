"""The `ssd` command: help, errors as one paragraph, stage skipping, run-directory reuse."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_ssd.launch.cli import _translate_argv

SSD = str(Path(sys.executable).parent / "ssd")


def ssd(*args, cwd=None, env=None):
    return subprocess.run([SSD, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def test_help_lists_usage_and_groups():
    out = ssd("--help")
    assert out.returncode == 0
    assert "ssd run" in out.stdout and "experiment: cpu_default" in out.stdout and "arm=minimal" in out.stdout


def test_cfg_job_prints_composed_config():
    out = ssd("--cfg", "job", "experiment=ssd_qwen3_4b_instruct")
    assert out.returncode == 0 and "temperature: 1.6" in out.stdout and "seq_length: 65536" in out.stdout


def test_unknown_command_and_invalid_config_are_one_paragraph(tmp_path):
    out = ssd("frobnicate")
    assert out.returncode == 2 and "unknown command 'frobnicate'" in out.stderr
    out = ssd("prompts", f"run_dir={tmp_path}/r", "sample.top_p=2", "eval.n=0")
    assert out.returncode == 2
    assert "sample.top_p=2.0: must be in (0, 1]" in out.stderr and "eval.n=0" in out.stderr
    assert "Traceback" not in out.stderr
    out = ssd("prompts", f"run_dir={tmp_path}/r", "sample.top_p=2", env={"HYDRA_FULL_ERROR": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_stage_rerun_is_a_noop_and_changed_config_refused(tmp_path):
    run = tmp_path / "run"
    first = ssd("prompts", f"run_dir={run}", "data.max_eval_problems=10")
    assert first.returncode == 0, first.stderr
    assert json.loads((run / "prompts" / ".done").read_text())["summary"]["eval"] == 10
    again = ssd("stage=prompts", f"run_dir={run}")  # no semantic overrides: the stored config is reused
    assert again.returncode == 0 and "already done" in again.stderr
    changed = ssd("prompts", f"run_dir={run}", "data.max_eval_problems=20")
    assert changed.returncode == 2 and "data.max_eval_problems: 10 -> 20" in changed.stderr


def test_stage_needing_missing_input_says_what_to_run(tmp_path):
    run = tmp_path / "run"
    assert ssd("prompts", f"run_dir={run}").returncode == 0
    out = ssd("pack", f"run_dir={run}")
    assert out.returncode == 2 and "reads the output of sample" in out.stderr and "ssd stage=sample" in out.stderr


def test_bad_prompt_file_names_file_and_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "1", "question": "fine"}\n{oops}\n')
    out = ssd("prompts", f"run_dir={tmp_path}/r", "data.source=jsonl", f"data.path={bad}")
    assert out.returncode == 2 and f"{bad}:2: malformed JSON" in out.stderr.replace("\n", "")


def test_slurm_dry_run_prints_every_stage_with_engine_ranks():
    out = subprocess.run(["bash", "slurm/ssd_30b.sh", "decision.required=false"], capture_output=True, text=True,
                         timeout=60,
                         env={**os.environ, "DRY_RUN": "1", "NODES": "4",
                              "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},  # the venv's ssd
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    stages = [line.split()[2] for line in lines if line.startswith("+ ssd ")]
    assert stages == ["prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"]
    srun = next(line for line in lines if line.startswith("+ srun"))
    assert "--ntasks=16" in srun and "--gpus-per-task=2" in srun and "sample.engine_rank=\\$SLURM_PROCID" in srun


@pytest.mark.parametrize("argv, expected", [
    (["run", "-m", "a=1,2"], ["-m", "a=1,2", "stage=run"]),
    (["sample", "run_dir=x"], ["run_dir=x", "stage=sample"]),
    (["-v", "run", "eval.n=2"], ["eval.n=2", "verbose=true", "stage=run"]),
    (["--cfg", "job"], ["--cfg", "job"]),
])
def test_translate_argv_puts_the_stage_last(argv, expected):
    assert _translate_argv(argv) == expected


def test_multirun_sweep_through_the_stage_word(tmp_path):
    out = ssd("prompts", "-m", "data.max_eval_problems=6,7", f"runs_root={tmp_path}/runs", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    done = sorted(json.loads(p.read_text())["summary"]["eval"] for p in (tmp_path / "runs").glob("*/prompts/.done"))
    assert done == [6, 7]


@pytest.mark.parametrize("command, usage", [("sweep-summary", "usage: ssd sweep-summary"),
                                            ("select", "usage: ssd select")])
def test_subcommands_dispatch_before_hydra(command, usage):
    out = ssd(command, "--help")
    assert out.returncode == 0 and usage in out.stdout, out.stdout + out.stderr


def test_help_documents_exit_status_and_logs():
    out = ssd("--help")
    assert "4 stopped by the precondition verdict" in out.stdout and "logs/<stage>.log" in out.stdout
