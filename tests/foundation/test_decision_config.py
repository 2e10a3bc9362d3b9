"""The `decision` group: GPU presets refuse to start undeclared, the embedded default is declared, the comparator
file is checked field by field, and the declaration lands in the manifest."""
import json

import pytest
from hydra import compose, initialize_config_module

from megatron_ssd.config import register, validate
from megatron_ssd.config.decision import ComparatorConfig, DecisionConfig, load_comparator
from megatron_ssd.errors import ConfigError
from megatron_ssd.rundir import RunDir

register()
GPU_PRESETS = ["ssd_qwen3_4b_instruct", "ssd_qwen3_4b_thinking", "ssd_qwen3_30b_a3b_instruct",
               "ssd_qwen3_30b_a3b_thinking", "ssd_llama31_8b_instruct"]


def compose_cfg(*overrides):
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def declared(comparator=("decision.comparator.kind=arm", "decision.comparator.arm=verifier_aware")):
    return ["decision.task_family='competitive programming'", "decision.task_why='the coding assistant'",
            *comparator, "decision.budget_device_hours=500", "decision.failure_cost='a week of regressions'",
            "decision.rollback.base_checkpoint=Qwen/Qwen3-4B-Instruct-2507",
            "decision.rollback.restore='serving.model=Qwen/Qwen3-4B-Instruct-2507'"]


@pytest.mark.parametrize("preset", GPU_PRESETS)
def test_gpu_presets_refuse_to_start_naming_the_empty_fields(preset):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(f"experiment={preset}"))
    msg = str(err.value)
    for key in ("decision.task_family", "decision.task_why", "decision.comparator.kind", "decision.failure_cost",
                "decision.budget_device_hours", "decision.rollback.base_checkpoint", "decision.rollback.restore"):
        assert key in msg
    partly = [o for o in declared() if not o.startswith("decision.failure_cost")]
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(f"experiment={preset}", *partly))
    assert str(err.value).split("\n  - ")[1].startswith("decision.failure_cost is empty")
    cfg = validate(compose_cfg(f"experiment={preset}", *declared()))
    assert cfg.decision.required and cfg.decision.comparator.arm == "verifier_aware"
    validate(compose_cfg(f"experiment={preset}", "cluster.dry_run=true"))  # a dry run spends nothing


def test_the_embedded_default_is_declared():
    cfg = validate(compose_cfg())
    d = cfg.decision
    assert not d.required and d.task_family and d.task_why and d.failure_cost and d.budget_device_hours > 0
    assert (d.comparator.kind, d.comparator.arm) == ("arm", "decode_only")
    assert d.rollback.base_checkpoint and d.rollback.restore
    assert DecisionConfig(**{**vars(d), "required": True}).problems() == []


def test_comparator_file_fields_one_paragraph_each(tmp_path):
    path = tmp_path / "rs_sft.json"
    path.write_text(json.dumps({"name": "rs-sft", "pass_at_k": {"1": {"estimate": 0.41, "ci_low": 0.37,
                                                                     "ci_high": 0.45}, "10": 0.62},
                                "gpu_hours": 120}))
    cfg = validate(compose_cfg("experiment=ssd_qwen3_4b_instruct",
                               *declared(("decision.comparator.kind=file", f"decision.comparator.path={path}"))))
    assert cfg.decision.comparator.path == str(path)
    c = load_comparator(path)
    assert c["pass_at_k"]["1"] == {"estimate": 0.41, "ci_low": 0.37, "ci_high": 0.45}
    assert c["pass_at_k"]["10"]["estimate"] == 0.62 and (c["device_hours"], c["device"]) == (120.0, "gpu")

    path.write_text(json.dumps({"pass_at_k": {"10": 62}, "gpu_hours": -1}))
    with pytest.raises(ConfigError) as err:
        load_comparator(path)
    paragraphs = str(err.value).split("\n\n")
    assert len(paragraphs) == 3
    assert 'no "1"' in paragraphs[0] and "outside [0, 1]" in paragraphs[1] and "gpu_hours=-1" in paragraphs[2]
    path.write_text(json.dumps({"name": "x"}))
    problems = DecisionConfig(comparator=ComparatorConfig(kind="file", path=str(path))).problems()
    assert any("missing pass_at_k" in p for p in problems) and any("missing gpu_hours" in p for p in problems)
    missing = DecisionConfig(comparator=ComparatorConfig(kind="file", path=str(tmp_path / "gone.json"))).problems()
    assert len(missing) == 1 and "no such file" in missing[0]


def test_bad_values_are_named():
    problems = DecisionConfig(comparator=ComparatorConfig(kind="model"), budget_device_hours=-3.0).problems()
    assert any("decision.comparator.kind='model'" in p for p in problems)
    assert any("decision.budget_device_hours=-3.0" in p for p in problems)
    assert any("decision.comparator.arm='dpo'" in p
               for p in DecisionConfig(comparator=ComparatorConfig(kind="arm", arm="dpo")).problems())


def test_the_declaration_and_the_mix_land_in_the_manifest(tmp_path):
    anchor = tmp_path / "anchor.jsonl"
    anchor.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    cfg = validate(compose_cfg(f"run_dir={tmp_path / 'run'}", f"data.mix=[{{path: '{anchor}', fraction: 0.1}}]"))
    stored = RunDir.open(cfg).stored_config()
    assert stored["decision"]["comparator"] == {"kind": "arm", "arm": "decode_only", "run_dir": None, "path": None}
    assert stored["decision"]["rollback"]["restore"] == cfg.decision.rollback.restore
    assert stored["decision"]["budget_device_hours"] == cfg.decision.budget_device_hours
    assert stored["data"]["mix"] == [{"path": str(anchor), "fraction": 0.1, "name": ""}]
    with pytest.raises(ConfigError, match=r"data.mix fractions sum to 1\.2"):
        validate(compose_cfg(f"data.mix=[{{path: '{anchor}', fraction: 0.6}}, {{path: '{anchor}', fraction: 0.6, "
                             "name: b}]"))
