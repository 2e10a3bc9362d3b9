"""Stage `filter` (verifier-aware arm): keep only samples that pass their problem's tests in the sandbox.

Reads  samples/shard_XXXXX.parquet (docs/CONTRACTS.md) and prompts/prompts.parquet (Problem rows + `split`).
Writes filter/shard_XXXXX.parquet  - the same columns as the input shard, only the kept rows
       filter/shard_XXXXX.counts.json - that shard's counts (a finished shard is never re-run)
       filter/meta.json             - totals: input, kept, dropped per filter, sandbox outcomes, isolation

Order and attribution: each sample is dropped by the first rule that applies, so the counts add up to the input:
the declared post-filters enabled in `data.postfilters` (`megatron_ssd.evaluation.postfilters`: empty/stub,
truncated, looping; all by default), then
`no_tests` (its problem has no tests: nothing can verify it), then `failed_tests` (any sandbox outcome other than
passed; the outcome breakdown is in `outcomes`).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import SSDConfig
from ..config.model import extraction_reasoning
from ..errors import DataError, SSDError
from ..evaluation.postfilters import DECLARED, declared_filter
from ..evaluation.sandbox.runner import SandboxConfig, resolve_isolation
from ..evaluation.scoring import score_samples
from ..problems import Problem
from ..rundir import atomic_path, atomic_write_json, read_json
from . import StageContext
from .prompts import load_prompts

DROPPED_NO_TESTS = "no_tests"
FAILED_TESTS = "failed_tests"


def run(cfg: SSDConfig, ctx: StageContext) -> dict[str, Any]:
    shards = ctx.run.sample_shards()
    if not shards:
        raise SSDError(f"no samples/shard_*.parquet in {ctx.run.path}; run the sample stage first.")
    problems = {p.problem_id: p for p in load_prompts(ctx.run.path)}
    out_dir = ctx.run.stage_dir("filter")
    sandbox_cfg = SandboxConfig.from_eval(cfg.eval)
    isolation = resolve_isolation(sandbox_cfg).mode
    totals: Counter = Counter()
    outcomes: Counter = Counter()
    modes: set[str] = set()
    for shard in shards:
        out_path, counts_path = out_dir / shard.name, out_dir / f"{shard.stem}.counts.json"
        if out_path.exists() and counts_path.exists():
            counts = read_json(counts_path)
            ctx.console.print(f"[dim]filter: {shard.name} already filtered "
                              f"({counts['kept']}/{counts['input']} kept)[/]")
        else:
            counts = _filter_shard(shard, out_path, problems, sandbox_cfg, tuple(cfg.data.postfilters),
                                   extraction_reasoning(cfg.model))
            atomic_write_json(counts_path, counts)
            ctx.console.print(f"filter: {shard.name}: kept {counts['kept']}/{counts['input']} "
                              f"(dropped {counts['dropped']})")
        totals["input"] += counts["input"]
        totals["kept"] += counts["kept"]
        for key, value in counts["dropped"].items():
            totals[f"dropped.{key}"] += value
        outcomes.update(counts["outcomes"])
        modes.update(counts["isolation"])
    dropped = {key: totals[f"dropped.{key}"] for key in (*DECLARED, DROPPED_NO_TESTS, FAILED_TESTS)}
    summary = {"input": totals["input"], "kept": totals["kept"], "dropped": dropped,
               "postfilters": list(cfg.data.postfilters),
               "keep_rate": totals["kept"] / totals["input"] if totals["input"] else 0.0,
               "outcomes": dict(sorted(outcomes.items())), "isolation": sorted(modes) or [isolation],
               "num_shards": len(shards)}
    atomic_write_json(out_dir / "meta.json", summary)
    if "fallback-rlimits" in modes:
        ctx.console.print("[bold red]filter: samples ran WITHOUT bubblewrap (fallback-rlimits isolation).[/]")
    if summary["kept"] == 0:
        ctx.console.print("[bold yellow]filter: no sample passed its tests; the pack stage will have nothing to "
                          "train on.[/]")
    return summary


def _filter_shard(shard: Path, out_path: Path, problems: dict[str, Problem], sandbox_cfg: SandboxConfig,
                  postfilters: tuple[str, ...], reasoning: bool | None = None) -> dict[str, Any]:
    try:
        table = pq.read_table(shard)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable parquet file ({exc}).", path=str(shard)) from None
    for col in ("prompt_id", "sample_idx", "text"):
        if col not in table.column_names:
            raise DataError(f"samples shard lacks column {col!r} (docs/CONTRACTS.md).", path=str(shard))
    rows = table.to_pylist()
    dropped: Counter = Counter()
    keep = [False] * len(rows)
    to_run, slots = [], []
    for i, row in enumerate(rows):
        pid = str(row["prompt_id"])
        if pid not in problems:
            raise DataError(f"row {i}: prompt_id {pid!r} is not in prompts/prompts.parquet.", path=str(shard))
        reason = declared_filter(row, enabled=postfilters)
        if reason is None and not problems[pid].has_tests:
            reason = DROPPED_NO_TESTS
        if reason is not None:
            dropped[reason] += 1
            continue
        to_run.append({"prompt_id": pid, "sample_idx": row["sample_idx"], "text": row["text"],
                       "num_tokens": row.get("num_tokens"), "_where": f"{shard} row {i}"})
        slots.append(i)
    results = score_samples(problems, to_run, sandbox_cfg, reasoning=reasoning) if to_run else []
    outcomes = Counter(r["outcome"] for r in results)
    for i, r in zip(slots, results):
        keep[i] = bool(r["passed"])
        if not r["passed"]:
            dropped[FAILED_TESTS] += 1
    with atomic_path(out_path) as tmp:
        pq.write_table(table.filter(pa.array(keep, type=pa.bool_())), tmp)
    return {"shard": shard.name, "input": len(rows), "kept": sum(keep), "dropped": dict(dropped),
            "outcomes": dict(outcomes), "isolation": sorted({r["isolation"] for r in results})}
