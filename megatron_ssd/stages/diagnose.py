"""Stage `diagnose`: the base model on the held-out set -> diagnose/verdict.json and eval/base*/.

The precondition test of SSD (`evaluation.decisions.verdict`): SSD can only sharpen what the model already
samples, so the pass@k − pass@1 gap of the base model, measured before any GPU-hours go into sampling and training,
says whether there is room (GO-SSD), whether only the verifier-aware arm is worth it, or what to do instead.

The same engine pass also evaluates the base model at the decode-only baseline's decodings (the training
temperature, and `eval.temperature_sweep`): they need no training, come almost free next to the official decoding
in one continuous batch, and the `evaluate` stage reuses them instead of loading the base model a second time.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from rich.table import Table

from ..config import SSDConfig
from ..evaluation.decisions.verdict import decide
from ..evaluation.report.formatting import passk_line
from ..generation.base_eval_cache import reuse_base_evaluations
from ..generation.engine import engine_options, shared_engine
from ..generation.evalrun import BASE_LABEL, evaluate_labels, model_decodings
from ..models.base_model import resolve_base_model
from . import StageContext
from .prompts import load_prompts


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    problems = load_prompts(ctx.run.path, "eval")
    load_engine = partial(shared_engine, resolve_base_model(cfg.model), engine_options(cfg))
    decodings = model_decodings(cfg, BASE_LABEL)
    with reuse_base_evaluations(cfg, ctx.run.path, decodings, Path(cfg.runs_root) / ".base_eval_cache"):
        summaries = evaluate_labels(load_engine, decodings, problems, cfg=cfg, run=ctx.run,
                                    model_name=f"{cfg.model.name}:base", console=ctx.console)
    summary = summaries[BASE_LABEL]
    prompts_info = (ctx.run.read_manifest() or {}).get("data", {}).get("prompts", {})
    verdict = decide(summary, gap_threshold_pp=cfg.eval.gap_threshold_pp,
                     has_tests=any(p.has_tests for p in problems),
                     contamination_checked="contaminated" in prompts_info, requested_k=cfg.eval.k,
                     ci_level=cfg.eval.ci_level, bootstrap_samples=cfg.eval.bootstrap_samples, seed=cfg.seed)
    # Ties the verdict to this run's config: the training gate (gate_training.py) refuses a verdict of another.
    verdict["config_hash"] = ctx.run.stored_config_hash()
    ctx.run.write_verdict(verdict)
    table = Table(title=f"diagnose: {cfg.model.name} on {len(problems)} held-out problems (n={cfg.eval.n})")
    table.add_column("base model @ decoding")
    table.add_column("T")
    table.add_column("pass@k with CIs")
    for label, s in summaries.items():
        table.add_row(label, f"{s['temperature']:g}", passk_line(s))
    ctx.console.print(table)
    ctx.console.print(f"verdict: [bold]{verdict['verdict']}[/] - {verdict.get('reason', '')}")
    for weakness in verdict.get("weaknesses", []):
        ctx.console.print(f"[yellow]weakness:[/] {weakness}")
    return {"verdict": verdict["verdict"], "pass_at_k": summary["pass_at_k"], "num_problems": summary["num_problems"],
            "labels": list(summaries)}
