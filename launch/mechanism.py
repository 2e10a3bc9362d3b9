"""ssd mechanism base=HF_DIR tuned=HF_DIR samples=DIR[,DIR...] [out=mechanism.json] [plot=frontier.png] [...]

Locks and forks on any two checkpoints: teacher-force both models over the completions in the sample folders
(shard_*.parquet in the sample-shard format of docs/CONTRACTS.md, e.g. <run>/eval/base/samples and
<run>/eval/ssd/samples), classify positions from the base model, and place the tuned model against the base model's
temperature frontier with a paired bootstrap over problems (docs/MECHANISM.md). `--key value` and `--key=value`
are accepted as well as key=value.

Arguments:
  base, tuned        HF model folders (required)
  samples            comma-separated sample folders (required); each is a source named after its folder
                     (<label>/samples -> label)
  out                where the record goes (default mechanism.json); plot: a PNG of the frontier (optional)
  backend            exact (transformers, full vocabulary; the default) or vllm (prompt_logprobs with the top_k)
  dtype              the vLLM engine's dtype (backend=vllm)
  train_top_k, train_top_p, train_min_p   the training truncation the frontier uses (defaults: the sample group's)
  train_temperature  marks the decode-only arm (the base at this temperature) on the frontier; 0 = not marked
  ci_level, bootstrap_samples             the interval (defaults: the eval group's)
  and every key of eval.mechanism: top_k, lock_p, plausible_p, fork_entropy, tuned_temperature, min_excess,
  max_problems, max_samples_per_problem, max_completion_tokens, examples, seed
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from megatron_ssd.config.eval import EvalConfig, MechanismConfig
from megatron_ssd.config.sample import SampleConfig
from megatron_ssd.config.validate import mechanism_problems
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.rundir import atomic_write_bytes, atomic_write_json

from .options import parse, wants_help

EXIT_USER_ERROR = 2
_M, _S, _E = MechanismConfig(), SampleConfig(), EvalConfig()


@dataclass
class MechanismOptions:
    base: str = ""
    tuned: str = ""
    samples: str = ""
    out: str = "mechanism.json"
    plot: str = ""
    backend: str = "exact"
    dtype: str = "bfloat16"
    train_top_k: int = _S.top_k
    train_top_p: float = _S.top_p
    train_min_p: float = _S.min_p
    train_temperature: float = _S.temperature
    ci_level: float = _E.ci_level
    bootstrap_samples: int = _E.bootstrap_samples
    top_k: int = _M.top_k
    lock_p: float = _M.lock_p
    plausible_p: float = _M.plausible_p
    fork_entropy: float = _M.fork_entropy
    tuned_temperature: float = _M.tuned_temperature
    min_excess: float = _M.min_excess
    max_problems: int = _M.max_problems
    max_samples_per_problem: int = _M.max_samples_per_problem
    max_completion_tokens: int = _M.max_completion_tokens
    examples: int = _M.examples
    seed: int = _M.seed


def dashed_to_dotlist(argv: list[str]) -> list[str]:
    """`--base X` and `--base=X` -> `base=X`; key=value passes through."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and arg not in ("--help",):
            key, eq, value = arg[2:].partition("=")
            key = key.replace("-", "_")  # --max-problems = max_problems; a value keeps its dashes
            if eq:
                out.append(f"{key}={value}")
            elif i + 1 < len(argv):
                out.append(f"{key}={argv[i + 1]}")
                i += 1
            else:
                raise ConfigError(f"ssd mechanism: {arg} needs a value (see `ssd mechanism --help`).")
        else:
            out.append(arg)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv, __doc__):
        return 0
    console = Console(stderr=True)
    try:
        opts = parse(MechanismOptions, dashed_to_dotlist(argv), "ssd mechanism")
        return mechanism(opts, console)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USER_ERROR


def mechanism(opts: MechanismOptions, console: Console) -> int:
    folders = _sources(opts)
    for key in ("base", "tuned"):
        if not (Path(getattr(opts, key)) / "config.json").is_file():
            raise ConfigError(f"ssd mechanism: {key}={getattr(opts, key)!r} is not an HF model folder (no "
                              "config.json); pass the folder of a checkpoint (e.g. <run>/export/hf/iter_*).")
    m = dataclasses.replace(_M, enabled=True, **{f.name: getattr(opts, f.name) for f in dataclasses.fields(_M)
                                                 if hasattr(opts, f.name) and f.name != "enabled"})
    sample = dataclasses.replace(_S, top_k=opts.train_top_k, top_p=opts.train_top_p, min_p=opts.train_min_p)
    problems = mechanism_problems(m, sample)
    if problems:
        raise ConfigError("ssd mechanism: " + " ".join(p.replace("eval.mechanism.", "") for p in problems))
    # why: torch, transformers and vLLM load here, not on `ssd mechanism --help`
    from megatron_ssd.evaluation.mechanism.probe import run_probe  # why: loads torch and transformers
    from megatron_ssd.evaluation.mechanism.quantities import Truncation  # why: as above, with the probe
    from megatron_ssd.evaluation.report.mechanism import frontier_plot  # why: loads matplotlib

    engines = []

    def load_engine(path):
        from megatron_ssd.generation import engine as vllm_engine  # why: vLLM, only for --backend vllm

        while engines:
            engines.pop().shutdown()
        options = vllm_engine.EngineOptions(dtype=opts.dtype, seed=opts.seed, enforce_eager=True,
                                            max_logprobs=vllm_engine.logprobs_cap(opts.top_k))
        engines.append(vllm_engine.VLLMEngine(path, options))
        return engines[-1]

    try:
        record = run_probe(opts.base, opts.tuned, folders, m=m, trunc=Truncation.from_config(sample),
                           ci_level=opts.ci_level, samples=opts.bootstrap_samples,
                           decode_only_temperature=opts.train_temperature or None, load_engine=load_engine)
    finally:
        while engines:
            engines.pop().shutdown()
    atomic_write_json(opts.out, record)
    png = frontier_plot(record["frontier_test"]) if opts.plot else None
    if png:
        atomic_write_bytes(opts.plot, png)
    print(record["sentence"])
    plotted = f"; plot: {opts.plot}" if png else (f"; no plot: no frontier ({record['frontier_test'].get('note')})"
                                                  if opts.plot else "")
    console.print(f"record: {opts.out}{plotted}", highlight=False)
    return 0


def _sources(opts: MechanismOptions) -> dict[str, Path]:
    if not opts.samples:
        raise ConfigError("ssd mechanism: samples=DIR[,DIR...] is required (folders of shard_*.parquet).")
    out: dict[str, Path] = {}
    for raw in str(opts.samples).split(","):
        folder = Path(raw.strip())
        if not folder.is_dir():
            raise ConfigError(f"ssd mechanism: samples folder {folder} does not exist.")
        name = folder.parent.name if folder.name == "samples" else folder.name
        out[name if name not in out else f"{name}_{len(out)}"] = folder
    return out


if __name__ == "__main__":
    sys.exit(main())
