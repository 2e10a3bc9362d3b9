"""Generate n samples per problem into shards keyed by a stable hash of the prompt id; resumable."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..problems import Problem
from ..prompting import chat_messages
from .engine import Decoding, Request, VLLMEngine
from .seeds import sample_seed, shard_name, shard_of
from .shards import write_shard


@dataclass
class ShardedRun:
    written: list[int] = field(default_factory=list)
    skipped_existing: list[int] = field(default_factory=list)
    prompts_too_long: list[str] = field(default_factory=list)
    generated_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


def generate_sharded(
    engine: VLLMEngine,
    problems: list[Problem],
    decoding: Decoding,
    *,
    n: int,
    run_seed: int,
    out_dir: Path,
    num_shards: int,
    shards: list[int],
    max_inflight: int = 4096,
    console: Console | None = None,
    label: str = "sample",
) -> ShardedRun:
    out_dir.mkdir(parents=True, exist_ok=True)
    by_shard: dict[int, list[Problem]] = defaultdict(list)
    for p in problems:
        by_shard[shard_of(p.problem_id, num_shards)].append(p)
    result = ShardedRun()
    todo = []
    for s in shards:
        (result.skipped_existing if (out_dir / shard_name(s)).exists() else todo).append(s)

    # Render prompts up front so over-long prompts are known before any request is sent.
    rendered: dict[str, tuple[str, tuple[int, ...]]] = {}
    budget = engine.options.max_model_len - decoding.max_tokens
    expected: dict[int, int] = {}
    for s in todo:
        count = 0
        for p in by_shard[s]:
            text, ids = engine.render(chat_messages(p))
            if len(ids) > budget:
                result.prompts_too_long.append(p.problem_id)
                continue
            rendered[p.problem_id] = (text, ids)
            count += n
        expected[s] = count

    def requests() -> Iterator[Request]:
        for s in todo:
            for p in by_shard[s]:
                if p.problem_id not in rendered:
                    continue
                text, ids = rendered[p.problem_id]
                for i in range(n):
                    yield Request(p.problem_id, i, sample_seed(run_seed, p.problem_id, i), text, ids, shard=s)

    buffers: dict[int, list[dict]] = defaultdict(list)
    for s in todo:  # shards whose prompts are all too long (or empty shards) are complete at once
        if expected[s] == 0:
            write_shard(out_dir, s, [])
            result.written.append(s)
    total = sum(expected.values())
    start = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
               TextColumn("{task.fields[shards]} shards"), TextColumn("{task.fields[tps]:.0f} tok/s"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as progress:
        task = progress.add_task(label, total=total, shards=f"{len(result.written)}/{len(todo)}", tps=0.0)
        for req, out in engine.stream(requests(), decoding, max_inflight=max_inflight):
            token_ids = list(out.token_ids)
            buffers[req.shard].append(
                {
                    "prompt_id": req.prompt_id,
                    "sample_idx": req.sample_idx,
                    "prompt_text": req.prompt_text,
                    "prompt_token_ids": list(req.prompt_token_ids),
                    "text": out.text,
                    "token_ids": token_ids,
                    "finish_reason": str(out.finish_reason),
                    "num_tokens": len(token_ids),
                    "seed": req.seed,
                    **decoding.as_columns(),
                }
            )
            result.generated_tokens += len(token_ids)
            if len(buffers[req.shard]) == expected[req.shard]:
                write_shard(out_dir, req.shard, buffers.pop(req.shard))
                result.written.append(req.shard)
            elapsed = time.perf_counter() - start
            progress.update(task, advance=1, shards=f"{len(result.written)}/{len(todo)}",
                            tps=result.generated_tokens / elapsed if elapsed else 0.0)
    result.seconds = time.perf_counter() - start
    return result
