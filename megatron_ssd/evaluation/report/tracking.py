"""The report's numbers (and figures) on wandb: mode from `cluster.wandb_mode`, offline by default, "disabled"
skips it. Tracking must never fail a finished experiment's report, so every wandb problem becomes a status."""
from __future__ import annotations

import io
from typing import Any

from .loading import RunData


def log_wandb(metrics: dict[str, Any], images: dict[str, bytes], data: RunData, mode: str, project: str,
              entity: str | None) -> str:
    """Log to wandb; returns what happened ("disabled", the mode, "skipped: ...", "failed: ...")."""
    if mode == "disabled":
        return "disabled"
    try:
        import wandb  # optional dependency
    except ImportError:
        return "skipped: wandb is not installed"
    try:
        from PIL import Image  # optional dependency, only needed to log the figures

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
