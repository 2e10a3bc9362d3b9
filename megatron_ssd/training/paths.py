"""Where the train stage keeps its files in a run directory.

    <run>/pack/                      packed bins (stage `pack`), read by every rank
    <run>/train/config.yaml          the resolved SSDConfig the launcher wrote (`rundir.write_config`); ranks read
                                     it with `rundir.read_config` (never Hydra)
    <run>/train/base/                the base model converted to a Megatron checkpoint (`ssd-convert hf-to-megatron`)
    <run>/train/base/hf_template/    its HF config/tokenizer (the architecture the ranks build)
    <run>/train/ckpt/                training checkpoints, `latest` pointer
    <run>/train/metrics.jsonl        every metric, one JSON object per line
    <run>/train/launcher.log         everything the ranks printed
    <run>/train/summary.json         rank 0's summary of a finished run
    <run>/train/failure.json         rank 0's account of a failed run (message, kind)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..rundir import CHECKPOINTS_DIR

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
        return self.run_dir / CHECKPOINTS_DIR

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
