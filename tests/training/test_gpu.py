"""GPU only (skipped without CUDA): the Transformer Engine path - packed THD sequences, bf16 with fp32 main
params, FP8, the fused linear-CE kernel compiled by Triton - on the tiny model, one rank."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train_helpers as h

GOLDEN = Path(__file__).parent / "golden" / "tiny_llama_tp1.json"

pytestmark = pytest.mark.gpu


def losses_of(trainer, mb, packed_seq_params) -> torch.Tensor:
    with torch.no_grad():
        return trainer.chunks[0](mb.tokens, mb.position_ids, None, labels=mb.labels,
                                 packed_seq_params=packed_seq_params).float()


def test_thd_packing_keeps_documents_apart(make_run, trainer_factory):
    pytest.importorskip("transformer_engine")
    cfg = h.config(make_run(), **{"train.precision": "bf16"})
    with trainer_factory(cfg) as tr:
        assert tr.use_te and tr.micro_batch.thd
        b = next(b for b in range(len(tr.dataset)) if len(tr.dataset.cu_seqlens(b)) >= 3)
        cu = tr.dataset.cu_seqlens(b)
        mb = tr.micro_batch(np.array([b]))
        assert mb.tokens.shape == (1, h.SEQ) and mb.attention_mask is None
        assert mb.packed_seq_params.qkv_format == "thd"
        base = losses_of(tr, mb, mb.packed_seq_params)
        changed = tr.micro_batch(np.array([b]))
        changed.tokens[0, : cu[1]] = (changed.tokens[0, : cu[1]] + 7) % h.VOCAB
        doc2 = slice(int(cu[1]), int(cu[2]))
        assert torch.equal(losses_of(tr, changed, changed.packed_seq_params)[0, doc2], base[0, doc2])
        # without the packing information TE's causal mask spans the bin and document 2 sees document 1
        assert not torch.equal(losses_of(tr, changed, None)[0, doc2], losses_of(tr, mb, None)[0, doc2])


@pytest.mark.parametrize("loss_impl", ["megatron", "fused_linear_ce"])
def test_bf16_thd_training_follows_the_cpu_golden_curve(make_run, trainer_factory, loss_impl):
    pytest.importorskip("transformer_engine")
    golden = json.loads(GOLDEN.read_text())
    cfg = h.config(make_run(), **{"train.precision": "bf16", "train.train_iters": len(golden["loss"]),
                                  "train.loss_impl": loss_impl})
    with trainer_factory(cfg) as tr:
        tr.fit()
    got = [r["loss"] for r in h.step_records(Path(cfg.run_dir))]
    np.testing.assert_allclose(got, golden["loss"], rtol=2e-2)  # bf16 activations vs the fp32 CPU reference


def test_fp8_trains(make_run, trainer_factory):
    pytest.importorskip("transformer_engine")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 needs Ada/Hopper or newer")
    cfg = h.config(make_run(), **{"train.precision": "bf16", "train.fp8": "hybrid", "train.train_iters": 3})
    with trainer_factory(cfg) as tr:
        assert tr.chunks[0].config.fp8 == "hybrid"
        summary = tr.fit()
    assert np.isfinite(summary["final_loss"])
