"""Run directory: atomic writes, manifest, config-hash guard, done markers, the typed readers of its files."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_ssd.config import SSDConfig
from megatron_ssd.config.schema import ARMS
from megatron_ssd.errors import ConfigError, DataError, SSDError
from megatron_ssd.rundir import (CHAINS, RunDir, atomic_path, atomic_write_json, config_hash, default_run_dir,
                                 read_config, write_config)


def cfg_at(tmp_path, **changes):
    cfg = SSDConfig(run_dir=str(tmp_path / "run"))
    for key, value in changes.items():
        section, field = key.split("__")
        setattr(getattr(cfg, section), field, value)
    return cfg


def test_manifest_records_provenance(tmp_path):
    run = RunDir.open(cfg_at(tmp_path))
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["config_hash"] == config_hash(cfg_at(tmp_path))
    assert manifest["packages"]["python"] and "torch" in manifest["packages"]
    assert manifest["config"]["sample"]["temperature"] == 1.6


def test_same_config_reopens_and_different_config_is_refused(tmp_path):
    RunDir.open(cfg_at(tmp_path))
    RunDir.open(cfg_at(tmp_path))  # same config: fine
    with pytest.raises(ConfigError, match=r"sample.temperature: 1.6 -> 0.9"):
        RunDir.open(cfg_at(tmp_path, sample__temperature=0.9))


def test_operational_keys_do_not_change_identity(tmp_path):
    a = cfg_at(tmp_path)
    b = cfg_at(tmp_path, eval__workers=16, cluster__wandb_mode="online")
    b.stage = "evaluate"
    assert config_hash(a) == config_hash(b)
    RunDir.open(a)
    RunDir.open(b)


def test_default_run_dir_is_named_after_experiment_and_hash():
    cfg = SSDConfig(experiment="cpu_default")
    assert default_run_dir(cfg).name == f"cpu_default-{config_hash(cfg)[:10]}"


def test_atomic_path_keeps_previous_artifact_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_directory(tmp_path):
    with atomic_path(tmp_path / "folder") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("x")
    assert (tmp_path / "folder" / "a").read_text() == "x"


def test_done_markers(tmp_path):
    run = RunDir.open(cfg_at(tmp_path))
    assert not run.is_done("prompts")
    run.mark_done("prompts", {"train": 3}, 1.25)
    assert run.is_done("prompts") and run.done_info("prompts")["summary"] == {"train": 3}
    assert run.read_manifest()["stages"]["prompts"]["seconds"] == 1.25


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    run = RunDir.open(cfg_at(tmp_path))
    run.manifest_path.write_text("{not json")
    with pytest.raises(ConfigError, match="manifest.json: not valid JSON"):
        RunDir.open(cfg_at(tmp_path))


def test_atomic_write_json_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert os.listdir(tmp_path) == ["x.json"]


def test_fields_added_by_a_newer_version_at_default_do_not_refuse(tmp_path):
    run = RunDir.open(cfg_at(tmp_path))
    manifest = run.read_manifest()
    del manifest["config"]["eval"]["gate_min_lift_pp"]  # as written before the field existed
    manifest["config_hash"] = "written-by-an-older-version"
    run.write_manifest(manifest)
    RunDir.open(cfg_at(tmp_path))
    with pytest.raises(ConfigError, match=r"eval.gate_min_lift_pp: '<absent>' -> 5.0"):
        RunDir.open(cfg_at(tmp_path, eval__gate_min_lift_pp=5.0))


def test_stored_config_reads_back_typed(tmp_path):
    cfg = cfg_at(tmp_path, sample__temperature=1.2)
    run = RunDir.open(cfg)
    typed = RunDir(run.path).config()
    assert isinstance(typed, SSDConfig) and typed.sample.temperature == 1.2
    assert run.config_value("eval.gate_min_lift_pp") == cfg.eval.gate_min_lift_pp
    assert run.config_value("eval.no_such_key", "dflt") == "dflt"
    assert RunDir(tmp_path / "nowhere").config_value("eval.k", 7) == 7


def test_config_file_round_trip_and_schema_check(tmp_path):
    cfg = cfg_at(tmp_path, sample__temperature=0.8)
    write_config(cfg, tmp_path / "c.yaml")
    assert read_config(tmp_path / "c.yaml").sample.temperature == 0.8
    (tmp_path / "bad.yaml").write_text("sample:\n  no_such_field: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not a valid megatron-ssd config"):
        read_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no such config"):
        read_config(tmp_path / "missing.yaml")


def test_prompts_by_split(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(DataError, match="prompts.parquet is missing; run `ssd stage=prompts"):
        run.prompts("train")
    run.prompts_path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"problem_id": "a", "split": "train"}, {"problem_id": "b", "split": "eval"},
                                         {"problem_id": "c", "split": "train"}]), run.prompts_path)
    assert run.prompts("train").column("problem_id").to_pylist() == ["a", "c"]
    assert run.prompts("eval").column("problem_id").to_pylist() == ["b"]
    assert run.prompts().num_rows == 3
    run.prompts_path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        run.prompts("train")


def test_eval_labels_summaries_and_results(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.eval_labels() == [] and run.eval_summary("base") is None and run.eval_results("base") is None
    run.write_eval_summary("base", {"num_problems": 3})
    run.write_eval_results("base", [{"prompt_id": "a", "passed": True}, {"prompt_id": "b", "passed": False}])
    run.write_eval_summary("base_T1.6", {"num_problems": 3})
    assert run.eval_labels() == ["base", "base_T1.6"]
    assert run.eval_summary("base") == {"num_problems": 3}
    assert [r["prompt_id"] for r in run.eval_results("base")] == ["a", "b"]
    # strict readers name the file (and line); tolerant ones (the report) note the problem and carry on
    with open(run.eval_dir("base") / "results.jsonl", "a") as f:
        f.write("\n{cut short\n")
    with pytest.raises(DataError, match=r"results.jsonl:4: not a JSON object"):
        run.eval_results("base")
    notes: list[str] = []
    assert len(run.eval_results("base", notes)) == 2 and notes == [f"{run.eval_dir('base')}/results.jsonl: a malformed "
                                                                   "line was skipped."]
    (run.eval_dir("base") / "summary.json").write_text("{")
    with pytest.raises(DataError, match="summary.json: not valid JSON"):
        run.eval_summary("base")
    assert run.eval_summary("base", notes) is None and "treated as not run" in notes[-1]


def test_verdict_collapse_and_done_records(tmp_path):
    run = RunDir.open(cfg_at(tmp_path))
    assert run.verdict() is None and run.collapse("ssd") is None
    run.write_verdict({"verdict": "GO-SSD"})
    run.write_collapse("ssd", {"alerts": []})
    assert run.verdict() == {"verdict": "GO-SSD"} and run.collapse("ssd") == {"alerts": []}
    run.mark_done("prompts", {}, 1.0)
    run.mark_done("diagnose", {"verdict": "GO-SSD"}, 2.0)
    (run.stage_dir("sample") / ".done").write_text("{broken")
    notes: list[str] = []
    assert list(run.done_records(notes)) == ["diagnose", "prompts"] and len(notes) == 1


def test_latest_export(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(SSDError, match="no exported model under .*run `ssd stage=export"):
        run.latest_export()
    folder = run.export_dir / "iter_0000010"
    folder.mkdir(parents=True)
    run.write_latest_export(folder)
    with pytest.raises(SSDError, match="names iter_0000010, which has no config.json"):
        run.latest_export()
    (folder / "config.json").write_text("{}")
    assert run.latest_export() == folder


def test_every_arm_has_a_chain_of_known_stages():
    from megatron_ssd.launch.stages import STAGE_NAMES

    assert set(CHAINS) == set(ARMS)
    for arm, chain in CHAINS.items():
        assert set(chain) <= set(STAGE_NAMES) and chain[0] == "prompts" and chain[-1] == "report", arm
