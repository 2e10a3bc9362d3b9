"""Entry point of one data-parallel generation engine: `python -m megatron_ssd.generation.worker RUN_DIR RANK`.

Reads the resolved config the launcher stored in the run directory (never Hydra: workers are not launcher
processes) and generates the shards that belong to engine RANK.
"""
from __future__ import annotations

import sys

from rich.console import Console

from ..launch_support import load_run_config
from ..rundir import RunDir
from ..stages import StageContext
from ..stages import sample as sample_stage


def main(argv: list[str] | None = None) -> int:
    run_dir, rank = (argv or sys.argv[1:])[:2]
    cfg = load_run_config(run_dir)
    cfg.sample.engine_rank = int(rank)
    sample_stage.run(cfg, StageContext(run=RunDir(run_dir), console=Console(stderr=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
