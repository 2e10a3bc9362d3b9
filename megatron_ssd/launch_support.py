"""Helpers for processes started by the launcher (training ranks, generation workers): read the stored config."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from .config import SSDConfig
from .rundir import RunDir


def load_run_config(run_dir: str | Path) -> SSDConfig:
    stored = RunDir(run_dir).stored_config()
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SSDConfig), stored))
