"""Sharded conversion on 2 gloo processes: TP=2 (every architecture), EP=2 (MoE), PP=2 (tied and untied).

One spawn runs all cases (`_workers.CASES`); the tests below check its results: logits of the TP/EP-sharded
model loaded from its checkpoint against transformers, and the export of every checkpoint (resharded to
TP=PP=EP=1 by megatron-core's loader) against the original HF tensors, bit for bit.
"""
from __future__ import annotations

import json

import pytest
import torch

import _workers
from conftest import LOGITS_ATOL
from megatron_ssd.config.parallel import ParallelLayout
from megatron_ssd.models.convert import megatron_to_hf
from megatron_ssd.models.parallel import spawn
from test_convert import assert_same_tensors

LOGIT_CASES = [c[0] for c in _workers.CASES if c[5]]


@pytest.fixture(scope="module")
def parallel_run(hf_dirs, ref_logits, tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    for arch, ref in ref_logits.items():
        torch.save(ref, out / f"ref-{arch}.pt")
    spawn(_workers.run_cases, {a: str(p) for a, p in hf_dirs.items()}, str(out),
          layout=ParallelLayout(world=2, tensor=2))
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("case", LOGIT_CASES)
def test_sharded_logits_match_transformers(parallel_run, case):
    diff = parallel_run[1][case]
    print(f"{case}: max|megatron - transformers| = {diff:.3g}")
    assert diff <= LOGITS_ATOL


@pytest.mark.slow
@pytest.mark.parametrize("case", [c[0] for c in _workers.CASES])
def test_sharded_checkpoint_exports_bit_exact(parallel_run, hf_dirs, case, tmp_path):
    arch = dict((c[0], c[1]) for c in _workers.CASES)[case]
    ckpt_root = parallel_run[0] / case
    files = sorted(p.name for p in (ckpt_root / "iter_0000000").glob("*.distcp"))
    assert len(files) >= 2, files  # both ranks wrote shards
    megatron_to_hf(ckpt_root, tmp_path / "hf", hf_template=hf_dirs[arch])
    assert_same_tensors(hf_dirs[arch], tmp_path / "hf")
