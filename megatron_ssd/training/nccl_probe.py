"""A short NCCL all-reduce over the ranks training would start, started the way training starts them.

`probe_command` is the train stage's own launch command (`training.launch.torchrun_command`: `srun ... torchrun`
with the allocation's rendezvous under Slurm, a standalone torchrun on one machine) with this module as the rank
program instead of `training.entry`, so the probe exercises the same rendezvous, the same nodes and the same
NCCL transport. Each rank all-reduces a bf16 buffer a few times; rank 0 prints one line, `NCCL_PROBE {json}`,
with the algorithm and bus bandwidth in the convention of NVIDIA's nccl-tests (README "Performance": bus bandwidth
= algorithm bandwidth x 2 (n - 1) / n for all-reduce), which is what a fabric's datasheet number compares with.

    python -m megatron_ssd.training.nccl_probe [--mib 256] [--iters 10]    (as a torchrun rank program)
"""
from __future__ import annotations

import argparse
import json
import os
import time

from ..config.schema import SSDConfig
from .environment import nccl_version
from .launch import ENTRY, torchrun_command

MODULE = "megatron_ssd.training.nccl_probe"
PREFIX = "NCCL_PROBE "
DEFAULT_MIB = 256
DEFAULT_ITERS = 10
_PLACEHOLDER = "<no config>"


def probe_command(cfg: SSDConfig, *, env: dict[str, str] | None = None, mib: int = DEFAULT_MIB,
                  iters: int = DEFAULT_ITERS) -> list[str]:
    """The train stage's launch command with the probe as the rank program (module docstring)."""
    cmd = torchrun_command(cfg, _PLACEHOLDER, env=env)
    tail = ["-m", ENTRY, "--config", _PLACEHOLDER]
    if cmd[-len(tail):] != tail:  # training.launch changed how it names the rank program
        raise RuntimeError(f"unexpected launch command (it no longer ends with {' '.join(tail)}): {cmd}")
    return [*cmd[:-len(tail)], "-m", MODULE, "--mib", str(mib), "--iters", str(iters)]


def bus_bandwidth(bytes_per_rank: float, seconds: float, ranks: int) -> tuple[float, float]:
    """(algorithm bandwidth, bus bandwidth) in bytes/s of one all-reduce of `bytes_per_rank` over `ranks` ranks."""
    alg = bytes_per_rank / seconds if seconds > 0 else 0.0
    return alg, alg * 2 * (ranks - 1) / ranks


def parse_result(output: str) -> dict | None:
    """Rank 0's result from the probe's combined output, or None when it never printed one."""
    for line in reversed(output.splitlines()):
        if PREFIX in line:
            try:
                return json.loads(line.split(PREFIX, 1)[1])
            except ValueError:
                return None
    return None


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist

    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--mib", type=int, default=DEFAULT_MIB)
    args.add_argument("--iters", type=int, default=DEFAULT_ITERS)
    a = args.parse_args(argv)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    buf = torch.ones(a.mib * 2**20 // 2, dtype=torch.bfloat16, device="cuda")
    for _ in range(2):  # warm-up: communicator set-up and the first ring
        dist.all_reduce(buf)
    torch.cuda.synchronize()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(a.iters):
        dist.all_reduce(buf)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / a.iters
    # every rank's slowest time is the collective's time
    t = torch.tensor([seconds], device="cuda")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    alg, bus = bus_bandwidth(buf.numel() * buf.element_size(), float(t.item()), world)
    if rank == 0:
        print(PREFIX + json.dumps({"ranks": world, "mib": a.mib, "iters": a.iters, "seconds": float(t.item()),
                                   "algbw_gbps": alg / 1e9, "busbw_gbps": bus / 1e9,
                                   "nccl": nccl_version()}), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
