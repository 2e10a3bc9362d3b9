"""End to end: a small synthetic samples folder through `megatron_ssd.stages.pack.run`."""
import importlib
import io
import json
import sys
import types

import numpy as np
import pytest
from rich.console import Console

from megatron_ssd.config import SSDConfig
from megatron_ssd.data.packed import PackedDataset, collate_packed
from megatron_ssd.errors import DataError
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext


@pytest.fixture
def base_model(monkeypatch, hf_tokenizer_dir):
    """Point resolve_base_model at the tiny tokenizer folder (the real module may not be importable here)."""
    calls = []

    def resolve(model_cfg):
        calls.append(model_cfg)
        return hf_tokenizer_dir

    try:
        module = importlib.import_module("megatron_ssd.models.base_model")
    except ImportError:
        module = types.ModuleType("megatron_ssd.models.base_model")
        monkeypatch.setitem(sys.modules, "megatron_ssd.models.base_model", module)
    monkeypatch.setattr(module, "resolve_base_model", resolve, raising=False)
    return calls


def make_run(tmp_path, **overrides):
    cfg = SSDConfig()
    cfg.run_dir = str(tmp_path / "run")
    cfg.train.seq_length = 512
    for key, value in overrides.items():
        obj = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, leaf, value)
    run = RunDir.open(cfg)
    out = io.StringIO()
    return cfg, StageContext(run=run, console=Console(file=out, width=200)), out


def test_pack_stage_end_to_end(tmp_path, hf_tok, kit, base_model):
    from megatron_ssd.stages import pack

    cfg, ctx, out = make_run(tmp_path)
    rows = kit.make_rows(hf_tok, 60, completion_words=(5, 120))
    rows[0]["token_ids"] = rows[0]["token_ids"] * 30  # one over-length sample, truncated by the default policy
    rows[0]["num_tokens"] = len(rows[0]["token_ids"])
    rows[5]["token_ids"][-1] = 450  # inside config.json's padded vocab (512), beyond the tokenizer's 400
    kit.write_shards(ctx.run.path / "samples", rows, num_shards=3)

    summary = pack.run(cfg, ctx)

    assert base_model == [cfg.model]
    json.dumps(summary)  # JSON-able for the .done marker
    packed_dir = ctx.run.path / "pack"
    assert summary["path"] == str(packed_dir)
    assert (summary["samples"], summary["docs"], summary["truncated"]) == (60, 60, 1)
    assert summary["dropped"] == {"overlength": 0, "prompt_fills_window": 0, "empty_completion": 0, "no_loss_tokens": 0}
    assert 0.5 < summary["packing_efficiency"] <= 1.0
    ds = PackedDataset(packed_dir, hf_tok.fingerprint(), cfg.train.seq_length)
    assert len(ds) == summary["bins"]
    assert sum(ds[i]["loss_mask"].sum() for i in range(len(ds))) == summary["loss_tokens"]
    assert ds.meta["real_tokens"] == summary["real_tokens"]
    assert ds.meta["shards"] == ["shard_00000.parquet", "shard_00001.parquet", "shard_00002.parquet"]
    batch = collate_packed([ds[i] for i in range(min(2, len(ds)))])
    assert batch["tokens"].shape[1] == 512
    assert "efficiency" in out.getvalue()
    assert not list(ctx.run.path.glob(".pack.tmp-*"))  # written atomically, no temp folder left

    # a rerun replaces the folder with identical content
    before = (packed_dir / "tokens.npy").read_bytes()
    assert pack.run(cfg, ctx) == summary
    assert (packed_dir / "tokens.npy").read_bytes() == before


def test_verifier_aware_reads_filter_and_drop_policy(tmp_path, hf_tok, kit, base_model):
    from megatron_ssd.stages import pack

    cfg, ctx, _ = make_run(tmp_path, arm="verifier_aware", **{"train.overlength_policy": "drop"})
    rows = kit.make_rows(hf_tok, 10)
    rows[3]["token_ids"] = rows[3]["token_ids"] * 40
    rows[3]["num_tokens"] = len(rows[3]["token_ids"])
    kit.write_shards(ctx.run.path / "filter", rows, num_shards=1)
    kit.write_shards(ctx.run.path / "samples", kit.make_rows(hf_tok, 3), num_shards=1)  # must be ignored

    summary = pack.run(cfg, ctx)
    assert summary["source"] == str(ctx.run.path / "filter")
    assert (summary["samples"], summary["docs"], summary["truncated"]) == (10, 9, 0)
    assert summary["dropped"]["overlength"] == 1


def test_missing_samples_is_a_clear_error(tmp_path, base_model):
    from megatron_ssd.stages import pack

    cfg, ctx, _ = make_run(tmp_path)
    with pytest.raises(DataError, match=r"samples: no shard_\*\.parquet files here.*ssd stage=sample"):
        pack.run(cfg, ctx)
    assert not (ctx.run.path / "pack" / "meta.json").exists()


def test_failed_pack_keeps_previous_folder(tmp_path, hf_tok, kit, base_model):
    from megatron_ssd.stages import pack

    cfg, ctx, _ = make_run(tmp_path)
    kit.write_shards(ctx.run.path / "samples", kit.make_rows(hf_tok, 8), num_shards=2)
    pack.run(cfg, ctx)
    before = (ctx.run.path / "pack" / "meta.json").read_text()
    (ctx.run.path / "samples" / "shard_00001.parquet").write_bytes(b"truncated file")
    with pytest.raises(DataError, match="shard_00001.parquet: not a readable parquet file"):
        pack.run(cfg, ctx)
    assert (ctx.run.path / "pack" / "meta.json").read_text() == before
    assert np.load(ctx.run.path / "pack" / "tokens.npy", mmap_mode="r").shape[1] == 512
