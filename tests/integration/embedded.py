"""The embedded default's session-wide run (see conftest.py) and the `ssd` helpers integration tests share.

The chain (prompts -> diagnose -> sample -> pack -> train -> export -> evaluate -> report, real vLLM, Megatron-core
and sandbox) is the costliest thing the suite does, so it runs once: a local two-point sweep
(`ssd run -m sample.temperature=1.1,1.5`, Hydra's basic launcher), the second point reusing the first's base-model
evaluation. Tests that read a finished run directory take a point from `embedded_sweep`; a test that writes into a
run copies it first (the fixture's folders are shared and must stay as the sweep left them).
"""
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from megatron_ssd.rundir import RunDir

SSD = str(Path(sys.executable).parent / "ssd")
TINY = ["data.max_train_prompts=4", "data.max_eval_problems=4", "sample.max_tokens=48", "eval.max_tokens=48",
        "eval.n=2", "eval.k=[1,2]", "eval.temperature_sweep=[]", "train.seq_length=512", "train.train_iters=2",
        "train.global_batch_size=2", "sample.enforce_eager=true",
        "cluster.wandb_mode=offline"]
SWEEP_TEMPERATURES = (1.1, 1.5)


def ssd(*args, cwd=None, timeout=3000):
    return subprocess.run([SSD, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200", "WANDB_MODE": "offline"})


@dataclass(frozen=True)
class EmbeddedSweep:
    runs: Path  # runs_root of the sweep
    hydra_dir: Path  # Hydra's multirun folder
    points: dict  # T_train -> run directory
    result: subprocess.CompletedProcess  # the `ssd run -m` invocation


def run_embedded_sweep(root: Path) -> EmbeddedSweep:
    runs, hydra_dir = root / "tgrid", root / "multirun"
    temps = ",".join(f"{t:g}" for t in SWEEP_TEMPERATURES)
    result = ssd("run", "-m", *TINY, f"sample.temperature={temps}", f"runs_root={runs}",
                 f"hydra.sweep.dir={hydra_dir}", cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    points = {RunDir(d).config().sample.temperature: d for d in runs.iterdir() if (d / "manifest.json").is_file()}
    assert sorted(points) == list(SWEEP_TEMPERATURES), sorted(points)
    return EmbeddedSweep(runs=runs, hydra_dir=hydra_dir, points=points, result=result)
