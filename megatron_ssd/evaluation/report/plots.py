"""Report figures (matplotlib, Agg backend): each function returns PNG bytes, or None when there is nothing to draw.

Kept separate from the report text so figures can be unit-tested and reused (wandb logs the same PNGs).
"""
from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"base": "#4c72b0", "decode-only": "#dd8452", "ssd": "#55a868"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def passk_curves(arms: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """pass@k vs k with CI bars, one line per arm (arm -> summary)."""
    drawn = False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, summary in arms.items():
        pk = summary.get("pass_at_k") or {}
        if not pk:
            continue
        ks = sorted(int(k) for k in pk)
        est = [100 * pk[str(k)]["estimate"] for k in ks]
        lo = [100 * (pk[str(k)]["estimate"] - pk[str(k)]["ci_low"]) for k in ks]
        hi = [100 * (pk[str(k)]["ci_high"] - pk[str(k)]["estimate"]) for k in ks]
        ax.errorbar(ks, est, yerr=[lo, hi], marker="o", capsize=3, label=name, color=COLORS.get(name))
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    all_ks = sorted({int(k) for s in arms.values() for k in (s.get("pass_at_k") or {})})
    ax.set_xticks(all_ks)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title("pass@k (bootstrap CIs over problems)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def difficulty_deltas(rows: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Bar chart of per-difficulty pass@1 deltas with CI whiskers (rows: label, delta, ci_low, ci_high in pp)."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [r["label"] for r in rows]
    delta = [r["delta_pp"] for r in rows]
    err = [[r["delta_pp"] - r["ci_low_pp"] for r in rows], [r["ci_high_pp"] - r["delta_pp"] for r in rows]]
    ax.bar(labels, delta, yerr=err, capsize=4, color=["#55a868" if d >= 0 else "#c44e52" for d in delta])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("Δ pass@1 vs base (pp)")
    ax.set_title("per-difficulty change (paired CIs; slices with one)")
    ax.tick_params(axis="x", rotation=20)
    return _png(fig)


def temperature_sweep(series: Mapping[str, Sequence[tuple[float, float, float, float]]]) -> bytes | None:
    """pass@1 vs evaluation temperature; series: model -> [(T, estimate, ci_low, ci_high)] (fractions)."""
    if not any(len(v) for v in series.values()):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in series.items():
        if not pts:
            continue
        pts = sorted(pts)
        t = [p[0] for p in pts]
        est = [100 * p[1] for p in pts]
        err = [[100 * (p[1] - p[2]) for p in pts], [100 * (p[3] - p[1]) for p in pts]]
        ax.errorbar(t, est, yerr=err, marker="o", capsize=3, label=name, color=COLORS.get(name))
    ax.set_xlabel("evaluation temperature T_eval")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title("T_eval sweep")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def length_histograms(lengths: Mapping[str, Sequence[int]]) -> bytes | None:
    """Overlaid histograms of generation length (tokens) per arm."""
    data = {k: list(v) for k, v in lengths.items() if v}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = max(max(v) for v in data.values())
    bins = min(40, max(5, top // 8 + 1))
    for name, vals in data.items():
        ax.hist(vals, bins=bins, range=(0, top), alpha=0.5, label=name, color=COLORS.get(name))
    ax.set_xlabel("generation length (tokens)")
    ax.set_ylabel("samples")
    ax.set_title("length distribution")
    ax.legend()
    return _png(fig)
