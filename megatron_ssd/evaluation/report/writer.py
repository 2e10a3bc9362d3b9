"""`render_report`: load the run, build the sections, write report.md / report.html / plots / metrics.json under
RUN_DIR/report, and log the same numbers to wandb as the `report` run the caller's `tracking.RunSpec` names."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...rundir import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text
from ...tracking import RunSpec
from .loading import load_run
from .rehearsal import report_title
from .sections import build, run_arms
from .tracking import log_wandb


def render_report(run_dir: str | Path, out_dir: str | Path | None = None, *,
                  wandb_run: RunSpec | None = None) -> dict[str, Any]:
    """Write report.md/report.html/plots/metrics.json under `out_dir` (default RUN_DIR/report). `wandb_run`: the
    wandb run to log to (`tracking.run_spec(cfg, "report", run_dir=...)`), or None for no wandb."""
    data = load_run(run_dir)
    out = Path(out_dir) if out_dir else RunDir(data.run_dir).report_dir
    metrics: dict[str, Any] = {}
    doc = build(data, metrics)
    title = report_title(data, f"megatron-ssd report: {data.cfg('experiment', data.run_dir.name)}")
    for name, png in doc.images.items():
        atomic_write_bytes(out / "plots" / f"{name}.png", png)
    atomic_write_text(out / "report.md", f"# {title}\n\n" + doc.markdown())
    atomic_write_text(out / "report.html", doc.html(title))
    atomic_write_json(out / "metrics.json", metrics)
    logged = log_wandb(metrics, doc.images, data.summaries, wandb_run)
    return {"report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
            "plots": sorted(doc.images), "metrics": metrics, "wandb": logged,
            "arms": run_arms(data), "verdict": (data.verdict or {}).get("verdict")}
