"""Generate n samples per problem into shards keyed by a stable hash of the prompt id; resumable.

Several jobs (e.g. the base model's official decoding and its decode-only decoding) can share one engine pass:
their requests enter the same continuous batch, so the long tail of one job's slowest samples overlaps the other
job's work instead of running at batch size 1. Every request keeps its own seed and sampling parameters, so a
sample does not depend on which jobs it was generated with.
"""
from __future__ import annotations

import math
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


@dataclass(frozen=True)
class GenerationJob:
    """n samples per problem at one decoding into one folder of shards (the `sample` stage, or one eval label)."""
    label: str
    problems: list[Problem]
    decoding: Decoding
    n: int
    run_seed: int
    out_dir: Path
    num_shards: int
    shards: list[int]
    # Record each sample's `cumulative_logprob` (the selection diagnostic's scalar). Off for the `sample` stage, so
    # its engine requests stay exactly as they are; the column is then null.
    logprob: bool = False


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


def missing_shards(job: GenerationJob) -> list[int]:
    """The shards of `job` not written yet: a job without any needs no engine (a rerun after scoring died)."""
    return [s for s in job.shards if not (job.out_dir / shard_name(s)).exists()]


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
    """One job; see `generate_jobs`."""
    job = GenerationJob(label, problems, decoding, n, run_seed, Path(out_dir), num_shards, shards)
    return generate_jobs(engine, [job], max_inflight=max_inflight, console=console)[0]


class _JobState:
    """Which shards of a job still need generating, their rendered prompts, and the samples buffered so far."""

    def __init__(self, job: GenerationJob, engine: VLLMEngine):
        self.job = job
        self.result = ShardedRun()
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self.by_shard: dict[int, list[Problem]] = defaultdict(list)
        for p in job.problems:
            self.by_shard[shard_of(p.problem_id, job.num_shards)].append(p)
        self.todo = missing_shards(job)
        self.result.skipped_existing = [s for s in job.shards if s not in self.todo]
        # Render prompts up front so over-long prompts are known before any request is sent.
        self.rendered: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.expected: dict[int, int] = {}
        budget = engine.options.max_model_len - job.decoding.max_tokens
        for s in self.todo:
            count = 0
            for p in self.by_shard[s]:
                text, ids = engine.render(chat_messages(p))
                if len(ids) > budget:
                    self.result.prompts_too_long.append(p.problem_id)
                    continue
                self.rendered[p.problem_id] = (text, ids)
                count += job.n
            self.expected[s] = count
        self.buffers: dict[int, list[dict]] = defaultdict(list)
        for s in self.todo:  # shards whose prompts are all too long (or empty shards) are complete at once
            if self.expected[s] == 0:
                self._write(s, [])

    @property
    def total(self) -> int:
        return sum(self.expected.values())

    def requests(self, job_index: int) -> Iterator[Request]:
        job = self.job
        for s in self.todo:
            for p in self.by_shard[s]:
                if p.problem_id not in self.rendered:
                    continue
                text, ids = self.rendered[p.problem_id]
                for i in range(job.n):
                    yield Request(p.problem_id, i, sample_seed(job.run_seed, p.problem_id, i), text, ids,
                                  job.decoding, shard=s, job=job_index, logprob=job.logprob)

    def add(self, req: Request, out) -> None:
        token_ids = list(out.token_ids)
        self.buffers[req.shard].append(
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
                **self.job.decoding.as_columns(),
                "cumulative_logprob": _cumulative_logprob(out) if self.job.logprob else None,
            }
        )
        self.result.generated_tokens += len(token_ids)
        if len(self.buffers[req.shard]) == self.expected[req.shard]:
            self._write(req.shard, self.buffers.pop(req.shard))

    def _write(self, shard: int, rows: list[dict]) -> None:
        write_shard(self.job.out_dir, shard, rows)
        self.result.written.append(shard)


def _cumulative_logprob(out) -> float | None:
    """The engine's summed log-probability of the sampled tokens; None when it returned none (a non-finite sum,
    e.g. a token of probability 0 under the raw distribution, is stored as missing too)."""
    value = getattr(out, "cumulative_logprob", None)
    return float(value) if value is not None and math.isfinite(value) else None


def generate_jobs(
    engine: VLLMEngine,
    jobs: list[GenerationJob],
    *,
    max_inflight: int = 4096,
    console: Console | None = None,
) -> list[ShardedRun]:
    """Generate every job's missing shards in one engine pass; a shard file is written as soon as it is complete."""
    states = [_JobState(job, engine) for job in jobs]

    def requests() -> Iterator[Request]:
        for index, state in enumerate(states):
            yield from state.requests(index)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
               TextColumn("{task.fields[shards]} shards"), TextColumn("{task.fields[tps]:.0f} tok/s"),
               TimeElapsedColumn()]
    start = time.perf_counter()
    with Progress(*columns, console=console or Console(stderr=True), transient=False) as progress:
        tasks = [progress.add_task(s.job.label, total=s.total, shards=f"{len(s.result.written)}/{len(s.todo)}",
                                   tps=0.0) for s in states]
        for req, out in engine.stream(requests(), max_inflight=max_inflight):
            state = states[req.job]
            state.add(req, out)
            elapsed = time.perf_counter() - start
            progress.update(tasks[req.job], advance=1, shards=f"{len(state.result.written)}/{len(state.todo)}",
                            tps=state.result.generated_tokens / elapsed if elapsed else 0.0)
    seconds = time.perf_counter() - start
    for state in states:
        state.result.seconds = seconds
    return [state.result for state in states]
