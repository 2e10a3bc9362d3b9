"""Stage `report`: render report/report.md and report/report.html from everything the run directory holds.

The files it reads, and how missing arms are shown ("not run"), are documented in
`megatron_ssd.evaluation.report.loading`. Metrics also go to wandb with `cluster.wandb_mode` (offline by default), as
the `report` run of `tracking.run_spec` (docs/WANDB.md).
"""
from __future__ import annotations

from typing import Any

from ..config import SSDConfig
from ..evaluation.report import render_report
from ..tracking import run_spec
from . import StageContext

STAGE = "report"


def run(cfg: SSDConfig, ctx: StageContext) -> dict[str, Any]:
    out_dir = ctx.run.stage_dir(STAGE)
    result = render_report(ctx.run.path, out_dir, wandb_run=run_spec(cfg, STAGE, run_dir=ctx.run.path))
    ctx.console.print(f"report: {result['report_md']} and {result['report_html']} "
                      f"({len(result['plots'])} plots; wandb: {result['wandb']})")
    return {"report_md": result["report_md"], "report_html": result["report_html"], "plots": result["plots"],
            "arms": result["arms"], "verdict": result["verdict"], "wandb": result["wandb"]}
