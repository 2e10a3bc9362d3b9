"""Stage `evaluate`: every model x decoding setting of the arm -> eval/<label>/{results.jsonl, summary.json}.

Labels: ``base`` (base model at its official evaluation decoding; reused from `diagnose`), ``base_T<t>`` (the
decode-only baseline: the base model at the training temperature with the training top-k/top-p, and at each
`eval.temperature_sweep` value with the evaluation truncation), ``ssd`` and ``ssd_T<t>`` (the exported SSD model,
unless arm=decode_only), ``round1`` (in round 2: round 1's SSD model), and ``eval/ssd/collapse.json`` (the anti-collapse battery, SSD vs base). Every label after
the base is sliced by the base model's difficulty quartiles so per-difficulty deltas compare like with like.
"""
from __future__ import annotations

from dataclasses import replace

from rich.table import Table

from ..config import SSDConfig
from ..evaluation.gate import load_collapse
from ..generation.engine import Decoding, engine_options, shared_engine
from ..generation.evalrun import evaluate_label, label_dir
from ..models.base_model import resolve_base_model
from ..rounds import latest_export
from ..rundir import atomic_write_json
from . import StageContext
from .prompts import load_prompts


def _fmt_t(t: float) -> str:
    return f"{t:g}"


def decodings(cfg: SSDConfig) -> dict[str, Decoding]:
    """Suffix -> decoding: "" is the official setting, "_T<t>" the sweep (the training decoding included)."""
    official = Decoding.from_config(cfg.eval)
    out = {"": official}
    train = Decoding.from_config(cfg.sample)
    out[f"_T{_fmt_t(train.temperature)}"] = replace(train, max_tokens=official.max_tokens, stop=official.stop)
    for t in cfg.eval.temperature_sweep:
        out.setdefault(f"_T{_fmt_t(t)}", replace(official, temperature=t))
    return out


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    problems = load_prompts(ctx.run.path, "eval")
    models = [("base", resolve_base_model(cfg.model))]
    if cfg.round == 2:
        models.append(("round1", latest_export(cfg.prev_run_dir)))
    if cfg.arm != "decode_only":
        models.append(("ssd", latest_export(ctx.run.path)))
    summaries: dict[str, dict] = {}
    difficulty_of = None
    for name, path in models:
        engine = shared_engine(path, engine_options(cfg))
        for suffix, decoding in decodings(cfg).items():
            label = name + suffix
            summaries[label] = evaluate_label(engine, label, problems, decoding, cfg=cfg, run_dir=ctx.run.path,
                                              model_name=f"{cfg.model.name}:{name}", console=ctx.console,
                                              difficulty_of=difficulty_of)
            if label == "base":
                difficulty_of = summaries["base"].get("difficulty_of")
    collapse = None
    if "ssd" in summaries:
        collapse = load_collapse(ctx.run.path, "base", "ssd")
        if collapse is not None:
            atomic_write_json(label_dir(ctx.run.path, "ssd") / "collapse.json", collapse)
    ctx.console.print(results_table(summaries, cfg))
    if collapse is not None:
        for alert in collapse.get("alerts", []):
            ctx.console.print(f"[bold red]collapse alert:[/] {alert.get('message', alert)}")
    return {
        "labels": sorted(summaries),
        "pass_at_k": {label: s["pass_at_k"] for label, s in summaries.items()},
        "collapse_alerts": len(collapse.get("alerts", [])) if collapse else None,
    }


def results_table(summaries: dict[str, dict], cfg: SSDConfig) -> Table:
    ks = sorted({int(k) for s in summaries.values() for k in s.get("pass_at_k", {})})
    table = Table(title=f"pass@k (%) with {int(100 * cfg.eval.ci_level)}% CIs, n={cfg.eval.n}")
    table.add_column("model @ decoding")
    table.add_column("T")
    for k in ks:
        table.add_column(f"pass@{k}")
    for label, s in summaries.items():
        cells = []
        for k in ks:
            est = s.get("pass_at_k", {}).get(str(k))
            cells.append(f"{100 * est['estimate']:.1f} [{100 * est['ci_low']:.1f}, {100 * est['ci_high']:.1f}]"
                         if est else "-")
        table.add_row(label, f"{s.get('temperature', '?')}", *cells)
    return table
