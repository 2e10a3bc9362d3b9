"""Evaluate one model at several decodings: generate, score in the sandbox, summarise -> eval/<label>/.

Used by the `diagnose` stage (the base model at its evaluation decoding, label ``base``, and at the decode-only
baseline's decodings) and the `evaluate` stage (the trained models). All labels of one model are generated in one
engine pass (`generate_jobs`), then scored label by label. Generation is sharded and resumable like the `sample`
stage; a label whose summary.json exists is not recomputed, so `evaluate` reuses what `diagnose` produced. All
labels share one seed stream (common random numbers), which tightens paired comparisons between models on the same
problems.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config.model import extraction_reasoning
from ..evaluation.scoring import score_samples, summarize
from ..evaluation.sandbox.runner import SandboxConfig, resolve_isolation
from ..evaluation.selection_report import selection_enabled, selection_report
from ..problems import Problem
from ..rundir import RunDir
from .engine import Decoding, VLLMEngine
from .sharded import GenerationJob, generate_jobs, missing_shards
from .shards import read_samples

EVAL_SEED_OFFSET = 1_000_003  # eval samples never reuse the training samples' seed stream
BASE_LABEL = "base"  # the base model at the official decoding; its difficulty quartiles slice every other label


def model_decodings(cfg: Any, model: str) -> dict[str, Decoding]:
    """Label -> decoding for one model: ``<model>`` at the official decoding, ``<model>_T<t>`` for each
    `eval.temperature_sweep` value (official truncation), and for the base model also the decode-only baseline:
    the training decoding (temperature, top-k, top-p) with the evaluation token budget. The trained model is not
    evaluated at the training decoding unless the sweep asks for it: SSD is judged at the official setting."""
    official = Decoding.from_config(cfg.eval)
    out = {model: official}
    if model == BASE_LABEL:
        train = Decoding.from_config(cfg.sample)
        out[f"{model}_T{train.temperature:g}"] = replace(train, max_tokens=official.max_tokens, stop=official.stop)
    for t in cfg.eval.temperature_sweep:
        out.setdefault(f"{model}_T{t:g}", replace(official, temperature=t))
    return out


def evaluate_labels(
    load_engine: Callable[[], VLLMEngine],
    decodings: Mapping[str, Decoding],
    problems: list[Problem],
    *,
    cfg: Any,
    run: RunDir,
    model_name: str,
    console: Console,
    difficulty_of: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """label -> summary for every (label, decoding) of one model. Labels are summarised in the given order; after
    ``base`` its difficulty quartiles slice the labels that follow. `load_engine` is called only when a label
    still has a shard to generate, so rerunning a finished (or generated but unscored) evaluation loads no model."""
    e = cfg.eval
    summaries: dict[str, dict[str, Any]] = {}
    todo = []
    for label in decodings:
        summary = run.eval_summary(label)
        if summary is not None:
            console.print(f"[dim]eval/{label}: already evaluated; reusing {run.eval_dir(label) / 'summary.json'}[/]")
            summaries[label] = summary
        else:
            todo.append(label)
    shards = max(1, min(16, len(problems) // 8))
    jobs = [GenerationJob(f"eval {label}", problems, decodings[label], e.n, cfg.seed + EVAL_SEED_OFFSET,
                          run.eval_samples_dir(label), shards, list(range(shards)), logprob=selection_enabled(e))
            for label in todo]
    if todo:  # no generation without a sandbox to score it: bwrap missing stops here with the fix (SANDBOX.md)
        resolve_isolation(SandboxConfig.from_eval(e))
    if any(missing_shards(job) for job in jobs):  # every shard written (scoring died): no engine to load
        generate_jobs(load_engine(), jobs, max_inflight=cfg.sample.max_inflight_requests, console=console)
    if BASE_LABEL in summaries:
        difficulty_of = summaries[BASE_LABEL].get("difficulty_of")
    for label in todo:
        summaries[label] = _score_label(label, decodings[label], problems, cfg=cfg, run=run,
                                        model_name=model_name, console=console, difficulty_of=difficulty_of)
        if label == BASE_LABEL:
            difficulty_of = summaries[label].get("difficulty_of")
    return {label: summaries[label] for label in decodings}


def _score_label(label: str, decoding: Decoding, problems: list[Problem], *, cfg: Any, run: RunDir,
                 model_name: str, console: Console, difficulty_of: Mapping[str, str] | None) -> dict[str, Any]:
    e = cfg.eval
    samples = read_samples(run.eval_samples_dir(label))
    columns = [TextColumn(f"[bold]sandbox {label}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
               TextColumn("{task.fields[rate]:.1f} samples/s"), TextColumn(f"({e.workers} workers)"),
               TimeElapsedColumn()]
    start = time.perf_counter()
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=len(samples), rate=0.0)

        done, lock = [0], threading.Lock()

        def advance(step: int) -> None:  # called from the sandbox's worker threads
            with lock:
                done[0] += step
                bar.update(task, completed=done[0], rate=done[0] / max(time.perf_counter() - start, 1e-9))

        rows = score_samples(problems, samples, SandboxConfig.from_eval(e), reasoning=extraction_reasoning(cfg.model),
                             progress=advance)
    text_of = {(s["prompt_id"], s["sample_idx"]): s["text"] for s in samples}
    run.write_eval_results(label, [{**r, "text": text_of[(r["prompt_id"], r["sample_idx"])]} for r in rows])
    if selection_enabled(e):  # observes only; written before summary.json, which makes the label final
        run.write_selection(label, selection_report(problems, samples, rows, reasoning=extraction_reasoning(cfg.model)))
    summary = summarize(rows, problems, e.k, e.n, e.ci_level, e.bootstrap_samples, cfg.seed,
                        difficulty_of=difficulty_of)
    summary.update({"label": label, "model": model_name, "temperature": decoding.temperature,
                    "top_k": decoding.top_k, "top_p": decoding.top_p, "min_p": decoding.min_p,
                    "max_tokens": decoding.max_tokens})
    run.write_eval_summary(label, summary)
    return summary

