"""Training rank entry point: `python -m megatron_ssd.training.entry --config <run>/train/config.yaml`.

Started by torchrun (or srun + torchrun) from the train stage, once per rank. Ranks never call Hydra (Hydra
and torchrun both want argv); they read the resolved YAML the launcher wrote. Exit codes: 0 done, 3 a problem
the user can fix (the message is also written to `<run>/train/failure.json` by rank 0), 1 a bug (traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from ..errors import SSDError
from ..rundir import atomic_write_json, read_config
from ..runlock import join_run
from .paths import TrainPaths
from .preemption import EXIT_PREEMPTED, Preempted

EXIT_USER_ERROR = 3


def run_training(config_path: str | os.PathLike, *, init_method: str | None = None) -> dict:
    """Train with the config at `config_path` on this rank (the process group comes from torchrun's env)."""
    # torch and megatron-core load here, in the rank, not when the launcher reads this module's exit codes
    from ..models.parallel import destroy_process_groups
    from .trainer import Trainer  # see above

    cfg = read_config(config_path)
    if not cfg.run_dir:
        raise SSDError(f"{config_path}: run_dir is not set; the train stage writes an absolute run_dir.")
    paths = TrainPaths(Path(cfg.run_dir))
    try:
        return Trainer(cfg, paths, init_method=init_method).fit()
    finally:
        destroy_process_groups()


def _record_failure(config_path: str, exc: BaseException, user_error: bool) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        cfg = read_config(config_path)
        paths = TrainPaths(Path(cfg.run_dir))
        atomic_write_json(paths.failure, {"kind": type(exc).__name__, "user_error": user_error, "message": str(exc)})
    except Exception:  # the config itself may be what failed; the message still goes to stderr
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m megatron_ssd.training.entry", description=__doc__)
    parser.add_argument("--config", required=True, help="the resolved config YAML written by the train stage")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    try:
        join_run()  # hold the run directory with the command that started torchrun, and die with torchrun
        run_training(args.config)
    except SSDError as exc:
        _record_failure(args.config, exc, user_error=True)
        if rank == 0:
            print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED if isinstance(exc, Preempted) else EXIT_USER_ERROR
    except BaseException as exc:
        _record_failure(args.config, exc, user_error=False)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
