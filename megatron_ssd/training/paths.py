"""Where the train stage keeps its files in a run directory, and how the ranks get the resolved config.

    <run>/pack/                      packed bins (stage `pack`), read by every rank
    <run>/train/config.yaml          the resolved SSDConfig the launcher wrote; ranks read it (never Hydra)
    <run>/train/base/                the base model converted to a Megatron checkpoint (`ssd-convert hf-to-megatron`)
    <run>/train/base/hf_template/    its HF config/tokenizer (the architecture the ranks build)
    <run>/train/ckpt/                training checkpoints, `latest` pointer
    <run>/train/metrics.jsonl        every metric, one JSON object per line
    <run>/train/launcher.log         everything the ranks printed
    <run>/train/summary.json         rank 0's summary of a finished run
    <run>/train/failure.json         rank 0's account of a failed run (message, kind)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from ..config.schema import SSDConfig
from ..errors import ConfigError
from ..rundir import atomic_write_text

STAGE = "train"


@dataclass(frozen=True)
class TrainPaths:
    run_dir: Path

    @property
    def train_dir(self) -> Path:
        return self.run_dir / STAGE

    @property
    def packed(self) -> Path:
        return self.run_dir / "pack"

    @property
    def config(self) -> Path:
        return self.train_dir / "config.yaml"

    @property
    def base(self) -> Path:
        return self.train_dir / "base"

    @property
    def hf_template(self) -> Path:
        return self.base / "hf_template"

    @property
    def ckpt(self) -> Path:
        return self.train_dir / "ckpt"

    @property
    def metrics(self) -> Path:
        return self.train_dir / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.train_dir / "launcher.log"

    @property
    def summary(self) -> Path:
        return self.train_dir / "summary.json"

    @property
    def failure(self) -> Path:
        return self.train_dir / "failure.json"


def write_config(cfg: SSDConfig, path: str | os.PathLike) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def read_config(path: str | os.PathLike) -> SSDConfig:
    """The launcher's resolved config, checked against the schema (unknown keys and wrong types fail)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config; the train stage writes it before launching the ranks.")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SSDConfig), OmegaConf.load(path))
        return OmegaConf.to_object(merged)
    except Exception as exc:
        raise ConfigError(f"{path}: not a valid megatron-ssd config ({type(exc).__name__}: {exc}).") from exc
