"""`ssd sweep-summary DIR`: read the run directories of a temperature/truncation sweep together.

A sweep (`ssd -m runs_root=runs/tgrid sample.temperature=1.2,1.6,2.0 sample.top_p=0.8,0.95 eval.temperature=0.7,1.1`)
leaves one run directory per point under DIR. This collects every point into one table and, for each training
top-p, heatmaps of SSD's pass@1 and pass@k (95% CIs in the cells) over T_train x T_eval, with the best cell
outlined and the decode-only baseline (the base model decoded at T_train, no training) in a column beside the
grid: the comparison the paper's temperature grid leaves out. T_eval values come from `eval.temperature` (label
`ssd`) and `eval.temperature_sweep` (labels `ssd_T<t>`). Writes DIR/sweep_summary.{md,json} and
DIR/sweep_top_p<p>.png.

Points must be one experiment: every semantic config key other than the swept decodings has to agree, so a
run directory of another experiment under DIR is refused by name. Points still running are listed as missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402

from megatron_ssd.errors import DataError, SSDError  # noqa: E402
from megatron_ssd.evaluation.report.formatting import estimate_with_ci  # noqa: E402
from megatron_ssd.tracking import run_spec, start_run  # noqa: E402
from megatron_ssd.rundir import (RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text,  # noqa: E402
                                  config_diff, drop_operational)

# The axes a sweep varies; every other semantic key must agree between points.
AXES = ("sample.temperature", "sample.top_p", "eval.temperature", "eval.temperature_sweep")
EXIT_USER_ERROR = 2


@dataclass
class Cell:
    """One (T_train, top-p, T_eval) result of SSD, with the decode-only baseline at that T_train."""

    run_dir: str
    t_train: float
    top_p: float
    t_eval: float
    pass_at_k: dict[str, dict[str, Any]]  # "<k>" -> {estimate, ci_low, ci_high}
    decode_only: dict[str, dict[str, Any]] | None
    base: dict[str, dict[str, Any]] | None


@dataclass
class Point:
    run_dir: str
    t_train: float
    top_p: float
    t_evals: list[float]
    cells: list[Cell] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)  # the semantic keys that must agree across points


def read_point(path: Path) -> Point:
    """Everything the summary needs from one run directory (the only place that reads it)."""
    run = RunDir(path)
    cfg = run.config()
    fixed = drop_operational(run.stored_config())
    for dotted in AXES:
        group, leaf = dotted.split(".")
        fixed.get(group, {}).pop(leaf, None)
    point = Point(str(path), cfg.sample.temperature, cfg.sample.top_p,
                  sorted({cfg.eval.temperature, *cfg.eval.temperature_sweep}), fixed=fixed)
    base = run.eval_summary("base")
    decode_only = run.eval_summary(f"base_T{cfg.sample.temperature:g}")
    for t_eval in point.t_evals:
        label = "ssd" if t_eval == cfg.eval.temperature else f"ssd_T{t_eval:g}"
        summary = run.eval_summary(label)
        if summary is None or not summary.get("pass_at_k"):
            point.missing.append(label)
            continue
        point.cells.append(Cell(str(path), point.t_train, point.top_p, t_eval, summary["pass_at_k"],
                                decode_only.get("pass_at_k") if decode_only else None,
                                base.get("pass_at_k") if base else None))
    return point


def collect(root: Path) -> list[Point]:
    """Every run directory under `root` (one level, or `root` itself), checked to be one experiment."""
    if not root.is_dir():
        raise DataError("no such directory; give the folder that holds the sweep's run directories "
                        "(the sweep's runs_root, e.g. runs/tgrid).", path=str(root))
    dirs = [root] if RunDir(root).read_manifest() else sorted(
        p for p in root.iterdir() if p.is_dir() and RunDir(p).read_manifest() is not None)
    if not dirs:
        raise DataError("holds no run directory (no */manifest.json). Run the sweep with runs_root=<this folder>, "
                        "e.g. `ssd -m runs_root=runs/tgrid sample.temperature=1.2,1.6 stage=run`.", path=str(root))
    points = [read_point(d) for d in dirs]
    reference = points[0]
    for p in points[1:]:
        diff = config_diff(reference.fixed, p.fixed)
        if diff:
            shown = "; ".join(diff[:6])
            raise SSDError(f"{p.run_dir} belongs to another experiment than {reference.run_dir}: they differ in "
                           f"{shown}{' ...' if len(diff) > 6 else ''}. A sweep summary compares points that differ "
                           f"only in {', '.join(AXES)}; move that run directory out of {root} or summarise it "
                           "separately.")
    return points


def _est(block: dict | None, k: str) -> dict | None:
    return (block or {}).get(k)


def summarize(points: list[Point], k: str | None = None) -> dict[str, Any]:
    cells = [c for p in points for c in p.cells]
    ks = sorted({kk for c in cells for kk in c.pass_at_k}, key=int)
    k = k or (ks[-1] if ks else "1")
    best: dict[str, dict] = {}
    ties: dict[str, dict] = {}  # top-p -> the tied maximum: no cell is marked best where several share it
    for top_p in sorted({c.top_p for c in cells}):
        group = [c for c in cells if c.top_p == top_p and _est(c.pass_at_k, "1")]
        if not group:
            continue
        top = max(c.pass_at_k["1"]["estimate"] for c in group)
        leaders = [c for c in group if c.pass_at_k["1"]["estimate"] == top]
        if len(leaders) > 1:
            ties[f"{top_p:g}"] = {"pass@1": top, "cells": len(leaders)}
            continue
        b = leaders[0]
        best[f"{top_p:g}"] = {"t_train": b.t_train, "t_eval": b.t_eval, "run_dir": b.run_dir,
                              "pass@1": b.pass_at_k["1"], "decode_only_pass@1": _est(b.decode_only, "1"),
                              "base_pass@1": _est(b.base, "1")}
    return {"schema": "megatron-ssd/sweep-summary/v1", "k": k, "ks": ks, "cells": [asdict(c) for c in cells],
            "best": best, "ties": ties, "missing": {p.run_dir: p.missing for p in points if p.missing},
            "points": len(points)}


def markdown(summary: dict[str, Any], images: list[str]) -> str:
    k = summary["k"]
    lines = ["# Sweep summary", "",
             f"{summary['points']} points; pass@1 and pass@{k} in % with 95% CIs. Decode-only = the base model "
             "decoded at T_train (no training); base = the base model at the evaluation decoding.", "",
             f"| T_train | top-p | T_eval | SSD pass@1 | SSD pass@{k} | decode-only pass@1 | base pass@1 | run |",
             "|---|---|---|---|---|---|---|---|"]
    best = {(b["run_dir"], b["t_eval"]) for b in summary["best"].values()}
    for c in sorted(summary["cells"], key=lambda c: (c["top_p"], c["t_train"], c["t_eval"])):
        mark = " **best**" if (c["run_dir"], c["t_eval"]) in best else ""
        ssd1, ssdk = estimate_with_ci(_est(c["pass_at_k"], "1")), estimate_with_ci(_est(c["pass_at_k"], k))
        decode1, base1 = estimate_with_ci(_est(c["decode_only"], "1")), estimate_with_ci(_est(c["base"], "1"))
        lines.append(f"| {c['t_train']:g} | {c['top_p']:g} | {c['t_eval']:g} | {ssd1}{mark} | {ssdk} | {decode1} | "
                     f"{base1} | {Path(c['run_dir']).name} |")
    for top_p, b in summary["best"].items():
        lines.append(f"\nBest at top-p {top_p}: T_train {b['t_train']:g}, T_eval {b['t_eval']:g}: SSD pass@1 "
                     f"{estimate_with_ci(b['pass@1'])} vs decode-only {estimate_with_ci(b['decode_only_pass@1'])} "
                     f"and base {estimate_with_ci(b['base_pass@1'])}.")
    for top_p, tie in summary.get("ties", {}).items():
        lines.append(f"\nNo best cell at top-p {top_p}: {tie['cells']} cells tie at SSD pass@1 "
                     f"{100 * tie['pass@1']:.1f}%.")
    for run_dir, labels in summary["missing"].items():
        lines.append(f"\nMissing (not evaluated yet): {run_dir}: {', '.join(labels)}")
    lines += ["", *[f"![heatmap]({name})" for name in images], ""]
    return "\n".join(lines)


def heatmap_png(summary: dict[str, Any], top_p: str) -> bytes:
    """pass@1 and pass@k panels over T_train (rows) x T_eval (columns), plus the decode-only column."""
    import io

    cells = [c for c in summary["cells"] if f"{c['top_p']:g}" == top_p]
    rows = sorted({c["t_train"] for c in cells})
    cols = sorted({c["t_eval"] for c in cells})
    best = summary["best"].get(top_p)
    ks = ["1", summary["k"]] if summary["k"] != "1" else ["1"]
    fig, axes = plt.subplots(1, len(ks), figsize=(2.2 * (len(cols) + 1) * len(ks) + 1, 1.1 * len(rows) + 1.8),
                             squeeze=False)
    for ax, k in zip(axes[0], ks):
        grid = [[float("nan")] * (len(cols) + 1) for _ in rows]
        text = [[""] * (len(cols) + 1) for _ in rows]
        for c in cells:
            i, j = rows.index(c["t_train"]), cols.index(c["t_eval"])
            est = _est(c["pass_at_k"], k)
            if est:
                grid[i][j], text[i][j] = 100 * est["estimate"], estimate_with_ci(est).replace(" [", "\n[")
            base = _est(c["decode_only"], k)
            if base:
                grid[i][-1], text[i][-1] = 100 * base["estimate"], estimate_with_ci(base).replace(" [", "\n[")
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols) + 1):
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7, color="white")
        ax.axvline(len(cols) - 0.5, color="black", linewidth=3)
        if best is not None and k == "1":
            i, j = rows.index(best["t_train"]), cols.index(best["t_eval"])
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=3))
        ax.set_xticks(range(len(cols) + 1), [f"{t:g}" for t in cols] + ["decode-only"])
        ax.set_yticks(range(len(rows)), [f"{t:g}" for t in rows])
        ax.set_xlabel("T_eval")
        ax.set_ylabel("T_train")
        ax.set_title(f"SSD pass@{k} (%), top-p {top_p}")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_summary(root: Path, out: Path, k: str | None = None) -> dict[str, Any]:
    summary = summarize(collect(root), k)
    images = []
    for top_p in sorted({**summary["best"], **summary["ties"]}, key=float):  # a tied grid is still drawn
        name = f"sweep_top_p{top_p}.png"
        atomic_write_bytes(out / name, heatmap_png(summary, top_p))
        images.append(name)
    summary["images"] = images
    atomic_write_json(out / "sweep_summary.json", summary)
    atomic_write_text(out / "sweep_summary.md", markdown(summary, images))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssd sweep-summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="the folder holding the sweep's run directories (its runs_root)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the files (default: DIR)")
    parser.add_argument("--k", default=None, help="the pass@k of the second heatmap (default: the largest k)")
    parser.add_argument("--wandb", action="store_true", help="also log the table and heatmaps (docs/WANDB.md)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        out = args.out or args.dir
        summary = write_summary(args.dir, out, args.k)
        if args.wandb:
            log_to_wandb(summary, out, args.dir)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return EXIT_USER_ERROR
    console.print(f"sweep summary of {summary['points']} points: {out / 'sweep_summary.md'}")
    for top_p, b in summary["best"].items():
        console.print(f"  top-p {top_p}: best T_train {b['t_train']:g} / T_eval {b['t_eval']:g}: pass@1 "
                      f"{estimate_with_ci(b['pass@1'])} (decode-only {estimate_with_ci(b['decode_only_pass@1'])})")
    for top_p, tie in summary["ties"].items():
        console.print(f"  top-p {top_p}: no best cell, {tie['cells']} cells tie at pass@1 {100 * tie['pass@1']:.1f}%")
    return 0


def log_to_wandb(summary: dict[str, Any], out: Path, root: Path) -> None:
    """The table and heatmaps as one `sweep-summary` run in the sweep's group (docs/WANDB.md)."""
    points = collect(root)
    spec = run_spec(RunDir(points[0].run_dir).config(), "sweep-summary", run_dir=out, sweep=root.name)
    run = start_run(spec)
    if run is None:
        return
    import wandb  # optional dependency; start_run has imported it already

    columns = ["t_train", "top_p", "t_eval", "pass@1", "pass@1_low", "pass@1_high", "decode_only_pass@1", "run"]
    rows = [[c["t_train"], c["top_p"], c["t_eval"], *(
        (_est(c["pass_at_k"], "1") or {}).get(x) for x in ("estimate", "ci_low", "ci_high")),
        (_est(c["decode_only"], "1") or {}).get("estimate"), Path(c["run_dir"]).name] for c in summary["cells"]]
    run.log({"sweep/table": wandb.Table(columns=columns, data=rows),
             **{f"sweep/{name}": wandb.Image(str(out / name)) for name in summary["images"]}})
    run.summary.update({"best": summary["best"]})
    run.finish()


if __name__ == "__main__":
    sys.exit(main())
