"""Tiny, seeded fixtures for the training tests: an HF Llama folder, packed data (both from
megatron_ssd.training.synthetic), configs, and the torchrun launch path."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from megatron_ssd.training import synthetic

REPO = Path(__file__).resolve().parents[2]
VOCAB = 256
SEQ = 64


def tiny_hf_model(folder: Path, *, layers: int = 4, tie: bool = True, seed: int = 0) -> Path:
    """Llama, hidden 64, 4 heads / 2 KV heads, ffn 128, vocab 256, seeded weights, word-level tokenizer."""
    return synthetic.random_llama(folder, seed=seed, vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=tie,
                                  rope_theta=10000.0)


def make_packed(folder: Path, *, num_docs: int = 48, seq_length: int = SEQ, seed: int = 0,
                fingerprint: str = "test-tokenizer") -> dict:
    return synthetic.write_packed(folder, num_docs=num_docs, seq_length=seq_length, vocab_size=VOCAB, seed=seed,
                                  fingerprint=fingerprint)


def fingerprint(hf_folder: Path) -> str:
    from megatron_ssd.data.tokenizer import tokenizer_fingerprint

    return tokenizer_fingerprint(hf_folder)


def config(run: Path, **overrides):
    """An SSDConfig for the tiny run: fp32, 8 bins per step, 2 bins per micro-batch, wandb off.
    `overrides`: "group.field" -> value."""
    from megatron_ssd.config.schema import SSDConfig

    cfg = SSDConfig(run_dir=str(run))
    cfg.train = replace(cfg.train, seq_length=SEQ, micro_batch_size=2, global_batch_size=8, train_iters=4,
                        lr=3e-3, min_lr=3e-4, lr_warmup_iters=1, save_interval=100, precision="fp32", seed=1234)
    cfg.cluster = replace(cfg.cluster, wandb_mode="disabled")
    for key, value in overrides.items():
        group, field = key.split(".")
        setattr(cfg, group, replace(getattr(cfg, group), **{field: value}))
    return cfg


def write_cfg(cfg) -> Path:
    from megatron_ssd.rundir import write_config
    from megatron_ssd.training.paths import TrainPaths

    path = TrainPaths(Path(cfg.run_dir)).config
    write_config(cfg, path)
    return path


def torchrun(config_path: Path, nproc: int, *, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real launch path: torchrun + megatron_ssd.training.entry, on `nproc` CPU ranks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1", "--standalone",
           "-m", "megatron_ssd.training.entry", "--config", str(config_path)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines()]


def step_records(run: Path) -> list[dict]:
    return [r for r in records(run) if r["kind"] == "step"]


def single_rank_env(monkeypatch) -> None:
    """The torchrun environment of a one-rank world on a free local port, for calling the rank entry in-process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
