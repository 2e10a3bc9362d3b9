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


DODGE_OCTAVES = 0.05  # horizontal offset between arms at the same k, in octaves of the log2 k axis


def dodge(ks: Sequence[int], index: int, count: int) -> list[float]:
    """`ks` shifted for the `index`-th of `count` arms, symmetric around k, so that error bars of arms at the same k
    sit side by side instead of on top of each other (a factor on the log2 axis: the same visual gap at every k)."""
    factor = 2.0 ** ((index - (count - 1) / 2) * DODGE_OCTAVES)
    return [k * factor for k in ks]


def interval_title(arms: Mapping[str, Mapping[str, Any]]) -> str:
    """The intervals the summaries carry, named as the report's table names them (`ci_method`, `ci_level`)."""
    blocks = [b for s in arms.values() for b in (s.get("pass_at_k") or {}).values() if isinstance(b, Mapping)]
    methods = sorted({str(b["ci_method"]) for b in blocks if b.get("ci_method")})
    levels = sorted({float(b["ci_level"]) for b in blocks if b.get("ci_level") is not None})
    if not methods:
        return "pass@k (interval method not recorded)"
    level = f"{100 * levels[0]:g}% " if len(levels) == 1 else ""
    return f"pass@k, {level}intervals over problems: {'; '.join(methods)}"


def passk_figure(arms: Mapping[str, Mapping[str, Any]]):
    """pass@k vs k with CI bars, one line per arm (arm -> summary), dodged; None when no arm has pass@k."""
    drawn = [(name, s) for name, s in arms.items() if s.get("pass_at_k")]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, summary) in enumerate(drawn):
        pk = summary["pass_at_k"]
        ks = sorted(int(k) for k in pk)
        est = [100 * pk[str(k)]["estimate"] for k in ks]
        lo = [100 * (pk[str(k)]["estimate"] - pk[str(k)]["ci_low"]) for k in ks]
        hi = [100 * (pk[str(k)]["ci_high"] - pk[str(k)]["estimate"]) for k in ks]
        ax.errorbar(dodge(ks, i, len(drawn)), est, yerr=[lo, hi], marker="o", capsize=3, label=name,
                    color=COLORS.get(name))
    ax.set_xscale("log", base=2)
    all_ks = sorted({int(k) for _, s in drawn for k in s["pass_at_k"]})
    ax.set_xticks(all_ks)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(interval_title(dict(drawn)), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def passk_curves(arms: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """`passk_figure` as PNG bytes."""
    fig = passk_figure(arms)
    return None if fig is None else _png(fig)


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
