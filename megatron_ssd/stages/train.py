"""Stage `train`: SFT of the base model on the packed samples, as a torchrun (or srun + torchrun) job.

1. Writes the resolved config to `<run>/train/config.yaml` (the ranks read it; they never run Hydra).
2. Converts the base model to a Megatron checkpoint in `<run>/train/base/` unless that is done already
   (`megatron_ssd.models.convert.hf_to_megatron`, the code behind `ssd-convert hf-to-megatron`).
3. Builds the launch command (`megatron_ssd.training.launch`) and runs it, streaming the ranks' output to the
   console and to `<run>/train/launcher.log`; with `cluster.dry_run` it prints the command and stops.
4. Returns rank 0's summary (final loss, tokens, seconds, tokens/s, checkpoint).

Resume: the ranks continue from `<run>/train/ckpt/latest` when it exists. A checkpoint at train.train_iters
means the stage is finished; rerunning it then launches nothing.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..config.schema import SSDConfig
from ..config.validate import to_object
from ..data.packed import PackedDataset
from ..data.tokenizer import load_tokenizer
from ..errors import DataError, SSDError
from ..models import checkpoint as ckpt
from ..models.base_model import conversion_cache_dir, resolve_base_model
from ..models.convert import hf_to_megatron, read_summary
from ..models.converted_cache import cached_conversion
from ..rundir import atomic_write_json, read_json, read_jsonl, write_config
from ..training import launch
from ..training.paths import STAGE, TrainPaths
from . import StageContext

CONVERT_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def final_checkpoint_iteration(paths: TrainPaths) -> int | None:
    if not any((paths.ckpt / p).is_file() for p in (ckpt.LATEST, ckpt.LATEST_MEGATRON)):
        return None
    return ckpt.iteration_of(ckpt.resolve_checkpoint(paths.ckpt))


def finished_summary(cfg: SSDConfig, paths: TrainPaths) -> dict[str, Any] | None:
    """The summary of a run whose checkpoint already reached train.train_iters, else None."""
    it = final_checkpoint_iteration(paths)
    if it is None or it < cfg.train.train_iters:
        return None
    summary = read_json(paths.summary)
    if summary is not None and summary.get("iterations") == it:
        return summary
    # Finished, but killed before rank 0 wrote its summary: rebuild it from the metrics.
    metrics = read_jsonl(paths.metrics, problems=[]) or []  # a line cut short by the kill is skipped
    steps = [r for r in metrics if r.get("kind") == "step"]
    last = steps[-1] if steps else {}
    summary = {"iterations": it, "iterations_this_run": 0, "final_loss": last.get("loss"),
               "final_grad_norm": last.get("grad_norm"), "tokens": sum(r.get("tokens", 0) for r in steps),
               "seconds": round(sum(r.get("step_time_s", 0.0) for r in steps), 3),
               "checkpoint": str(paths.ckpt / ckpt.iter_dir_name(it)), "metrics": str(paths.metrics),
               "rebuilt_from_metrics": True}
    summary["tokens_per_s"] = summary["tokens"] / summary["seconds"] if summary["seconds"] else None
    atomic_write_json(paths.summary, summary)
    return summary


def ensure_base_checkpoint(cfg: SSDConfig, paths: TrainPaths, ctx: StageContext) -> dict[str, Any]:
    """The base HF model as a Megatron checkpoint in `<run>/train/base/`, converted once per model, layout and
    dtype across runs (`models/converted_cache.py`); returns the converter's summary."""
    if (paths.base / ckpt.LATEST).is_file() and (paths.hf_template / "config.json").is_file():
        return read_summary(paths.base) or {"checkpoint": str(ckpt.resolve_checkpoint(paths.base))}
    src = resolve_base_model(cfg.model)
    settings = {"tp": cfg.parallel.tensor, "ep": cfg.parallel.expert, "dtype": CONVERT_DTYPES[cfg.train.precision]}
    start = time.perf_counter()
    cache_dir = conversion_cache_dir(cfg.model)

    def convert(out: Path) -> dict[str, Any]:
        return hf_to_megatron(src, out, overwrite=True, **settings)

    summary = (convert(paths.base) if cache_dir is None
               else cached_conversion(src, paths.base, cache_dir=cache_dir, settings=settings, convert=convert))
    how = "reused the shared conversion of" if summary.get("cache_hit") else "converted"
    ctx.console.print(f"train: {how} the base model {src} -> {paths.base} in {time.perf_counter() - start:.1f} s"
                      + (f" (shared: {summary['cache_entry']})" if cache_dir is not None else ""))
    return summary


def check_packed(cfg: SSDConfig, paths: TrainPaths) -> dict[str, Any]:
    """The packed data exists, has train.seq_length and was tokenised with the base model's tokenizer."""
    if not (paths.packed / "meta.json").is_file():
        raise DataError("no packed data; run `ssd stage=pack` for this run directory first.", path=str(paths.packed))
    fingerprint = load_tokenizer(paths.hf_template).fingerprint()
    data = PackedDataset(paths.packed, expected_tokenizer_fingerprint=fingerprint,
                         expected_seq_length=cfg.train.seq_length)
    return data.meta


@contextlib.contextmanager
def follow_training(metrics: Path, total: int, done: int, console: Console, *, enabled: bool,
                    poll_s: float = 0.5) -> Iterator[None]:
    """A progress bar on the launcher's console fed by rank 0's metrics.jsonl: the ranks' own output goes to the
    stage log (launch/console.py), so the bar with loss and tokens/s is drawn here from the step records."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("iterations"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=total, completed=done, status="starting the ranks")

        def follow() -> None:
            offset = metrics.stat().st_size if metrics.exists() else 0  # records of earlier attempts are not news
            while True:
                finished = stop.wait(poll_s)
                if metrics.exists():
                    with open(metrics, "rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
                    offset += len(complete)
                    for line in complete.splitlines():
                        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                            rec = json.loads(line)
                            if rec.get("kind") == "step":
                                bar.update(task, completed=rec.get("iteration", 0),
                                           status=f"loss {rec.get('loss', float('nan')):.4f}  "
                                                  f"{rec.get('tokens_per_s') or 0:.0f} tok/s")
                if finished:  # one last read after the ranks exit, so the bar shows the final step
                    return

        thread = threading.Thread(target=follow, name="train-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def run(cfg: SSDConfig, ctx: StageContext) -> dict[str, Any]:
    cfg = to_object(cfg)
    run_path = ctx.run.path.resolve()
    paths = TrainPaths(run_path)
    ctx.run.stage_dir(STAGE)
    done = finished_summary(cfg, paths)
    if done is not None:
        ctx.console.print(f"train: {paths.ckpt} already holds iteration {done['iterations']} = train.train_iters; "
                          "nothing to train.")
        return done

    rank_cfg = replace(cfg, run_dir=str(run_path))
    write_config(rank_cfg, paths.config)
    cmd = launch.torchrun_command(cfg, paths.config)
    if cfg.cluster.dry_run:
        ctx.console.print("train (dry run): would convert the base model into "
                          f"{paths.base} if needed, then run:\n{launch.format_command(cmd)}", highlight=False)
        return {"incomplete": True, "dry_run": True, "missing_shards": "a real (non-dry) run",
                "command": launch.format_command(cmd)}

    base = ensure_base_checkpoint(cfg, paths, ctx)
    meta = check_packed(cfg, paths)
    for stale in (paths.failure, paths.summary):
        stale.unlink(missing_ok=True)
    resume = final_checkpoint_iteration(paths)
    ctx.console.print(f"train: {meta['num_bins']} bins of {meta['seq_length']} tokens, "
                      f"{cfg.train.train_iters} iterations of {cfg.train.global_batch_size} bins"
                      + (f", resuming from iteration {resume}" if resume else "") + f"\n{launch.format_command(cmd)}",
                      highlight=False)
    with follow_training(paths.metrics, cfg.train.train_iters, resume or 0, ctx.console, enabled=not cfg.verbose):
        rc = launch.run_training(cmd, launch.rank_env(cfg), paths.log)  # a rendezvous failure raises SSDError
    if rc != 0:
        failure = read_json(paths.failure)
        if failure is not None and failure.get("user_error"):
            raise SSDError(f"training stopped: {failure['message']}\n(full output: {paths.log})")
        what = f"{failure['kind']}: {failure['message']}" if failure else f"exit status {rc}"
        raise SSDError(f"the training ranks failed ({what}); the traceback is in {paths.log}. Rerunning the train "
                       f"stage resumes from the last checkpoint in {paths.ckpt}.")
    if not paths.summary.is_file():
        raise SSDError(f"the training ranks exited cleanly but wrote no {paths.summary}; see {paths.log}.")
    summary = read_json(paths.summary)
    summary["base_checkpoint"] = base.get("checkpoint")
    summary["base_conversion_reused"] = base.get("cache_hit")  # None: converted before the shared cache
    summary["packed_bins"] = meta["num_bins"]
    atomic_write_json(paths.summary, summary)
    return summary
