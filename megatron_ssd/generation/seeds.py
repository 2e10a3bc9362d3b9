"""Per-sample seeds and shard assignment, both pure functions of stable identifiers.

A sample's seed depends only on (run seed, prompt_id, sample_idx), and a prompt's shard only on its id, so any
shard can be regenerated alone, on any machine, in any order, and give the same requests.
"""
from __future__ import annotations

import hashlib


def _u64(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_seed(run_seed: int, prompt_id: str, sample_idx: int) -> int:
    """A 63-bit seed (vLLM and torch accept signed 64-bit)."""
    return _u64("sample", run_seed, prompt_id, sample_idx) & ((1 << 63) - 1)


def shard_of(prompt_id: str, num_shards: int) -> int:
    return _u64("shard", prompt_id) % num_shards


def shards_of_engine(num_shards: int, num_engines: int, engine_rank: int) -> list[int]:
    """Round-robin shards over data-parallel engines; engine_rank=-1 means all shards."""
    if engine_rank < 0:
        return list(range(num_shards))
    return list(range(engine_rank, num_shards, num_engines))


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}.parquet"
