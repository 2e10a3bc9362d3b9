"""Evaluate one model at one decoding setting: generate, score in the sandbox, summarise -> eval/<label>/.

Used by the `diagnose` stage (the base model at its evaluation setting, label ``base``) and the `evaluate` stage
(every model x decoding of the arm). Generation is sharded and resumable like the `sample` stage; a label whose
summary.json exists is not recomputed, so `evaluate` reuses what `diagnose` produced. All labels share one seed
stream (common random numbers), which tightens paired comparisons between models on the same problems.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console

from ..evaluation.results import score_samples, summarize
from ..evaluation.sandbox import SandboxConfig
from ..problems import Problem
from ..rundir import atomic_path, atomic_write_json
from .engine import Decoding, VLLMEngine
from .sharded import generate_sharded
from .shards import read_samples

EVAL_SEED_OFFSET = 1_000_003  # eval samples never reuse the training samples' seed stream


def label_dir(run_dir: Path, label: str) -> Path:
    return Path(run_dir) / "eval" / label


def evaluate_label(
    engine: VLLMEngine,
    label: str,
    problems: list[Problem],
    decoding: Decoding,
    *,
    cfg: Any,
    run_dir: Path,
    model_name: str,
    console: Console,
    difficulty_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    folder = label_dir(run_dir, label)
    summary_path = folder / "summary.json"
    if summary_path.exists():
        console.print(f"[dim]eval/{label}: already evaluated; reusing {summary_path}[/]")
        return json.loads(summary_path.read_text())
    e = cfg.eval
    shards = max(1, min(16, len(problems) // 8))
    generate_sharded(engine, problems, decoding, n=e.n, run_seed=cfg.seed + EVAL_SEED_OFFSET,
                     out_dir=folder / "samples", num_shards=shards, shards=list(range(shards)),
                     max_inflight=cfg.sample.max_inflight_requests, console=console, label=f"eval {label}")
    samples = read_samples(folder / "samples")
    console.print(f"eval/{label}: scoring {len(samples)} samples in the sandbox ({e.workers} workers)")
    rows = score_samples(problems, samples, SandboxConfig.from_eval(e, isolation=e.isolation))
    text_of = {(s["prompt_id"], s["sample_idx"]): s["text"] for s in samples}
    with atomic_path(folder / "results.jsonl") as tmp:
        with open(tmp, "w") as f:
            for r in rows:
                f.write(json.dumps({**r, "text": text_of[(r["prompt_id"], r["sample_idx"])]}) + "\n")
    summary = summarize(rows, problems, e.k, e.n, e.ci_level, e.bootstrap_samples, cfg.seed,
                        difficulty_of=difficulty_of)
    summary.update({"label": label, "model": model_name, "temperature": decoding.temperature,
                    "top_k": decoding.top_k, "top_p": decoding.top_p, "min_p": decoding.min_p,
                    "max_tokens": decoding.max_tokens})
    atomic_write_json(summary_path, summary)
    return summary


def passk_line(summary: Mapping[str, Any]) -> str:
    parts = []
    for k, est in sorted(summary.get("pass_at_k", {}).items(), key=lambda kv: int(kv[0])):
        parts.append(f"pass@{k} {100 * est['estimate']:.1f} [{100 * est['ci_low']:.1f}, {100 * est['ci_high']:.1f}]")
    return "; ".join(parts)
