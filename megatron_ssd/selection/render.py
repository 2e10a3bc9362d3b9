"""The gap report as a rich table, markdown or JSON, and to wandb when (and only when) a run is active."""
from __future__ import annotations

import sys
from typing import Any

from rich.table import Table

from .gaps import GapReport, MetricGap
from .grounding import METRICS

_HEADERS = ("section", *(f"{m}: selected vs best" for m in METRICS), "gap")


def _cell(report: GapReport, mg: MetricGap | None) -> str:
    if mg is None:
        return "—"
    own = f"{mg.selected} ({mg.selected.value:.2f})" if mg.selected is not None else "not claimed"
    if mg.best_sample == report.selected:
        return f"{own} vs same"
    return f"{own} vs {mg.best} ({mg.best.value:.2f}) in {mg.best_sample}"


def _rows(report: GapReport) -> list[tuple[str, ...]]:
    rows = []
    for s in report.sections:
        by_metric = {m.metric: m for m in s.metrics}
        name = s.section if s.selected_has_section else f"{s.section} (absent in selected)"
        if s.selected_has_section and not s.selected_grounded:
            name += " (not grounded)"
        flag = "GAP" if s.meaningful else ""
        rows.append((name, *(_cell(report, by_metric.get(m)) for m in METRICS), flag))
    return rows


def render_table(report: GapReport) -> Table:
    t = Table(title=f"grounding gaps (selected {report.selected} by {report.selection.scorer}; "
                    f"threshold {report.threshold:g})")
    for h in _HEADERS:
        t.add_column(h, overflow="fold")
    for row in _rows(report):
        t.add_row(*row, style="bold red" if row[-1] else None)
    return t


def render_markdown(report: GapReport) -> str:
    sel = report.selection
    lines = ["# Selection diagnostics", "",
             f"selected: **{sel.selected}** by scalar `{sel.scorer}` "
             f"(score {sel.scores[sel.selected]:g}; ranking {', '.join(sel.ranking)}"
             + (f"; tie between {', '.join(sel.tied)}, broken by id" if len(sel.tied) > 1 else "") + ")",
             f"gap threshold: {report.threshold:g}. Grounding observes; it does not change the selection.", "",
             "| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _rows(report)]
    for title, items in (("Disagreements", report.disagreements), ("Notes", report.notes)):
        if items:
            lines += ["", f"## {title}", *(f"- {x}" for x in items)]
    if report.unresolved:
        lines += ["", "## Unresolved references", "", "| sample | section | name |", "|---|---|---|"]
        lines += [f"| {u['sample']} | {u['section']} | `{u['name']}` |" for u in report.unresolved]
    return "\n".join(lines) + "\n"


def render_json(report: GapReport) -> dict[str, Any]:
    return report.to_dict()


def log_to_wandb(report: GapReport, prefix: str = "selection") -> bool:
    """Log the gap table and counts to the active wandb run; False (and nothing logged) without one."""
    wandb = sys.modules.get("wandb")  # a run can only be active if the caller already imported wandb
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    table = wandb.Table(columns=list(_HEADERS), data=[list(r) for r in _rows(report)])
    wandb.run.log({f"{prefix}/gaps": table,
                   f"{prefix}/meaningful_gaps": sum(s.meaningful for s in report.sections),
                   f"{prefix}/disagreements": len(report.disagreements),
                   f"{prefix}/unresolved_references": len(report.unresolved)})
    return True
