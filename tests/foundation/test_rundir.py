"""Run directory: atomic writes, manifest, config-hash guard, done markers."""
import json
import os

import pytest

from megatron_ssd.config import SSDConfig
from megatron_ssd.errors import ConfigError
from megatron_ssd.rundir import RunDir, atomic_path, atomic_write_json, config_hash, default_run_dir


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
