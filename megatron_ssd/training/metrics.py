"""Metrics: every value to `<run>/train/metrics.jsonl` and to wandb (offline unless cluster.wandb_mode says
otherwise), and a rich progress bar. Only global rank 0 writes; the other ranks get a no-op logger.

The wandb run is the `train` run of `tracking.run_spec` (project, group, name, id from the config; docs/WANDB.md),
so a resumed train stage continues its wandb run. Tracking never takes training down: a run that cannot start is
a warning on stderr and in metrics.jsonl, and the jsonl stays the record.

metrics.jsonl holds one JSON object per line: `{"kind": "step", "iteration": N, ...}` for training steps and
`{"kind": <event>, ...}` for events (start, resume, checkpoint, end, error). On resume, step records after the
resumed iteration (written by the interrupted run, and about to be recomputed) are dropped, so the file always
reads as one run's curve.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..tracking import RunSpec, start_run


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return str(v)  # JSON has no NaN/inf; keep them readable
    return v


class MetricsLogger:
    def __init__(self, path: str | os.PathLike, *, enabled: bool, resume_iteration: int | None,
                 wandb_run: RunSpec | None = None, total_iterations: int | None = None, log_interval: int = 1):
        """`wandb_run`: the spec of the wandb run to start (`tracking.run_spec(cfg, "train", ...)`), or None for
        no wandb (mode "disabled" in the spec also starts nothing, and neither imports wandb)."""
        self.enabled = enabled
        self.log_interval = max(1, log_interval)
        self.path = Path(path)
        self._wandb = None
        self._progress = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(resume_iteration)
        self._file = open(self.path, "a", encoding="utf-8")
        self._start_wandb(wandb_run)
        self._start_progress(total_iterations, resume_iteration or 0)

    # -- files
    def _truncate(self, resume_iteration: int | None) -> None:
        if not self.path.exists():
            return
        if not resume_iteration:
            self.path.unlink()
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("kind") == "step" and rec.get("iteration", 0) > resume_iteration:
                continue
            keep.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        os.replace(tmp, self.path)

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    # -- wandb
    def _start_wandb(self, spec: RunSpec | None) -> None:
        if spec is None:
            return
        try:
            self._wandb = start_run(spec)
        except Exception as exc:  # tracking must never take training down; say so loudly and keep the jsonl
            self._wandb = None
            msg = (f"wandb ({spec.mode}, run {spec.name}) could not start: {type(exc).__name__}: {exc}; "
                   f"metrics go to {self.path} only.")
            print(f"WARNING: {msg}", file=sys.stderr, flush=True)
            self._write({"kind": "warning", "time": time.time(), "message": msg})

    # -- progress
    def _start_progress(self, total: int | None, done: int) -> None:
        if total is None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(force_terminal=True if os.environ.get("SSD_FORCE_TERMINAL") else None)
        if not console.is_terminal:
            self._console = console  # plain lines instead of a bar when nobody watches a terminal
            return
        self._progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console)
        self._task = self._progress.add_task("train", total=total, completed=done, status="")
        self._progress.start()

    # -- API
    def step(self, iteration: int, metrics: dict[str, Any]) -> None:
        """Every step goes to metrics.jsonl and wandb; the console shows every `log_interval`-th."""
        if not self.enabled:
            return
        rec = {"kind": "step", "iteration": iteration, "time": time.time(), **metrics}
        self._write(rec)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=iteration)
        if iteration % self.log_interval and iteration != 1:
            return
        status = (f"loss {metrics['loss']:.4f}  gnorm {metrics['grad_norm']:.3f}  lr {metrics['lr']:.2e}  "
                  f"{metrics['tokens_per_s']:.0f} tok/s" + (f"  MFU {metrics['mfu']:.1%}" if metrics.get("mfu") else ""))
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration, status=status)
        elif getattr(self, "_console", None) is not None:
            self._console.print(f"iter {iteration}: {status}", highlight=False)

    def event(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        self._write({"kind": kind, "time": time.time(), **fields})
        if self._wandb is not None and kind in ("checkpoint", "end"):
            self._wandb.summary.update({f"{kind}/{k}": v for k, v in fields.items() if isinstance(v, (int, float, str))})

    def print(self, message: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(message, highlight=False)
        else:
            print(message, flush=True)

    def close(self, exit_code: int = 0) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._wandb is not None:
            self._wandb.finish(exit_code=exit_code)
            self._wandb = None
        self._file.close()
