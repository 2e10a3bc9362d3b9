"""Trainer behaviour on one rank, in this process: loss normalisation, document masking, the two loss heads,
recomputation, exact resume, NaN handling, corrupt checkpoints and the golden loss curve."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import train_helpers as h
from megatron_ssd.errors import SSDError

GOLDEN = Path(__file__).parent / "golden" / "tiny_llama_tp1.json"


def grads(trainer) -> dict[str, torch.Tensor]:
    """Finalised gradients (DDP's fp32 main_grad buffers) by parameter name."""
    return {n: p.main_grad.detach().clone() for c in trainer.chunks for n, p in c.named_parameters()}


def per_token_losses(trainer, mb, attention_mask="from-batch") -> torch.Tensor:
    """[b, s] cross-entropy of the model (Megatron's loss head), no gradient."""
    mask = mb.attention_mask if attention_mask == "from-batch" else attention_mask
    with torch.no_grad():
        return trainer.chunks[0](mb.tokens, mb.position_ids, mask, labels=mb.labels).float()


# --------------------------------------------------------------------------------------------- normalisation
def test_loss_is_normalised_per_token_over_the_global_batch(make_run, trainer_factory):
    """Gradient and loss equal those of sum(token losses) / sum(loss tokens) over all micro-batches, computed by
    hand (logits -> torch cross-entropy -> autograd), on micro-batches with different numbers of loss tokens."""
    cfg = h.config(make_run())
    with trainer_factory(cfg) as tr:
        micro = tr.micro_batches(0)
        counts = [mb.num_loss_tokens for mb in micro]
        assert len(set(counts)) > 1, f"the test needs uneven micro-batches, got {counts}"
        per_mb = tr.forward_backward_step(micro)
        got = grads(tr)

        gpt = tr.chunks[0].module
        params = [p for _, p in gpt.named_parameters()]
        names = [f"module.{n}" for n, _ in gpt.named_parameters()]
        sums, means, total_tokens = [], [], 0
        for mb in micro:
            logits = gpt(mb.tokens, mb.position_ids, mb.attention_mask).float()  # [b, s, V]
            losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), mb.labels.flatten(), reduction="none")
            s = (losses * mb.loss_mask.flatten()).sum()
            sums.append(s)
            means.append(s / mb.loss_mask.sum())
            total_tokens += int(mb.loss_mask.sum())
        loss = torch.stack(sums).sum() / total_tokens
        want = torch.autograd.grad(loss, params, retain_graph=True)
        mean_of_means = torch.stack(means).mean()
        want_mom = torch.autograd.grad(mean_of_means, params)

    assert per_mb[:, 1].tolist() == counts
    assert float(per_mb[:, 0].sum() / per_mb[:, 1].sum()) == pytest.approx(float(loss), rel=1e-6)
    worst = max(float((got[n] - w).abs().max() / w.abs().max()) for n, w in zip(names, want))
    assert worst < 1e-5
    # ... and not the mean of micro-batch means, which weights tokens of short micro-batches more.
    off = max(float((got[n] - w).abs().max() / w.abs().max()) for n, w in zip(names, want_mom))
    assert off > 1e-3


# --------------------------------------------------------------------------------------------- doc masking
def two_doc_bin(trainer) -> int:
    for b in range(len(trainer.dataset)):
        cu = trainer.dataset.cu_seqlens(b)
        if len(cu) >= 3 and cu[1] >= 4 and trainer.dataset[b]["loss_mask"][cu[1]:cu[2]].sum() > 0:
            return b
    raise AssertionError("no bin with two documents")


def test_packed_documents_do_not_attend_across_boundaries(make_run, trainer_factory):
    cfg = h.config(make_run())
    with trainer_factory(cfg) as tr:
        b = two_doc_bin(tr)
        cu = tr.dataset.cu_seqlens(b)
        mb = tr.micro_batch(np.array([b]))
        base = per_token_losses(tr, mb)
        changed = tr.micro_batch(np.array([b]))
        changed.tokens[0, : cu[1]] = (changed.tokens[0, : cu[1]] + 7) % h.VOCAB  # rewrite document 1
        after = per_token_losses(tr, changed)
        doc2 = slice(int(cu[1]), int(cu[2]))
        assert torch.equal(after[0, doc2], base[0, doc2])
        assert not torch.allclose(after[0, : cu[1]], base[0, : cu[1]])
        # Without the document mask (Megatron's default causal mask) document 2 would see document 1.
        plain_base = per_token_losses(tr, mb, attention_mask=None)
        plain_after = per_token_losses(tr, changed, attention_mask=None)
        assert not torch.allclose(plain_after[0, doc2], plain_base[0, doc2])
        # Document 2 scores as if it were alone at positions 0.. (RoPE is relative): same losses.
        alone = tr.micro_batch(np.array([b]))
        n = int(cu[2] - cu[1])
        for t in (alone.tokens, alone.labels, alone.loss_mask):
            t[0, :n] = t[0, cu[1]:cu[2]].clone()
        from megatron_ssd.training.batches import document_causal_mask

        alone.attention_mask = document_causal_mask([np.array([0, n, h.SEQ])], h.SEQ)
        alone_losses = per_token_losses(tr, alone)
        torch.testing.assert_close(alone_losses[0, :n], base[0, doc2], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------- loss heads
@pytest.mark.parametrize("model", ["tied", "untied"])
def test_fused_linear_ce_matches_megatron_loss_and_grads(make_run, trainer_factory, model, monkeypatch):
    import megatron_ssd.training.loss as loss_head

    kernel_calls = []
    real_kernel = loss_head.fused_linear_cross_entropy

    def counting_kernel(*args, **kwargs):
        kernel_calls.append(args[0].shape)
        return real_kernel(*args, **kwargs)

    monkeypatch.setattr(loss_head, "fused_linear_cross_entropy", counting_kernel)
    results = {}
    for impl in ("megatron", "fused_linear_ce"):
        cfg = h.config(make_run(f"run_{impl}", model=model), **{"train.loss_impl": impl})
        with trainer_factory(cfg) as tr:
            logits_calls = []
            tr.chunks[0].module.output_layer.register_forward_hook(lambda *a: logits_calls.append(1))
            kernel_calls.clear()
            micro = tr.micro_batches(0)
            per_mb = tr.forward_backward_step(micro)
            results[impl] = (per_mb, grads(tr))
            # the fused head never runs the output layer (no logits); Megatron's head never calls the kernel
            assert (len(logits_calls), len(kernel_calls)) == ((0, len(micro)) if impl == "fused_linear_ce" else (len(micro), 0))
    (l_m, g_m), (l_f, g_f) = results["megatron"], results["fused_linear_ce"]
    torch.testing.assert_close(l_f, l_m, rtol=1e-5, atol=1e-4)
    assert g_f.keys() == g_m.keys()
    for name in g_m:
        torch.testing.assert_close(g_f[name], g_m[name], rtol=1e-4, atol=1e-6, msg=name)


# --------------------------------------------------------------------------------------------- recompute
@pytest.mark.parametrize("recompute", ["selective", "full"])
def test_recomputation_gives_the_same_loss_and_grads(make_run, trainer_factory, recompute):
    results = {}
    for mode in (None, recompute):
        cfg = h.config(make_run(f"run_{mode}"), **{"train.recompute": mode})
        with trainer_factory(cfg) as tr:
            per_mb = tr.forward_backward_step(tr.micro_batches(0))
            results[mode] = (per_mb, grads(tr))
    torch.testing.assert_close(results[recompute][0], results[None][0], rtol=0, atol=0)
    for name, g in results[None][1].items():
        torch.testing.assert_close(results[recompute][1][name], g, rtol=1e-6, atol=1e-7, msg=name)


# --------------------------------------------------------------------------------------------- resume
def test_resume_at_the_same_layout_reproduces_the_uninterrupted_run_exactly(make_run, trainer_factory, monkeypatch):
    """The first run saves asynchronously (a background writer; `latest` moves when it has finished). Both runs
    log to the wandb run `tracking.run_spec` names for the train stage: the resumed one continues it."""
    from megatron_ssd.models.checkpoint import write_latest
    from megatron_ssd.tracking import run_spec
    from megatron_ssd.training import metrics

    started = []
    monkeypatch.setattr(metrics, "start_run", started.append)  # records the spec, starts no run (returns None)
    run = make_run()
    cfg = h.config(run, **{"train.save_interval": 2, "train.async_save": True})
    with trainer_factory(cfg) as tr:
        first = tr.fit()
        assert tr.checkpointer.async_save
        final = {n: p.detach().clone() for n, p in tr.chunks[0].named_parameters()}
    assert first["checkpoint"].endswith("iter_0000004")
    assert (run / "train" / "ckpt" / "latest").read_text().strip() == "iter_0000004"
    assert sorted(p.name for p in (run / "train" / "ckpt").iterdir() if p.name.startswith(("iter", ".iter"))) == [
        "iter_0000002", "iter_0000004"]  # no temporary directory left behind
    full = [(r["iteration"], r["loss"], r["grad_norm"], r["lr"]) for r in h.step_records(run)]
    assert [f[0] for f in full] == [1, 2, 3, 4]

    # A run killed right after its iteration-2 checkpoint.
    shutil.rmtree(run / "train" / "ckpt" / "iter_0000004")
    write_latest(run / "train" / "ckpt", 2)
    with trainer_factory(cfg) as tr:
        assert tr.iteration == 2 and tr.rng_restored
        summary = tr.fit()
        for n, p in tr.chunks[0].named_parameters():
            assert torch.equal(p, final[n]), n
    resumed = [(r["iteration"], r["loss"], r["grad_norm"], r["lr"]) for r in h.step_records(run)]
    assert resumed == full  # bit for bit, and metrics.jsonl reads as one run
    assert summary["iterations"] == 4 and summary["iterations_this_run"] == 2
    assert summary["checkpoint"].endswith("iter_0000004")
    assert started == [run_spec(cfg, "train", run_dir=run)] * 2


def test_final_checkpoint_without_optimizer_exports_the_trained_weights_and_refuses_training(
        make_run, trainer_factory, assets, tmp_path):
    """train.save_final_optimizer=false: intermediate checkpoints keep the optimizer (exact resume), the final one
    holds the weights only; it exports to exactly the trained weights, and training on from it is refused."""
    from safetensors.torch import load_file

    from megatron_ssd.models.convert import megatron_to_hf

    run = make_run()
    cfg = h.config(run, **{"train.train_iters": 2, "train.save_interval": 1, "train.save_final_optimizer": False})
    with trainer_factory(cfg) as tr:
        tr.fit()
        embedding = tr.chunks[0].module.embedding.word_embeddings.weight.detach().clone()
    ckpt = run / "train" / "ckpt"

    def size(d):
        return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())

    # fp32 weights alone vs weights + fp32 main params + two Adam moments
    assert size(ckpt / "iter_0000002") < 0.4 * size(ckpt / "iter_0000001")
    out = megatron_to_hf(ckpt, tmp_path / "hf", hf_template=assets / "hf_tied", dtype="float32")
    assert out["iteration"] == 2
    exported = {k: v for f in Path(out["hf"]).glob("*.safetensors") for k, v in load_file(f).items()}
    torch.testing.assert_close(exported["model.embed_tokens.weight"], embedding, rtol=0, atol=0)
    longer = h.config(run, **{"train.train_iters": 3, "train.save_final_optimizer": False})
    with pytest.raises(SSDError, match="saved without optimizer state"):
        with trainer_factory(longer):
            pass


# --------------------------------------------------------------------------------------------- failures
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(make_run, monkeypatch):
    """An absurd learning rate blows the weights up after the first update; the second iteration's loss is
    not finite. The rank entry point exits with status 3, names the iteration, micro-batch, bins and prompts,
    and leaves `latest` on the iteration-1 checkpoint."""
    from megatron_ssd.training import entry

    run = make_run()
    cfg = h.config(run, **{"train.lr": 1e10, "train.min_lr": 1e9, "train.lr_warmup_iters": 0,
                           "train.save_interval": 1})
    config_path = h.write_cfg(cfg)
    h.single_rank_env(monkeypatch)
    assert entry.main(["--config", str(config_path)]) == entry.EXIT_USER_ERROR

    failure = json.loads((run / "train" / "failure.json").read_text())
    msg = failure["message"]
    assert failure["kind"] == "NonFiniteLoss" and failure["user_error"]
    assert "iteration 2 of 4: non-finite loss; the update was not applied" in msg
    assert "micro-batch 0" in msg and "packed bins [" in msg and ":0" in msg  # prompt_id:sample_idx
    assert str(run / "train" / "ckpt" / "iter_0000001") in msg
    ckpt = run / "train" / "ckpt"
    assert (ckpt / "latest").read_text().strip() == "iter_0000001"
    assert not (ckpt / "iter_0000002").exists()
    records = [json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["kind"] == "step"] == [1]
    assert records[-1]["kind"] == "error"


def test_corrupt_or_mismatched_checkpoint_is_refused_naming_the_path(make_run, trainer_factory):
    run = make_run()
    cfg = h.config(run, **{"train.train_iters": 1, "train.lr_warmup_iters": 0})
    with trainer_factory(cfg) as tr:
        tr.fit()
    ckpt = run / "train" / "ckpt" / "iter_0000001"
    shard = sorted(ckpt.glob("*.distcp"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    cfg2 = h.config(run, **{"train.train_iters": 2, "train.lr_warmup_iters": 0})
    with pytest.raises(SSDError, match=f"{shard}: shard file truncated"):
        with trainer_factory(cfg2):
            pass
    shard.write_bytes(data)
    # Other packed data than the checkpoint was trained on: the data order could not continue.
    shutil.rmtree(run / "pack")
    h.make_packed(run / "pack", num_docs=30, seed=5)
    with pytest.raises(SSDError, match=f"{ckpt}: saved with num_bins="):
        with trainer_factory(cfg2):
            pass


# --------------------------------------------------------------------------------------------- golden
def test_golden_loss_curve(make_run, trainer_factory):
    """The tiny seeded model's loss curve, committed in tests/training/golden/. A change in the training math
    (loss, normalisation, masking, optimizer, schedule, data order) moves it. After an intended change,
    regenerate with SSD_REGEN_GOLDEN=1 and commit the diff with the reason."""
    cfg = h.config(make_run(), **{"train.train_iters": 8})
    with trainer_factory(cfg) as tr:
        tr.fit()
    records = h.step_records(Path(cfg.run_dir))
    got = {"loss": [r["loss"] for r in records], "grad_norm": [r["grad_norm"] for r in records],
           "lr": [r["lr"] for r in records]}
    if os.environ.get("SSD_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        settings = {"model": "tests/training/train_helpers.py tiny_hf_model(layers=4, tie=True, seed=0)",
                    "data": "make_packed(num_docs=48, seq_length=64, seed=0)",
                    "train": {k: getattr(cfg.train, k) for k in ("seq_length", "micro_batch_size", "global_batch_size",
                                                                 "train_iters", "lr", "min_lr", "lr_warmup_iters",
                                                                 "precision", "seed", "clip_grad", "weight_decay")},
                    "layout": "TP=1 PP=1 DP=1, CPU"}
        GOLDEN.write_text(json.dumps({"settings": settings, **got}, indent=2) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert golden["lr"] == pytest.approx(got["lr"], rel=1e-12)
    np.testing.assert_allclose(got["loss"], golden["loss"], rtol=2e-5)
    np.testing.assert_allclose(got["grad_norm"], golden["grad_norm"], rtol=2e-4)
    assert golden["loss"][-1] < golden["loss"][0] - 0.1  # it learns
