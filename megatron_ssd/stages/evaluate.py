"""Stage `evaluate`: every model x decoding of the arm -> eval/<label>/{results.jsonl, summary.json}.

Labels (`evalrun.model_decodings`): ``base`` (the base model at its official evaluation decoding) and ``base_T<t>``
(the decode-only baseline: the base model at the training decoding, and at each `eval.temperature_sweep` value),
both produced by `diagnose` and reused here; ``ssd`` and ``ssd_T<t>`` for the sweep (the exported SSD model,
unless arm=decode_only); ``round1`` (in round 2: round 1's SSD model); and ``eval/ssd/collapse.json`` (the
anti-collapse battery, SSD vs base); with `eval.mechanism.enabled`, ``eval/mechanism.json`` (locks and forks: the
SSD model against the base model's temperature frontier, teacher-forced over both models' eval samples;
docs/MECHANISM.md). Every label after the base is sliced by the base model's difficulty quartiles
so per-difficulty deltas compare like with like.
"""
from __future__ import annotations

import time
from functools import partial

from rich.table import Table

from ..config import SSDConfig
from ..evaluation.decisions.gate import load_collapse
from ..evaluation.mechanism.probe import run_probe
from ..evaluation.mechanism.quantities import Truncation
from ..generation.engine import engine_options, release_engines, shared_engine
from ..evaluation.report.formatting import estimate_with_ci
from ..generation.evalrun import BASE_LABEL, evaluate_labels, model_decodings
from ..models.base_model import resolve_base_model
from ..rounds import previous_round
from . import StageContext
from .prompts import load_prompts


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    problems = load_prompts(ctx.run.path, "eval")
    models = [(BASE_LABEL, resolve_base_model(cfg.model))]
    if cfg.round == 2:
        models.append(("round1", previous_round(cfg).latest_export()))
    if cfg.arm != "decode_only":
        models.append(("ssd", ctx.run.latest_export()))
    summaries: dict[str, dict] = {}
    for name, path in models:
        decodings = model_decodings(cfg, name)
        difficulty_of = summaries[BASE_LABEL].get("difficulty_of") if BASE_LABEL in summaries else None
        load_engine = partial(shared_engine, path, engine_options(cfg))  # loaded only if a label is missing
        summaries.update(evaluate_labels(load_engine, decodings, problems, cfg=cfg, run=ctx.run,
                                         model_name=f"{cfg.model.name}:{name}", console=ctx.console,
                                         difficulty_of=difficulty_of))
    collapse = None
    if "ssd" in summaries:
        collapse = load_collapse(ctx.run, BASE_LABEL, "ssd")
        if collapse is not None:
            ctx.run.write_collapse("ssd", collapse)
    mechanism = _mechanism(cfg, ctx, dict(models)) if "ssd" in summaries and cfg.eval.mechanism.enabled else None
    ctx.console.print(results_table(summaries, cfg))
    if collapse is not None:
        for alert in collapse.get("alerts", []):
            ctx.console.print(f"[bold red]collapse alert:[/] {alert.get('message', alert)}")
    if mechanism is not None:
        ctx.console.print(f"locks and forks: {mechanism['sentence']}", highlight=False)
    return {
        "labels": sorted(summaries),
        "pass_at_k": {label: s["pass_at_k"] for label, s in summaries.items()},
        "collapse_alerts": len(collapse.get("alerts", [])) if collapse else None,
        "mechanism": None if mechanism is None else {"reading": mechanism["frontier_test"]["reading"],
                                                     "seconds": (mechanism.get("timing") or {}).get("total_s")},
    }


def _mechanism(cfg: SSDConfig, ctx: StageContext, models: dict) -> dict:
    """eval/mechanism.json, computed once per run directory (a rerun of the stage reads it back)."""
    existing = ctx.run.mechanism()
    if existing is not None:
        return existing
    m = cfg.eval.mechanism
    if m.backend == "exact":
        release_engines()  # the exact path runs transformers in this process: the engine's cores and memory back
    started = time.perf_counter()
    record = run_probe(models[BASE_LABEL], models["ssd"], {label: ctx.run.eval_samples_dir(label)
                                                           for label in (BASE_LABEL, "ssd")},
                       m=m, trunc=Truncation.from_config(cfg.sample), ci_level=cfg.eval.ci_level,
                       samples=cfg.eval.bootstrap_samples, decode_only_temperature=cfg.sample.temperature,
                       load_engine=lambda path: shared_engine(path, engine_options(cfg)))
    record["timing"]["stage_s"] = round(time.perf_counter() - started, 2)
    ctx.run.write_mechanism(record)
    return record


def results_table(summaries: dict[str, dict], cfg: SSDConfig) -> Table:
    ks = sorted({int(k) for s in summaries.values() for k in s.get("pass_at_k", {})})
    table = Table(title=f"pass@k (%) with {int(100 * cfg.eval.ci_level)}% CIs, n={cfg.eval.n}")
    table.add_column("model @ decoding")
    table.add_column("T")
    for k in ks:
        table.add_column(f"pass@{k}")
    for label, s in summaries.items():
        cells = [estimate_with_ci(s.get("pass_at_k", {}).get(str(k))) for k in ks]
        table.add_row(label, f"{s.get('temperature', '?')}", *cells)
    return table
