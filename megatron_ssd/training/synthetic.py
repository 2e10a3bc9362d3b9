"""Seeded synthetic inputs for the trainer's tests and benchmarks: an HF Llama folder with random weights and a
word-level tokenizer, and packed data written by the data package's own writer from random samples.

Weights come from NumPy's seeded generator, not from transformers' initialisers (which may change between
releases), so a golden loss curve depends only on the seed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.pack import select_documents
from ..data.pack import write_packed as write
from ..data.samples import SampleTable


def random_llama(folder: str | Path, *, seed: int = 0, std: float = 0.05, dtype: str = "float32",
                 **config: Any) -> Path:
    """An HF LlamaForCausalLM folder; `config` are LlamaConfig fields (vocab_size, hidden_size, ...)."""
    from transformers import LlamaConfig

    return random_model(folder, LlamaConfig(**config), seed=seed, std=std, dtype=dtype)


def random_model(folder: str | Path, cfg, *, seed: int = 0, std: float = 0.05, dtype: str = "float32") -> Path:
    """An HF causal-LM folder for the transformers config `cfg` (Llama, Qwen3, Qwen3-MoE, ...): matrices
    N(0, std), norm weights 1 + N(0, std), plus a word-level tokenizer over its vocabulary."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    model = model.to_empty(device="cpu").float()
    model.tie_weights()  # to_empty gives every parameter its own storage; re-tie as the config says
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            noise = torch.from_numpy(rng.standard_normal(tuple(p.shape), dtype=np.float32) * np.float32(std))
            p.copy_(1.0 + noise if p.ndim == 1 else noise)
    # (RoPE's inverse frequencies are a non-persistent buffer: not saved, recomputed by every reader.)
    model.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True)
    word_level_tokenizer(folder, cfg.vocab_size)
    return folder


def word_level_tokenizer(folder: str | Path, vocab_size: int) -> None:
    """A word-level HF fast tokenizer over ids 0..vocab_size-1 ("<pad>", "</s>", "<unk>", "t3", "t4", ...)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)


def sample_table(num_docs: int, vocab_size: int, *, seed: int = 0, prompt_len: tuple[int, int] = (2, 12),
                 completion_len: tuple[int, int] = (6, 40)):
    """A SampleTable (what the sample stage produces) of random prompt/completion ids; lengths uniform in the
    half-open ranges."""
    rng = np.random.default_rng(seed)
    p_len = rng.integers(*prompt_len, num_docs)
    c_len = rng.integers(*completion_len, num_docs)
    prompts = rng.integers(3, vocab_size, int(p_len.sum())).astype(np.int32)
    comps = rng.integers(3, vocab_size, int(c_len.sum())).astype(np.int32)
    offsets = lambda lens: np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)  # noqa: E731
    return SampleTable(
        shard_paths=[Path("shard_00000.parquet")],
        shard=np.zeros(num_docs, dtype=np.int32),
        row=np.arange(num_docs, dtype=np.int64),
        prompt_id=np.array([f"p{i:03d}" for i in range(num_docs)], dtype=object),
        sample_idx=np.zeros(num_docs, dtype=np.int64),
        finish_reason=np.array(["stop"] * num_docs, dtype=object),
        prompt_values=prompts,
        prompt_offsets=offsets(p_len),
        completion_values=comps,
        completion_offsets=offsets(c_len),
        check_rows=[],
    )


def write_packed(folder: str | Path, *, num_docs: int, seq_length: int, vocab_size: int, seed: int = 0,
                 fingerprint: str = "synthetic", **lengths: Any) -> dict:
    """Pack `num_docs` random samples into `folder` (the `packed/` format); returns its meta."""
    table = sample_table(num_docs, vocab_size, seed=seed, **lengths)
    docs = select_documents(table, seq_length, "truncate")
    return write(folder, table, docs, seq_length, pad_id=0, tokenizer_fingerprint=fingerprint)
