"""Pipeline stages. Each module here exposes `run(cfg: SSDConfig, ctx: StageContext) -> dict`.

A stage reads only files of the run directory (and its declared external inputs), writes its artifacts
atomically under `ctx.run.stage_dir(<name>)`, and returns a JSON-able summary; the runner
(`megatron_ssd.launch.runner`) writes that summary into the stage's `.done` marker and skips finished stages.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

from ..rundir import RunDir


@dataclass
class StageContext:
    run: RunDir
    console: Console = field(default_factory=Console)
