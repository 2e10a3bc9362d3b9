"""Stage `diagnose`: the base model's pass@1 / pass@k on the held-out set -> diagnose/verdict.json.

The precondition test of SSD (DESIGN.md §7, `evaluation.verdict`): SSD can only sharpen what the model already
samples, so the pass@k − pass@1 gap of the base model, measured before any GPU-hours go into sampling and training,
says whether there is room (GO-SSD), whether only the verifier-aware arm is worth it, or what to do instead.
"""
from __future__ import annotations

from rich.table import Table

from ..config import SSDConfig
from ..evaluation.verdict import decide
from ..generation.engine import Decoding, engine_options, shared_engine
from ..generation.evalrun import evaluate_label, passk_line
from ..models.base_model import resolve_base_model
from ..rundir import atomic_write_json
from . import StageContext
from .prompts import load_prompts


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    problems = load_prompts(ctx.run.path, "eval")
    model_path = resolve_base_model(cfg.model)
    engine = shared_engine(model_path, engine_options(cfg))
    summary = evaluate_label(engine, "base", problems, Decoding.from_config(cfg.eval), cfg=cfg, run_dir=ctx.run.path,
                             model_name=cfg.model.name, console=ctx.console)
    prompts_info = (ctx.run.read_manifest() or {}).get("data", {}).get("prompts", {})
    verdict = decide(summary, gap_threshold_pp=cfg.eval.gap_threshold_pp,
                     has_tests=any(p.has_tests for p in problems),
                     contamination_checked="contaminated" in prompts_info, requested_k=cfg.eval.k,
                     ci_level=cfg.eval.ci_level, bootstrap_samples=cfg.eval.bootstrap_samples, seed=cfg.seed)
    atomic_write_json(ctx.run.stage_dir("diagnose") / "verdict.json", verdict)
    table = Table(title=f"diagnose: {cfg.model.name} on {len(problems)} held-out problems (n={cfg.eval.n}, "
                        f"T={cfg.eval.temperature})")
    table.add_column("verdict")
    table.add_column("pass@k with CIs")
    table.add_row(str(verdict["verdict"]), passk_line(summary))
    ctx.console.print(table)
    ctx.console.print(f"reason: {verdict.get('reason', '')}")
    for weakness in verdict.get("weaknesses", []):
        ctx.console.print(f"[yellow]weakness:[/] {weakness}")
    return {"verdict": verdict["verdict"], "pass_at_k": summary["pass_at_k"], "num_problems": summary["num_problems"]}
