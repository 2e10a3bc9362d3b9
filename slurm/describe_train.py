"""What the train stage of slurm/ssd_pipeline.sh will launch, printed without running or allocating anything.

    python slurm/describe_train.py [hydra overrides]                  the srun/torchrun line, layout, rank map
    python slurm/describe_train.py --print-run-dir [hydra overrides]  the run directory `ssd` would pick

The config is composed exactly as `ssd` composes it (same Hydra config module and overrides) and validated; the
command comes from `megatron_ssd.training.launch.launch_argv`, the function the train stage runs, so the dry run
shows the real command. Inside an allocation (SLURM_JOB_NODELIST set) the rendezvous host and job id are the
allocation's, with or without Slurm's tools on this machine; elsewhere they are printed as the variables the train
stage reads.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from megatron_ssd.config import register, validate
from megatron_ssd.config.parallel import ParallelLayout
from megatron_ssd.errors import SSDError
from megatron_ssd.rundir import default_run_dir
from megatron_ssd.training.launch import format_command, launch_argv, rendezvous_port, slurm_head_node
from megatron_ssd.training.paths import TrainPaths

EXIT_USER_ERROR = 2


def compose_config(overrides: list[str]):
    register()
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        return validate(compose(config_name="config", overrides=overrides))


def rendezvous(env: dict[str, str]) -> tuple[str, str, str]:
    """(host, job id, port): the allocation's inside one (the node list expanded with or without Slurm's tools,
    `launch.expand_nodelist`), else the variables the train stage reads."""
    port = rendezvous_port(env)
    if env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"):
        return slurm_head_node(env), env.get("SLURM_JOB_ID", "ssd-train"), port
    return "$MASTER_ADDR", "$SLURM_JOB_ID", port


def describe(cfg, env: dict[str, str]) -> list[str]:
    p, t = cfg.parallel, cfg.train
    layout = ParallelLayout.from_config(p).validate(t)
    head, job, port = rendezvous(env)
    config_path = TrainPaths(Path(cfg.run_dir or default_run_dir(cfg)).resolve()).config
    argv = launch_argv(cfg, config_path, head=head, job_id=job, port=port, python=sys.executable)
    per_node = p.nproc_per_node
    ranks = ", ".join(f"node {n}: ranks {n * per_node}-{(n + 1) * per_node - 1}" for n in range(p.nnodes))
    expert_dp = layout.data * layout.context // layout.expert
    return [
        "+ " + format_command(argv),
        f"#   rendezvous: c10d at {head}:{port}, id {job}; one torchrun agent per node "
        f"(--nnodes={p.nnodes}, --nproc-per-node={per_node})",
        f"#   layout: world {layout.world} = {p.nnodes} nodes x {per_node}; TP={layout.tensor} PP={layout.pipeline} "
        f"CP={layout.context} EP={layout.expert} DP={layout.data} (expert-DP {expert_dp}), sequence parallel "
        f"{'on' if layout.sequence_parallel else 'off'}",
        f"#   ranks: {ranks}",
        f"#   batch: {t.global_batch_size} sequences of {t.seq_length} tokens per step = "
        f"{layout.micro_batches_per_step(t)} micro-batches of {t.micro_batch_size} per DP rank; "
        f"{t.train_iters} iterations, checkpoint every {t.save_interval}",
    ]


def main(argv: list[str]) -> int:
    print_run_dir = bool(argv) and argv[0] == "--print-run-dir"
    overrides = argv[1:] if print_run_dir else argv
    try:
        cfg = compose_config(overrides)
        lines = [str(cfg.run_dir or default_run_dir(cfg))] if print_run_dir else describe(cfg, dict(os.environ))
    except (SSDError, HydraException, OmegaConfBaseException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
