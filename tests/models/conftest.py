"""Fixtures: tiny random HF model folders of every architecture (session-scoped, built locally)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `tiny_models` and `_workers`, also for spawned ranks

import tiny_models as tiny  # noqa: E402

# fp32, same weights and op order up to summation: measured max |diff| is 0 to ~4e-7 on logits of magnitude ~1.
LOGITS_ATOL = 1e-5


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {arch: tiny.make_hf_folder(arch, root / arch) for arch in tiny.ARCHS}


@pytest.fixture(scope="session")
def ref_logits(hf_dirs) -> dict[str, "torch.Tensor"]:  # noqa: F821
    ids = tiny.input_ids()
    return {arch: tiny.hf_logits(folder, ids) for arch, folder in hf_dirs.items()}
