"""ssd canary-replay run_dir=DIR [n=32] [samples=1] [split=eval] [concurrency=4] [max_tokens=...] [url=...]

Send the run's eval problems through its running `ssd serve` endpoint as ordinary chat calls, each tagged with its
problem id, so `ssd canary-report` can score the answers in the sandbox: in shadow mode both checkpoints answer
every problem (a paired comparison), in canary mode each sample goes where its routing key sends it. The calls
use the run's evaluation decoding and the offline evaluation's seeds (megatron_ssd/serving/replay.py).

Arguments:
  run_dir      the run directory (required); the router's address comes from DIR/serve/state.json
  n            problems to replay (the first n of the split; 0 = all)
  samples      calls per problem (routing keys replay:<problem>:<sample>)
  split        eval (default) or train
  concurrency  calls in flight
  max_tokens   override the run's eval.max_tokens
  url          the endpoint, when it is not the run's own router (e.g. behind a load balancer)
  api_key_file the client API key, when the router requires one (else $SSD_SERVE_API_KEY)
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.generation.engine import Decoding
from megatron_ssd.problems import Problem
from megatron_ssd.rundir import RunDir
from megatron_ssd.serving.control import read_state
from megatron_ssd.serving.replay import replay, replay_bodies

from .options import parse, wants_help

EXIT_USER_ERROR = 2
EXIT_INCOMPLETE = 3  # some calls got no answer: the telemetry holds what did
API_KEY_ENV = "SSD_SERVE_API_KEY"


@dataclass
class CanaryReplayOptions:
    run_dir: str = ""
    n: int = 32
    samples: int = 1
    split: str = "eval"
    concurrency: int = 4
    max_tokens: int | None = None
    url: str | None = None
    api_key_file: str | None = None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv, __doc__):
        return 0
    console = Console(stderr=True)
    try:
        opts = parse(CanaryReplayOptions, argv, "ssd canary-replay")
        return canary_replay(opts, console)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USER_ERROR


def canary_replay(opts: CanaryReplayOptions, console: Console) -> int:
    if not opts.run_dir:
        raise ConfigError("ssd canary-replay: run_dir=... is required.")
    if opts.split not in ("eval", "train") or opts.n < 0 or opts.samples < 1:
        raise ConfigError("ssd canary-replay: split is eval or train, n >= 0 (0: all), samples >= 1.")
    run = RunDir(opts.run_dir)
    cfg = run.config()
    state = read_state(run)
    if opts.url is None and state is None:
        raise SSDError(f"no `ssd serve` is running for {run.path} (no live {run.serve_state_path}); start it, or "
                       "pass url=http://host:port of the endpoint.")
    url = (opts.url or state["url"]).rstrip("/").removesuffix("/v1")
    model = (state or {}).get("model_name") or cfg.model.name
    api_key = _api_key(opts)
    problems = [Problem.from_row(r) for r in run.prompts(opts.split).to_pylist()]
    problems = [p for p in problems if p.has_tests][: opts.n or None]
    if not problems:
        raise SSDError(f"{run.prompts_path}: no {opts.split} problems with tests to replay.")
    decoding = Decoding.from_config(cfg.eval)
    if opts.max_tokens is not None:
        decoding = dataclasses.replace(decoding, max_tokens=opts.max_tokens)
    bodies = replay_bodies(problems, decoding, model=model, run_seed=cfg.seed, samples=opts.samples)
    with Progress(TextColumn(f"replaying {len(problems)} {opts.split} problems"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("replay", total=len(bodies))
        outcomes = replay(url, bodies, api_key=api_key, concurrency=opts.concurrency,
                          advance=lambda: bar.advance(task))
    by = Counter(o["checkpoint"] or "no answer" for o in outcomes if o["status"] == 200)
    failed = [o for o in outcomes if o["status"] != 200]
    console.print(f"replayed {len(bodies)} calls to {url}: answered by " +
                  (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "nobody") +
                  (f"; {len(failed)} failed (first: {failed[0]['error']})" if failed else "") +
                  f". Next: `ssd canary-report run_dir={run.path}`.")
    return 0 if not failed else EXIT_INCOMPLETE


def _api_key(opts: CanaryReplayOptions) -> str | None:
    if opts.api_key_file:
        try:
            return Path(opts.api_key_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"ssd canary-replay: api_key_file={opts.api_key_file}: {exc.strerror}.") from None
    return os.environ.get(API_KEY_ENV) or None


if __name__ == "__main__":
    sys.exit(main())
