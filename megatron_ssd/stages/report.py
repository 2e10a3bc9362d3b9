"""Stage `report`: render report/report.md and report/report.html from everything the run directory holds.

The files it reads, and how missing arms are shown ("not run"), are documented in
`megatron_ssd.evaluation.report.loading`. Metrics also go to wandb with `cluster.wandb_mode` (offline by default).
"""
from __future__ import annotations

from typing import Any

from ..config import SSDConfig
from ..evaluation.report import render_report
from . import StageContext


def run(cfg: SSDConfig, ctx: StageContext) -> dict[str, Any]:
    out_dir = ctx.run.stage_dir("report")
    result = render_report(ctx.run.path, out_dir, wandb_mode=cfg.cluster.wandb_mode,
                           wandb_project=cfg.cluster.wandb_project, wandb_entity=cfg.cluster.wandb_entity)
    ctx.console.print(f"report: {result['report_md']} and {result['report_html']} "
                      f"({len(result['plots'])} plots; wandb: {result['wandb']})")
    return {"report_md": result["report_md"], "report_html": result["report_html"], "plots": result["plots"],
            "arms": result["arms"], "verdict": result["verdict"], "wandb": result["wandb"]}
