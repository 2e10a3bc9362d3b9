"""Rank functions for the 2-process (gloo) tests; importable by `torch.multiprocessing.spawn` children.

One spawn runs every multi-process case so the ranks pay the torch/megatron import once: the world is
re-partitioned between cases (TP=2, then PP=2, then EP=2) with Megatron's parallel state re-initialised.
Each case converts with the converter's own rank function, then (single-stage layouts) reloads the saved
checkpoint into a fresh model and records the max |logits - HF logits|.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

import tiny_models as tiny

# (case name, arch, tp, pp, ep, compare logits)
CASES = (
    ("llama-tp2", "llama", 2, 1, 1, True),
    ("qwen3-tp2", "qwen3", 2, 1, 1, True),
    ("qwen3_moe-tp2", "qwen3_moe", 2, 1, 1, True),
    ("qwen3_moe-ep2", "qwen3_moe", 1, 1, 2, True),
    ("llama-pp2", "llama", 1, 2, 1, False),
    ("qwen3-pp2", "qwen3", 1, 2, 1, False),
)


def _relayout(tp: int, pp: int, ep: int) -> None:
    from megatron.core import parallel_state as ps

    from megatron_ssd.config.parallel import ParallelLayout
    from megatron_ssd.models.parallel import init_process_groups

    ps.destroy_model_parallel()
    init_process_groups(ParallelLayout(world=dist.get_world_size(), tensor=tp, pipeline=pp, expert=ep), seed=1234)


def run_cases(hf_dirs: dict[str, str], out_dir: str) -> None:
    from megatron_ssd.config.parallel import ParallelConfig
    from megatron_ssd.models import checkpoint as ckpt
    from megatron_ssd.models.arch import describe, pad_vocab_size
    from megatron_ssd.models.convert import _hf_to_megatron_rank
    from megatron_ssd.models.provider import build_gpt_model

    out = Path(out_dir)
    ids = tiny.input_ids()
    results = {}
    for name, arch, tp, pp, ep, compare in CASES:
        _relayout(tp, pp, ep)
        src = hf_dirs[arch]
        padded = pad_vocab_size(describe(src).vocab_size, tp)
        _hf_to_megatron_rank(src, str(out / name), "float32", padded, (tp, pp, ep), 0)
        if not compare:
            continue
        model = build_gpt_model(src, ParallelConfig(tensor=tp, pipeline=pp, expert=ep),
                                padded_vocab_size=ckpt.checkpoint_info(out / name).padded_vocab_size)
        ckpt.load_model_weights(model, out / name)
        logits = tiny.megatron_logits(model, ids)
        if dist.get_rank() == 0:
            ref = torch.load(Path(out_dir) / f"ref-{arch}.pt")
            results[name] = float((logits - ref).abs().max())
    if dist.get_rank() == 0:
        (out / "results.json").write_text(json.dumps(results))
