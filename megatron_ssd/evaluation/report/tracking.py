"""The report's numbers on wandb, as the `report` run of `tracking.run_spec` (docs/WANDB.md): the eval summaries as a
`wandb.Table` (`eval/table`, one row per label and k), the report's scalars, the figures (`plots/<name>`) and the
verdict as run summary. The spec comes from the stage, which has the config; mode "disabled" never imports wandb.
Tracking must never fail a finished experiment's report, so every wandb problem becomes a status."""
from __future__ import annotations

import io
from contextlib import suppress
from typing import Any

from ...tracking import RunSpec, eval_table, start_run

EVAL_TABLE_KEY = "eval/table"


def log_wandb(metrics: dict[str, Any], images: dict[str, bytes], summaries: dict[str, dict[str, Any]],
              spec: RunSpec | None) -> str:
    """Log to the wandb run `spec` names; returns what happened ("disabled", the mode, "skipped: ...",
    "failed: ..."). `summaries`: label -> eval summary, as the report loaded them."""
    if spec is None or spec.mode == "disabled":
        return "disabled"
    run = None
    try:
        run = start_run(spec)
        import wandb  # optional dependency; start_run has imported it already
        from PIL import Image  # optional dependency, only needed to log the figures

        columns, rows = eval_table(summaries)
        payload: dict[str, Any] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        payload[EVAL_TABLE_KEY] = wandb.Table(columns=columns, data=rows)
        for name, png in images.items():
            payload[f"plots/{name}"] = wandb.Image(Image.open(io.BytesIO(png)))
        run.log(payload)
        if metrics.get("verdict"):
            run.summary["verdict"] = metrics["verdict"]
        run.finish()
        return spec.mode
    except Exception as exc:  # tracking must never fail a finished experiment's report
        if run is not None:
            with suppress(Exception):  # already failing; the status below says why
                run.finish(exit_code=1)
        if isinstance(exc, ImportError):
            return f"skipped: {exc.name or exc} is not installed"
        return f"failed: {type(exc).__name__}: {exc}"
