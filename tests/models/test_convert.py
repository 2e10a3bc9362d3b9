"""HF -> Megatron -> HF in this process (TP=PP=EP=1): logits against transformers, bit-exact round trip."""
from __future__ import annotations

import json

import pytest
import torch

import tiny_models as tiny
from conftest import LOGITS_ATOL
from megatron_ssd.errors import SSDError
from megatron_ssd.models import checkpoint as ckpt
from megatron_ssd.models.convert import hf_to_megatron, megatron_to_hf
from megatron_ssd.models.convert_cli import main as cli
from megatron_ssd.models.hf_io import iter_tensors
from megatron_ssd.models.parallel import megatron_world
from megatron_ssd.models.provider import build_gpt_model


def assert_same_tensors(a_dir, b_dir):
    a, b = dict(iter_tensors(a_dir)), dict(iter_tensors(b_dir))
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def check_roundtrip(arch, src, ref, tmp_path, vocab=tiny.VOCAB):
    """HF -> Megatron (TP=1) -> logits against transformers' `ref`, then Megatron -> HF bit-exact; the summary."""
    summary = hf_to_megatron(src, tmp_path / "ckpt")
    assert summary["dtype"] == "float32"
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "iter_0000000"
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text().strip() == "0"

    info = ckpt.checkpoint_info(tmp_path / "ckpt")
    assert (info.padded_vocab_size, info.dtype, info.iteration) == (summary["padded_vocab_size"], torch.float32, 0)
    with megatron_world():
        model = build_gpt_model(src, padded_vocab_size=info.padded_vocab_size)
        ckpt.load_model_weights(model, tmp_path / "ckpt")
        logits = tiny.megatron_logits(model, tiny.input_ids(), vocab)
    diff = (logits - ref).abs().max().item()
    print(f"{arch} TP=1 max|megatron - transformers| = {diff:.3g}")
    assert diff <= LOGITS_ATOL

    megatron_to_hf(tmp_path / "ckpt", tmp_path / "hf")
    assert_same_tensors(src, tmp_path / "hf")
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "hf" / f).is_file(), f
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == arch
    return summary


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_roundtrip_and_logits_tp1(arch, hf_dirs, ref_logits, tmp_path):
    assert check_roundtrip(arch, hf_dirs[arch], ref_logits[arch], tmp_path)["padded_vocab_size"] == 512


@pytest.fixture(scope="module")
def rehearsal_dirs(tmp_path_factory):
    """The rehearsals' tiny models (`rehearsal=true`; models/tiny.py), one per class, as the launcher writes them."""
    from megatron_ssd.models.tiny import write_rehearsal_model

    root = tmp_path_factory.mktemp("rehearsal_models")
    return {arch: write_rehearsal_model(arch, False, root / arch, max_position_embeddings=2048)
            for arch in tiny.ARCHS}


@pytest.mark.parametrize("arch", tiny.ARCHS)
def test_rehearsal_classes_roundtrip_and_logits_tp1(arch, rehearsal_dirs, tmp_path):
    """The rehearsal shapes (SmolLM2 vocabulary plus the family's tokens, head_dim 64 != hidden/heads for Qwen3,
    8 experts top-2 with the family's router settings, llama3 RoPE scaling at 2048 positions) convert exactly too."""
    from megatron_ssd.models.arch import describe

    src = rehearsal_dirs[arch]
    info = describe(src)
    if arch == "qwen3_moe":
        assert (info.num_experts, info.moe_top_k, info.moe_aux_loss_coeff) == (8, 2, 0.001)
    if arch == "llama":
        assert info.rope_llama3["factor"] == 8.0
    check_roundtrip(arch, src, tiny.hf_logits(src, tiny.input_ids()), tmp_path, vocab=info.vocab_size)


def test_cli_roundtrip_bf16(hf_dirs, tmp_path, capsys):
    """The console script, with a dtype change: bf16 checkpoint, exported HF equals the bf16-cast source."""
    src = hf_dirs["qwen3"]
    assert cli(["hf-to-megatron", str(src), str(tmp_path / "ckpt"), "--tp", "1", "--pp", "1", "--dtype", "bfloat16"]) == 0
    assert ckpt.checkpoint_info(tmp_path / "ckpt").dtype == torch.bfloat16
    assert cli(["megatron-to-hf", str(tmp_path / "ckpt" / "iter_0000000"), str(tmp_path / "hf"),
                "--hf-template", str(src)]) == 0
    out = dict(iter_tensors(tmp_path / "hf"))
    for name, t in iter_tensors(src):
        assert torch.equal(out[name], t.to(torch.bfloat16)), name
    assert json.loads((tmp_path / "hf" / "config.json").read_text()).get("dtype") == "bfloat16"
    # Converting again into the same place is refused without --force.
    capsys.readouterr()
    assert cli(["hf-to-megatron", str(src), str(tmp_path / "ckpt")]) == 2
    assert "already holds a converted checkpoint" in capsys.readouterr().err


def test_cli_rejects_bad_layout(hf_dirs, tmp_path, capsys):
    assert cli(["hf-to-megatron", str(hf_dirs["llama"]), str(tmp_path / "c"), "--tp", "3"]) == 2
    err = capsys.readouterr().err
    assert "parallel.tensor=3 does not divide num_attention_heads=4" in err
    assert not (tmp_path / "c" / "latest").exists()


def test_unmapped_hf_tensor_is_an_error(hf_dirs, tmp_path):
    """Weights the config does not describe (here an extra bias) must not be dropped silently."""
    import shutil

    from safetensors.torch import save_file

    src = tmp_path / "src"
    shutil.copytree(hf_dirs["llama"], src)
    tensors = dict(iter_tensors(src))
    tensors["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(64)
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SSDError, match="no Megatron counterpart.*q_proj.bias"):
        hf_to_megatron(src, tmp_path / "ckpt")
