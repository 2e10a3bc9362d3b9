"""Checksums of checkpoints and exports: written last with every save, verified on load; a shard damaged in place
(same size) is refused by file name, with the last good checkpoint named."""
from __future__ import annotations

import shutil

import pytest
import torch

from megatron_ssd.config.schema import SSDConfig
from megatron_ssd.errors import SSDError
from megatron_ssd.models import checkpoint as ckpt
from megatron_ssd.models.convert import hf_to_megatron
from megatron_ssd.models.hf_io import HFReader, verify_hf_folder, write_hf_folder
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext, export


@pytest.fixture(scope="module")
def base_ckpt(hf_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("base") / "ckpt"
    hf_to_megatron(hf_dirs["llama"], root)
    return root


def _flip(path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i:i + 16] = bytes(b ^ 0xFF for b in data[i:i + 16])
    path.write_bytes(bytes(data))


def _run(tmp_path, base_ckpt, hf_dirs, monkeypatch):
    for where in ("megatron_ssd.models.base_model", "megatron_ssd.stages.export"):
        monkeypatch.setattr(f"{where}.resolve_base_model", lambda model_cfg: hf_dirs["llama"], raising=False)
    cfg = SSDConfig()
    cfg.model.dtype = "float32"
    ctx = StageContext(run=RunDir(tmp_path / "run"))
    dst = ctx.run.path / "train" / "ckpt"
    dst.parent.mkdir(parents=True)
    shutil.copytree(base_ckpt, dst)
    return cfg, ctx, dst


def test_checkpoint_has_checksums_of_every_file(base_ckpt):
    d = base_ckpt / "iter_0000000"
    listed = sorted(line.split("  ", 1)[1] for line in (d / ckpt.CHECKSUMS).read_text().splitlines())
    assert listed == ckpt.checksum_names(d) and ".metadata" in listed and any(n.endswith(".distcp") for n in listed)
    assert ckpt.verify_checksums(d, what="checkpoint", remedy="")


def test_damaged_shard_of_the_same_size_is_refused_by_name(tmp_path, base_ckpt, hf_dirs, monkeypatch):
    cfg, ctx, root = _run(tmp_path, base_ckpt, hf_dirs, monkeypatch)
    shutil.copytree(root / "iter_0000000", root / "iter_0000005")
    ckpt.write_latest(root, 5)
    shard = sorted((root / "iter_0000005").glob("*.distcp"))[0]
    size = shard.stat().st_size
    _flip(shard)
    assert shard.stat().st_size == size
    with pytest.raises(SSDError) as info:
        export.run(cfg, ctx)
    message = str(info.value)
    assert message.startswith(f"{shard}: damaged") and "\n" not in message
    assert f"last good checkpoint before it is {root / 'iter_0000000'}" in message
    assert not (ctx.run.path / "export" / "hf" / "iter_0000005").exists()


def test_damaged_only_checkpoint_says_there_is_no_older_one(tmp_path, base_ckpt, hf_dirs, monkeypatch):
    cfg, ctx, root = _run(tmp_path, base_ckpt, hf_dirs, monkeypatch)
    _flip(root / "iter_0000000" / ".metadata", at=0.9)
    with pytest.raises(SSDError, match=r"\.metadata: (damaged|unreadable).*There is no older checkpoint"):
        export.run(cfg, ctx)


def test_export_folder_checksums_are_verified(tmp_path, hf_dirs):
    out = tmp_path / "hf"
    tensors = {"model.embed_tokens.weight": torch.arange(64, dtype=torch.float32).reshape(8, 8)}
    write_hf_folder(tensors, out, hf_dirs["llama"])
    assert verify_hf_folder(out) and (out / ckpt.CHECKSUMS).read_text().count("\n") == len(ckpt.checksum_names(out))
    torch.testing.assert_close(HFReader(out).get("model.embed_tokens.weight"), tensors["model.embed_tokens.weight"])
    _flip(out / "model.safetensors", at=0.8)
    with pytest.raises(SSDError, match=rf"^{out / 'model.safetensors'}: damaged .* Delete {out} and export again"):
        HFReader(out)
    assert not verify_hf_folder(hf_dirs["llama"])  # a folder without checksums (a downloaded model) loads unverified
