"""Stage `export`: train/ckpt -> export/hf/iter_XXXXXXX, and its errors on broken checkpoints."""
from __future__ import annotations

import shutil

import pytest
import torch

from megatron_ssd.config.schema import SSDConfig
from megatron_ssd.errors import SSDError
from megatron_ssd.models.convert import hf_to_megatron
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import export
from test_convert import assert_same_tensors


@pytest.fixture(scope="module")
def base_ckpt(hf_dirs, tmp_path_factory):
    """The unmodified Llama base model converted the way a run's training stage would start from it."""
    root = tmp_path_factory.mktemp("base") / "ckpt"
    hf_to_megatron(hf_dirs["llama"], root)
    return root


@pytest.fixture
def run_ctx(hf_dirs, tmp_path, monkeypatch):
    """A run directory whose base model resolves to the tiny Llama folder."""
    base = hf_dirs["llama"]
    monkeypatch.setattr(export, "resolve_base_model", lambda model_cfg: base)
    cfg = SSDConfig()
    cfg.model.dtype = "float32"
    return cfg, StageContext(run=RunDir(tmp_path / "run"))


def _place(base_ckpt, ctx) -> None:
    dst = ctx.run.path / "train" / "ckpt"
    dst.parent.mkdir(parents=True)
    shutil.copytree(base_ckpt, dst)


def test_export_reproduces_base_model(base_ckpt, run_ctx, hf_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, ctx = run_ctx
    _place(base_ckpt, ctx)
    summary = export.run(cfg, ctx)
    out = ctx.run.path / "export" / "hf" / "iter_0000000"
    assert summary["hf"] == str(out) and not summary["skipped"]
    assert (ctx.run.path / "export" / "hf" / "latest").read_text().strip() == "iter_0000000"
    assert_same_tensors(hf_dirs["llama"], out)

    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    prompt = tok.apply_chat_template([{"role": "user", "content": "w1 w2 w3"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)["input_ids"]
    gens = []
    for folder in (hf_dirs["llama"], out):
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        gens.append(model.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12))
    assert gens[0].shape[1] == prompt.shape[1] + 12
    assert torch.equal(gens[0], gens[1])

    assert export.run(cfg, ctx)["skipped"]  # a finished iteration is not exported again


def test_export_without_latest_pointer(base_ckpt, run_ctx):
    cfg, ctx = run_ctx
    _place(base_ckpt, ctx)
    ckpt = ctx.run.path / "train" / "ckpt"
    (ckpt / "latest").unlink()
    (ckpt / "latest_checkpointed_iteration.txt").unlink()
    with pytest.raises(SSDError, match=rf"{ckpt}: no 'latest'.*found iter_0000000"):
        export.run(cfg, ctx)


def test_export_missing_train_dir(run_ctx):
    cfg, ctx = run_ctx
    with pytest.raises(SSDError, match=r"train/ckpt: no such checkpoint directory"):
        export.run(cfg, ctx)


def test_export_missing_shard(base_ckpt, run_ctx):
    cfg, ctx = run_ctx
    _place(base_ckpt, ctx)
    shard = sorted((ctx.run.path / "train" / "ckpt" / "iter_0000000").glob("*.distcp"))[0]
    shard.unlink()
    with pytest.raises(SSDError, match=rf"{shard}: shard file missing"):
        export.run(cfg, ctx)
    assert not (ctx.run.path / "export" / "hf" / "iter_0000000").exists()


def test_export_truncated_shard_and_dangling_pointer(base_ckpt, run_ctx):
    cfg, ctx = run_ctx
    _place(base_ckpt, ctx)
    ckpt = ctx.run.path / "train" / "ckpt"
    shard = sorted((ckpt / "iter_0000000").glob("*.distcp"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(SSDError, match=rf"{shard}: shard file truncated"):
        export.run(cfg, ctx)
    (ckpt / "latest").write_text("iter_0000200\n")
    with pytest.raises(SSDError, match=r"latest: points to 'iter_0000200'"):
        export.run(cfg, ctx)
