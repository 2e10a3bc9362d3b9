"""Parallel layouts through the real launch path (torchrun + megatron_ssd.training.entry, gloo on CPU):
TP=2, PP=2 and DP=2 (distributed optimizer) reproduce TP=1's losses; a TP=1 checkpoint resumes at TP=2 and
continues the same curve; the fused linear-CE head matches Megatron's at TP=2."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import train_helpers as h
from megatron_ssd.models.checkpoint import write_latest

STEPS = 4
LOSS_RTOL = 1e-5  # fp32: only summation order differs between layouts
GNORM_RTOL = 1e-4


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """TP=1 on one rank, in this process, saving at iterations 2 and 4."""
    from conftest import single_rank_trainer

    run = tmp_path_factory.mktemp("ref") / "run"
    shutil.copytree(assets / "pack", run / "pack")
    shutil.copytree(assets / "base_tied", run / "train" / "base")
    cfg = h.config(run, **{"train.save_interval": 2, "train.train_iters": STEPS})
    with single_rank_trainer(cfg) as tr:
        tr.fit()
    return run, h.step_records(run)


@pytest.fixture(scope="module")
def launch(assets, tmp_path_factory):
    """launch(name, nproc, **overrides) -> step records of a torchrun run (memoised per name)."""
    done: dict[str, list[dict]] = {}
    runs = {}

    def run_layout(name: str, nproc: int, source=None, **overrides) -> list[dict]:
        if name in done:
            return done[name]
        run = tmp_path_factory.mktemp(name) / "run"
        if source is None:
            shutil.copytree(assets / "pack", run / "pack")
            shutil.copytree(assets / "base_tied", run / "train" / "base")
        else:
            shutil.copytree(source, run)
        cfg = h.config(run, **{"parallel.nproc_per_node": nproc, "train.save_interval": 2,
                               "train.train_iters": STEPS, **overrides})
        proc = h.torchrun(h.write_cfg(cfg), nproc)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        done[name] = h.step_records(run)
        runs[name] = run
        return done[name]

    run_layout.runs = runs
    return run_layout


def assert_same_curve(got: list[dict], want: list[dict]) -> None:
    assert [r["iteration"] for r in got] == [r["iteration"] for r in want]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=LOSS_RTOL)
    np.testing.assert_allclose([r["grad_norm"] for r in got], [r["grad_norm"] for r in want], rtol=GNORM_RTOL)
    assert [r["loss_tokens"] for r in got] == [r["loss_tokens"] for r in want]


LAYOUTS = {
    "tp2": {"parallel.tensor": 2},
    # CPU sequence parallelism (models/cpu_sp_norm.py): the norms' weight gradients summed over the TP ranks
    "tp2_sp": {"parallel.tensor": 2, "parallel.sequence_parallel": True},
    "pp2": {"parallel.pipeline": 2},
    "dp2_distopt": {"parallel.distributed_optimizer": True},
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_reproduces_tp1_losses(reference, launch, name):
    _, want = reference
    got = launch(name, 2, **LAYOUTS[name])
    assert_same_curve(got, want)
    # not trivially equal: the curve moves
    assert abs(want[-1]["loss"] - want[0]["loss"]) > 1e-2


@pytest.mark.slow
def test_interleaved_pipeline_reproduces_tp1_losses(reference, launch):
    _, want = reference
    got = launch("pp2_vpp2", 2, **{"parallel.pipeline": 2, "parallel.virtual_pipeline": 2})
    assert_same_curve(got, want)


def test_tp1_checkpoint_resumes_at_tp2_on_the_same_curve(reference, launch):
    ref_run, want = reference
    # The TP=1 run as if killed after its iteration-2 checkpoint; continue it with TP=2.
    source = ref_run.parent / "tp1_cut"
    shutil.copytree(ref_run, source)
    shutil.rmtree(source / "train" / "ckpt" / "iter_0000004")
    write_latest(source / "train" / "ckpt", 2)
    got = launch("resume_tp2", 2, source=source, **{"parallel.tensor": 2})
    assert [r["iteration"] for r in got] == [1, 2, 3, 4]  # 1-2 from the TP=1 run, 3-4 resumed at TP=2
    assert_same_curve(got[2:], want[2:])
    resume = [e for e in h.records(launch.runs["resume_tp2"]) if e["kind"] == "resume"][-1]
    assert resume["iteration"] == 2 and resume["parallel"]["tensor"] == 2
    assert resume["rng_restored"] is False  # RNG streams are per layout; SSD trains without dropout


def test_fused_linear_ce_matches_megatron_at_tp2(launch):
    megatron = launch("tp2", 2, **LAYOUTS["tp2"])
    fused = launch("tp2_fused", 2, **{"parallel.tensor": 2, "train.loss_impl": "fused_linear_ce"})
    # Equal losses and gradient norms at every step; the updates (hence later losses) use the gradients.
    assert_same_curve(fused, megatron)


@pytest.mark.slow
def test_moe_expert_parallel_reproduces_the_single_rank_losses(tmp_path):
    """Qwen3-MoE (4 experts, top-2): EP=2 over DP=2 ranks gives the losses of one rank."""
    from transformers import Qwen3MoeConfig

    from conftest import single_rank_trainer
    from megatron_ssd.models.convert import hf_to_megatron
    from megatron_ssd.training import synthetic

    hf = synthetic.random_model(tmp_path / "hf", Qwen3MoeConfig(
        vocab_size=h.VOCAB, hidden_size=64, intermediate_size=96, moe_intermediate_size=48, num_experts=4,
        num_experts_per_tok=2, norm_topk_prob=True, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, tie_word_embeddings=False, router_aux_loss_coef=0.01))
    curves = {}
    for name, nproc, overrides in (("ep1", 1, {}), ("ep2", 2, {"parallel.expert": 2})):
        run = tmp_path / name
        h.make_packed(run / "pack")
        hf_to_megatron(hf, run / "train" / "base", dtype="float32")
        cfg = h.config(run, **{"parallel.nproc_per_node": nproc, **overrides})
        if nproc == 1:
            with single_rank_trainer(cfg) as tr:
                tr.fit()
        else:
            proc = h.torchrun(h.write_cfg(cfg), nproc)
            assert proc.returncode == 0, proc.stderr[-6000:]
        curves[name] = h.step_records(run)
    assert_same_curve(curves["ep2"], curves["ep1"])
