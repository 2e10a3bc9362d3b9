"""The report's "Locks and forks" section: does SSD sharpen locks and keep forks beyond a temperature change?

It reads eval/mechanism.json (`evaluation/mechanism/probe.py`, written by the `evaluate` stage with
`eval.mechanism.enabled`) and shows the one-line reading, the frontier plot (the base model's lock tail against
its fork entropy over a grid of temperatures with the training truncation; the SSD model's point with its
intervals; the decode-only arm and the base at T = 1 on the curve), the raw base-vs-SSD quantities with paired
intervals, the split-halves null check and a few examples (docs/MECHANISM.md).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from ...rundir import RunDir
from .loading import RunData
from .plots import COLORS, _png, plt
from .rendering import Doc

MECHANISM_DOC = "docs/MECHANISM.md"
RAW_ROWS = (("lock_tail", "lock: tail 1 − p(top-1)"), ("lock_outside_top_k", "lock: mass outside training top-k"),
            ("fork_entropy_low", "fork: entropy (nats)"), ("fork_plausible", "fork: plausible continuations"))


def mechanism_section(doc: Doc, data: RunData, metrics: dict[str, Any]) -> None:
    doc.h("Locks and forks")
    record = RunDir(data.run_dir).mechanism(data.problems_notes)
    if not record:
        doc.p("not run (eval.mechanism.enabled is off, or there is no SSD model: arm decode_only). "
              f"`ssd mechanism base=... tuned=... samples=...` runs it on any two checkpoints ({MECHANISM_DOC}).")
        return
    test = record.get("frontier_test") or {}
    metrics["mechanism/reading"] = test.get("reading")
    excess = test.get("excess") or {}
    if excess.get("estimate") is not None:
        metrics["mechanism/tail_excess"] = excess["estimate"]
    doc.p(f"**{record.get('sentence', '')}**")
    doc.img("mechanism_frontier", frontier_plot(test), "lock tail against fork entropy: the temperature frontier")
    pos, s = record.get("positions") or {}, record.get("settings") or {}
    th, tr = s.get("thresholds") or {}, s.get("truncation") or {}
    shares = pos.get("shares") or {}
    doc.p(f"{pos.get('total', 0)} teacher-forced positions of {record.get('problems', '?')} problems "
          f"({s.get('sequences', '?')} samples of {', '.join(s.get('sources') or [])}): locks "
          f"{100 * shares.get('lock', 0):.1f}% (base top-1 ≥ {th.get('lock_p')}), forks "
          f"{100 * shares.get('fork', 0):.1f}% (≥ 2 tokens above {th.get('plausible_p')} or entropy ≥ "
          f"{th.get('fork_entropy')} nats), other {100 * shares.get('other', 0):.1f}%. Frontier: the base at "
          f"T = {min(s.get('temperatures') or [0]):g}…{max(s.get('temperatures') or [0]):g} with the training "
          f"truncation (top_k={tr.get('top_k')}, top_p={tr.get('top_p')}, min_p={tr.get('min_p')}); SSD at "
          f"T = {s.get('tuned_temperature')} with the same truncation. Distributions: "
          f"{'exact over the full vocabulary' if record.get('exact') else 'top-' + str(s.get('top_k_kept')) + ' (entropy bounded)'}"
          f" ({s.get('backend', '?')}); {_subsample(s.get('subsample') or {})}.")
    rows = []
    for key, name in RAW_ROWS:
        r = (record.get("raw") or {}).get(key) or {}
        if "delta" not in r:
            rows.append([name, "—", "—", "—", "—", str(r.get("problems", 0))])
            continue
        metrics[f"mechanism/{key}/delta"] = r["delta"]
        rows.append([name, f"{r['base']:.5f}", f"{r['tuned']:.5f}", f"{r['delta']:+.5f}",
                     f"[{r['ci_low']:+.5f}, {r['ci_high']:+.5f}]", str(r["problems"])])
    doc.table(["at temperature 1, no truncation", "base", "SSD", "Δ", f"{100 * s.get('ci_level', 0.95):g}% CI",
               "problems"], rows)
    null = record.get("null_check") or {}
    nx = null.get("excess") or {}
    agree = (record.get("raw") or {}).get("lock_top1_agreement")
    doc.ul([f"null check (the base against itself, frontier from even-numbered samples, its T = 1 point from the "
            f"odd ones): **{null.get('reading')}**" + (f", tail excess {nx['estimate']:+.5f} [{nx['ci_low']:+.5f}, "
                                                        f"{nx['ci_high']:+.5f}]" if nx.get("ci_low") is not None
                                                        else ""),
            f"SSD keeps the base's top-1 token at {100 * agree:.1f}% of locks" if agree is not None else
            "top-1 agreement at locks: not measured",
            f"the reading needs the tail excess interval to clear ±{test.get('min_excess')} ({MECHANISM_DOC})"])
    examples = record.get("examples") or {}
    ex_rows = [[kind, f"`{_clip(e['context'])}`", _tops(e["base_top"]), _tops(e["tuned_top"])]
               for kind in ("lock", "fork") for e in examples.get(kind, [])]
    doc.table(["class", "context (last tokens)", "base top-3", "SSD top-3"], ex_rows)


def _subsample(sub: dict) -> str:
    """The declared subsample in words (0 = all)."""
    def part(key, unit, all_text):
        n = sub.get(key) or 0
        return f"{n} {unit}" if n else all_text
    return (f"subsample: {part('max_problems', 'problems', 'all common problems')}"
            f"{' (seed ' + str(sub.get('seed', 0)) + ')' if sub.get('max_problems') else ''}, "
            f"{part('max_samples_per_problem', 'sample(s) per problem and model', 'every sample')}, "
            f"{part('max_completion_tokens', 'first completion tokens each', 'whole completions')}")


def _clip(text: str, width: int = 40) -> str:
    flat = text.replace("\n", "⏎").replace("`", "'").replace("|", "¦")
    return flat[-width:]


def _tops(top: list) -> str:
    return ", ".join(f"`{_clip(str(t), 12)}` {p:.2f}" for t, p in top)


def frontier_plot(test: Mapping[str, Any]) -> bytes | None:
    """Lock tail against fork entropy: the base's frontier over temperatures, the named base points (decode-only
    arm, T = 1) on it and SSD's point with its intervals; on the left the whole grid, on the right around SSD's
    point (its change is often small next to the grid's span). None without a frontier."""
    front = test.get("frontier") or []
    if not front:
        return None
    point = test.get("point")
    fig, axes = plt.subplots(1, 2 if point else 1, figsize=(10 if point else 6, 4), squeeze=False)
    for ax, zoom in zip(axes[0], (False, True)):
        _frontier_axes(ax, test, front, point, zoom)
    fig.suptitle(f"temperature frontier of the base; reading: {test.get('reading')}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _frontier_axes(ax, test: Mapping[str, Any], front: list, point: Mapping[str, Any] | None, zoom: bool) -> None:
    x = [f["fork_entropy"] for f in front]
    y = [f["lock_tail"] for f in front]
    ax.plot(x, y, ".-" if zoom else "-", color=COLORS["base"], label="base at T (training truncation)")
    if point and zoom:
        e, t = point["fork_entropy"], point["lock_tail"]
        # a window around the point and its interval, with room to see the curve's slope
        half_x = max(3 * (e["ci_high"] - e["ci_low"]), 0.15)
        lo_x, hi_x = e["estimate"] - half_x, e["estimate"] + half_x
        near = [yy for xx, yy in zip(x, y) if lo_x <= xx <= hi_x] + [t["ci_low"], t["ci_high"]]
        pad = 0.1 * (max(near) - min(near)) or 1e-3
        ax.set_xlim(lo_x, hi_x)
        ax.set_ylim(min(near) - pad, max(near) + pad)
    for f in front[::2] if zoom else front[:: max(1, len(front) // 6)]:
        if not zoom or (ax.get_xlim()[0] <= f["fork_entropy"] <= ax.get_xlim()[1]):
            ax.annotate(f"T={f['temperature']:g}", (f["fork_entropy"], f["lock_tail"]), fontsize=7, alpha=0.7,
                        annotation_clip=True)
    curve = [c for c in test.get("tuned_curve") or [] if math.isfinite(c["fork_entropy"])]
    if curve:
        ax.plot([c["fork_entropy"] for c in curve], [c["lock_tail"] for c in curve], "--", color=COLORS["ssd"],
                alpha=0.7, label="ssd at T (same truncation)")
    for name, f in (test.get("extra_points") or {}).items():
        ax.plot([f["fork_entropy"]], [f["lock_tail"]], "s", color=COLORS.get(name, "#8172b2"),
                label=f"{name} (T={f['temperature']:g})")
    if point:
        e, t = point["fork_entropy"], point["lock_tail"]
        ax.errorbar([e["estimate"]], [t["estimate"]],
                    xerr=[[e["estimate"] - e["ci_low"]], [e["ci_high"] - e["estimate"]]],
                    yerr=[[t["estimate"] - t["ci_low"]], [t["ci_high"] - t["estimate"]]], fmt="o", capsize=3,
                    color=COLORS["ssd"],
                    label=f"ssd (T={point['temperature']:g}), {100 * test.get('ci_level', 0.95):g}% CI")
    ax.set_xlabel("fork entropy (nats, mean over problems)")
    ax.set_ylabel("lock tail 1 − p(top-1)")
    ax.set_title("around SSD's point" if zoom else "whole grid", fontsize=9)
    ax.grid(alpha=0.3)
    if not zoom:
        ax.legend(fontsize=7)
