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

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config.schema import SSDConfig
from ..errors import DataError, SSDError
from ..rundir import atomic_write_json
from ..training.paths import STAGE, TrainPaths, write_config
from . import StageContext

CONVERT_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def final_checkpoint_iteration(paths: TrainPaths) -> int | None:
    from ..models import checkpoint as ckpt

    if not any((paths.ckpt / p).is_file() for p in (ckpt.LATEST, ckpt.LATEST_MEGATRON)):
        return None
    return ckpt.iteration_of(ckpt.resolve_checkpoint(paths.ckpt))


def finished_summary(cfg: SSDConfig, paths: TrainPaths) -> dict[str, Any] | None:
    """The summary of a run whose checkpoint already reached train.train_iters, else None."""
    it = final_checkpoint_iteration(paths)
    if it is None or it < cfg.train.train_iters:
        return None
    if paths.summary.is_file():
        summary = json.loads(paths.summary.read_text())
        if summary.get("iterations") == it:
            return summary
    # Finished, but killed before rank 0 wrote its summary: rebuild it from the metrics.
    steps = [r for r in _read_jsonl(paths.metrics) if r.get("kind") == "step"]
    last = steps[-1] if steps else {}
    from ..models.checkpoint import iter_dir_name

    summary = {"iterations": it, "iterations_this_run": 0, "final_loss": last.get("loss"),
               "final_grad_norm": last.get("grad_norm"), "tokens": sum(r.get("tokens", 0) for r in steps),
               "seconds": round(sum(r.get("step_time_s", 0.0) for r in steps), 3),
               "checkpoint": str(paths.ckpt / iter_dir_name(it)), "metrics": str(paths.metrics),
               "rebuilt_from_metrics": True}
    summary["tokens_per_s"] = summary["tokens"] / summary["seconds"] if summary["seconds"] else None
    atomic_write_json(paths.summary, summary)
    return summary


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def ensure_base_checkpoint(cfg: SSDConfig, paths: TrainPaths, ctx: StageContext) -> dict[str, Any]:
    """Convert the base HF model into `<run>/train/base/` once; returns the converter's summary."""
    from ..models import checkpoint as ckpt
    from ..models.base_model import resolve_base_model
    from ..models.convert import hf_to_megatron, read_summary

    if (paths.base / ckpt.LATEST).is_file() and (paths.hf_template / "config.json").is_file():
        return read_summary(paths.base) or {"checkpoint": str(ckpt.resolve_checkpoint(paths.base))}
    src = resolve_base_model(cfg.model)
    ctx.console.print(f"train: converting the base model {src} -> {paths.base} (once per run)")
    start = time.perf_counter()
    summary = hf_to_megatron(src, paths.base, tp=cfg.parallel.tensor, ep=cfg.parallel.expert,
                             dtype=CONVERT_DTYPES[cfg.train.precision], overwrite=True)
    ctx.console.print(f"train: base model converted in {time.perf_counter() - start:.1f} s")
    return summary


def check_packed(cfg: SSDConfig, paths: TrainPaths) -> dict[str, Any]:
    """The packed data exists, has train.seq_length and was tokenised with the base model's tokenizer."""
    from ..data.packed import PackedDataset
    from ..data.tokenizer import load_tokenizer

    if not (paths.packed / "meta.json").is_file():
        raise DataError("no packed data; run `ssd stage=pack` for this run directory first.", path=str(paths.packed))
    fingerprint = load_tokenizer(paths.hf_template).fingerprint()
    data = PackedDataset(paths.packed, expected_tokenizer_fingerprint=fingerprint,
                         expected_seq_length=cfg.train.seq_length)
    return data.meta


def run(cfg: SSDConfig, ctx: StageContext) -> dict[str, Any]:
    from ..config.validate import to_object
    from ..training.launch import format_command, rank_env, run_streaming, torchrun_command

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
    cmd = torchrun_command(cfg, paths.config)
    if cfg.cluster.dry_run:
        ctx.console.print("train (dry run): would convert the base model into "
                          f"{paths.base} if needed, then run:\n{format_command(cmd)}", highlight=False)
        return {"incomplete": True, "dry_run": True, "missing_shards": "a real (non-dry) run",
                "command": format_command(cmd)}

    base = ensure_base_checkpoint(cfg, paths, ctx)
    meta = check_packed(cfg, paths)
    for stale in (paths.failure, paths.summary):
        stale.unlink(missing_ok=True)
    resume = final_checkpoint_iteration(paths)
    ctx.console.print(f"train: {meta['num_bins']} bins of {meta['seq_length']} tokens, "
                      f"{cfg.train.train_iters} iterations of {cfg.train.global_batch_size} bins"
                      + (f", resuming from iteration {resume}" if resume else "") + f"\n{format_command(cmd)}",
                      highlight=False)
    rc = run_streaming(cmd, rank_env(cfg), paths.log)
    if rc != 0:
        failure = json.loads(paths.failure.read_text()) if paths.failure.is_file() else None
        if failure is not None and failure.get("user_error"):
            raise SSDError(f"training stopped: {failure['message']}\n(full output: {paths.log})")
        what = f"{failure['kind']}: {failure['message']}" if failure else f"exit status {rc}"
        raise SSDError(f"the training ranks failed ({what}); the traceback is in {paths.log}. Rerunning the train "
                       f"stage resumes from the last checkpoint in {paths.ckpt}.")
    if not paths.summary.is_file():
        raise SSDError(f"the training ranks exited cleanly but wrote no {paths.summary}; see {paths.log}.")
    summary = json.loads(paths.summary.read_text())
    summary["base_checkpoint"] = base.get("checkpoint")
    summary["packed_bins"] = meta["num_bins"]
    atomic_write_json(paths.summary, summary)
    return summary
