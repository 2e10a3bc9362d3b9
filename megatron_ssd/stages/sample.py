"""Stage `sample`: n samples per training prompt at the SSD decoding, sharded, resumable, data parallel.

With `sample.num_engines > 1` and `sample.engine_rank = -1` the stage starts one worker process per engine (each
given its own GPUs, `tensor_parallel_size` per engine, through CUDA_VISIBLE_DEVICES) and waits for them; on a
cluster each Slurm array task runs with `sample.engine_rank=$SLURM_ARRAY_TASK_ID` instead. Shards are assigned
round-robin, so engines never write the same file. The stage is done when every shard exists.

One engine's worker: `python -m megatron_ssd.stages.sample RUN_DIR RANK` reads the resolved config the launcher
stored in the run directory (never Hydra: workers are not launcher processes) and generates the shards of RANK.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from rich.console import Console

from ..config import SSDConfig
from ..errors import SSDError
from ..data.tokenizer import tokenizer_fingerprint
from ..generation.engine import Decoding, engine_options, shared_engine
from ..generation.seeds import shard_name, shards_of_engine
from ..generation.sharded import generate_sharded
from ..generation.shards import read_samples
from ..generation.stats import sample_stats
from ..rounds import policy_model
from ..rundir import RunDir, atomic_write_json
from . import StageContext
from .prompts import load_prompts


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    s = cfg.sample
    out = ctx.run.samples_dir
    if s.num_engines > 1 and s.engine_rank < 0:
        _run_engine_workers(cfg, ctx)
    else:
        problems = load_prompts(ctx.run.path, "train")
        model_path = policy_model(cfg)
        shards = shards_of_engine(s.num_shards, s.num_engines, s.engine_rank)
        if all((out / shard_name(k)).exists() for k in shards):
            ctx.console.print(f"sample: all {len(shards)} shards of this engine exist; nothing to generate.")
        else:
            engine = shared_engine(model_path, engine_options(cfg))
            result = generate_sharded(engine, problems, Decoding.from_config(s), n=s.n, run_seed=cfg.seed,
                                      out_dir=out, num_shards=s.num_shards, shards=shards,
                                      max_inflight=s.max_inflight_requests, console=ctx.console)
            ctx.console.print(f"sample: wrote {len(result.written)} shards, kept {len(result.skipped_existing)} "
                              f"finished ones; {result.generated_tokens} tokens at {result.tokens_per_s:.1f} tok/s")
            if result.prompts_too_long:
                ctx.console.print(f"[yellow]sample: {len(result.prompts_too_long)} prompts skipped: longer than "
                                  "model.max_model_len - sample.max_tokens[/]")
        missing = [k for k in range(s.num_shards) if not (out / shard_name(k)).exists()]
        if missing:  # another engine (e.g. another Slurm array task) still owns these shards
            return {"incomplete": True, "missing_shards": missing}
        atomic_write_json(out / "meta.json", {"model": str(model_path), "sampling": Decoding.from_config(s).__dict__,
                                              "n": s.n, "num_shards": s.num_shards, "seed": cfg.seed,
                                              "tokenizer_fingerprint": tokenizer_fingerprint(model_path)})
    stats = sample_stats(read_samples(out))
    ctx.console.print(f"sample stats: {json.dumps({k: v for k, v in stats.items() if not k.endswith('_frac')})}")
    return stats


def _run_engine_workers(cfg: SSDConfig, ctx: StageContext) -> None:
    """One process per engine; each reads the run's resolved config and generates its round-robin shards."""
    s = cfg.sample
    gpus = _visible_gpus()
    procs = []
    for rank in range(s.num_engines):
        env = dict(os.environ)
        if gpus:
            group = gpus[rank * s.tensor_parallel_size : (rank + 1) * s.tensor_parallel_size]
            if len(group) < s.tensor_parallel_size:
                raise SSDError(f"sample.num_engines={s.num_engines} x tensor_parallel_size={s.tensor_parallel_size}"
                               f" needs {s.num_engines * s.tensor_parallel_size} GPUs; {len(gpus)} are visible.")
            env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
        cmd = [sys.executable, "-m", "megatron_ssd.stages.sample", str(ctx.run.path), str(rank)]
        procs.append((rank, subprocess.Popen(cmd, env=env)))
    failed = [rank for rank, p in procs if p.wait() != 0]
    if failed:
        raise SSDError(f"sample: engine worker(s) {failed} failed; finished shards are kept. Rerun the same "
                       "command to resume.")


def _visible_gpus() -> list[str]:
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        n = torch.cuda.device_count()
    except ImportError:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[:n] if visible else [str(i) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    run_dir, rank = (argv or sys.argv[1:])[:2]
    rundir = RunDir(run_dir)
    cfg = rundir.config()
    cfg.sample.engine_rank = int(rank)
    run(cfg, StageContext(run=rundir, console=Console(stderr=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
