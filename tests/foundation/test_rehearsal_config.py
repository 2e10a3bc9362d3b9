"""`rehearsal=true` as a config rewrite (config/rehearsal.py): per paper preset, the scaled layout keeps the preset's
parallel kinds within 4 ranks, the batch arithmetic holds, the decoding is the preset's, the decision record is
filled in, and the changes list is exactly the difference between the preset and its rehearsal."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from megatron_ssd.config import register
from megatron_ssd.config.parallel import ParallelConfig, ParallelLayout
from megatron_ssd.config.rehearsal import MAX_RANKS, Assets, rehearse, scaled_k, scaled_layout
from megatron_ssd.config.validate import validate
from megatron_ssd.errors import ConfigError
from megatron_ssd.prompts.rehearsal_data import write_rehearsal_data
from megatron_ssd.prompts.sources import load_source

PRESETS = ("ssd_qwen3_4b_instruct", "ssd_qwen3_4b_thinking", "ssd_llama31_8b_instruct",
           "ssd_qwen3_30b_a3b_instruct", "ssd_qwen3_30b_a3b_thinking")
register()


def composed(*overrides):
    with initialize_config_module("megatron_ssd.hydra_conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def flat(cfg) -> dict:
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


@pytest.fixture
def assets(tmp_path):
    a = Assets(tmp_path / "rehearsal")
    return a


def fake_model_folders(assets):
    """validate() wants model.path to be an HF folder; the real one is written by the launcher (tested end to end)."""
    for arch in ("llama", "qwen3", "qwen3_moe"):
        for thinking in (False, True):
            folder = assets.model(arch, thinking)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text("{}")


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_rehearses_its_layout_kinds_within_four_ranks(preset, assets):
    cfg = composed(f"experiment={preset}", "rehearsal=true")
    before = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    changes = rehearse(cfg, assets)
    p, bp = cfg.parallel, before.parallel
    layout = ParallelLayout.from_config(ParallelConfig(**OmegaConf.to_container(p)))
    assert layout.world <= MAX_RANKS and p.nnodes == 1
    for kind in ("tensor", "context", "expert", "pipeline"):
        assert (getattr(p, kind) > 1) == (getattr(bp, kind) > 1), kind  # every kind of the preset is kept
        assert getattr(p, kind) <= 2
    if "30b" in preset:
        assert (p.tensor, p.context, p.expert) == (2, 2, 2) and layout.world == 4
    assert p.distributed_optimizer and p.sequence_parallel == bp.sequence_parallel  # SP kept (CPU: cpu_sp_norm.py)
    # batch arithmetic: GBS = MBS x DP x accumulation, with gradient accumulation kept
    t = cfg.train
    assert t.global_batch_size % (t.micro_batch_size * layout.data) == 0
    assert layout.micro_batches_per_step(t) >= 2
    assert 2048 <= t.seq_length <= 4096 and t.seq_length % (2 * p.context) == 0
    assert t.lr_warmup_iters < t.train_iters and t.save_interval < t.train_iters
    # decoding: the preset's, only lengths and counts scaled
    for section in ("sample", "eval"):
        for key in ("temperature", "top_k", "top_p"):
            assert cfg[section][key] == before[section][key], f"{section}.{key}"
        assert cfg[section].max_tokens < cfg.model.max_model_len
    assert list(cfg.eval.temperature_sweep) == list(before.eval.temperature_sweep)
    assert cfg.eval.n < before.eval.n and max(cfg.eval.k) <= cfg.eval.n and len(cfg.eval.k) == len(before.eval.k)
    # the model: same class, prompt style and thinking flag; a local tiny folder
    for key in ("arch", "prompt_style", "thinking"):
        assert cfg.model[key] == before.model[key]
    assert cfg.model.path == str(assets.model(cfg.model.arch, cfg.model.thinking, 2048)) and cfg.model.source == "hf"
    assert cfg.data.date_start == before.data.date_start and cfg.data.near_dup_threshold == 0.98
    # the decision record: required, filled in, marked
    assert cfg.decision.required and cfg.decision.task_family.startswith("REHEARSAL")
    assert cfg.decision.rollback.base_checkpoint == before.model.path  # the real model is what a rollback restores
    assert cfg.experiment == f"{preset}-rehearsal" and cfg.force_train
    # the changes are exactly the difference, each with its old and new value
    a, b = flat(before), flat(cfg)
    differing = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert {c.key for c in changes} == differing
    for c in changes:
        assert c.preset == a[c.key] and c.rehearsal == b[c.key] and c.why
    json.dumps([c.as_dict() for c in changes])  # the manifest stores them as JSON
    fake_model_folders(assets)
    validate(cfg)  # the rehearsal is a valid config, decision.required included


def test_command_line_values_win_and_are_not_changes(assets):
    keep = {"eval.n", "train.seq_length", "model.max_model_len"}
    cfg = composed("experiment=ssd_qwen3_30b_a3b_instruct", "rehearsal=true", "eval.n=6", "train.seq_length=4096",
                   "model.max_model_len=8192")
    changes = rehearse(cfg, assets, keep=keep)
    assert cfg.eval.n == 6 and cfg.train.seq_length == 4096
    assert cfg.model.path.endswith("tiny_qwen3_moe-8192")  # the tiny model holds the positions the run asks for
    assert not {c.key for c in changes} & keep
    assert cfg.eval.k == [1, 5]  # the kept n is the user's: the preset's k fit it


def test_gpu_ranks_keep_bf16_and_the_triton_loss(assets):
    cfg = composed("experiment=ssd_qwen3_4b_thinking", "rehearsal=true")
    changes = {c.key for c in rehearse(cfg, assets, cuda=True)}
    assert cfg.parallel.sequence_parallel and cfg.train.precision == "bf16" and cfg.train.loss_impl == "fused_linear_ce"
    assert not changes & {"parallel.sequence_parallel", "train.precision", "train.loss_impl", "model.dtype"}


def test_scaled_layout_rules():
    def layout(**kw):
        base = dict(tensor=1, pipeline=1, virtual_pipeline=None, context=1, expert=1, nproc_per_node=8, nnodes=1)
        return scaled_layout(OmegaConf.create({**base, **kw}))

    assert layout(tensor=2, context=2)["data"] == 1  # TP2 CP2 DP2 on 8 GPUs -> TP2 CP2 on 4 ranks
    assert (layout(tensor=8)["nproc_per_node"], layout(tensor=8)["data"]) == (2, 1)  # no DP where the preset has none
    assert layout()["nproc_per_node"] == 4  # pure DP8 -> DP4
    assert layout(tensor=2, expert=8, nnodes=4)["expert"] == 2  # EP divides DP x CP = 2
    assert layout(tensor=1, pipeline=4, virtual_pipeline=2)["virtual_pipeline"] == 2
    with pytest.raises(ConfigError, match="exceeds 4 ranks"):
        layout(tensor=2, pipeline=2, context=2)


def test_scaled_k():
    assert scaled_k([1, 5], 10, 4) == [1, 2]
    assert scaled_k([1, 4, 8, 16], 16, 4) == [1, 2, 4]
    assert scaled_k([1, 10], 10, 4) == [1, 4]


def test_unknown_sources_have_no_fixture(assets):
    cfg = composed("experiment=ssd_qwen3_4b_instruct", "rehearsal=true", "data.source=jsonl", "data.path=x.jsonl")
    with pytest.raises(ConfigError, match="data.source=jsonl has no rehearsal fixture"):
        rehearse(cfg, assets)


def test_fixtures_are_read_by_the_presets_readers(assets):
    write_rehearsal_data(assets.rstarcoder, assets.livecodebench)
    seeds = load_source("rstarcoder", str(assets.rstarcoder))
    assert assets.rstarcoder.suffix == ".parquet" and len(seeds) == 8
    assert {p.metadata["prompt_style"] for p in seeds} == {"stdin", "function"}
    lcb = load_source("livecodebench", str(assets.livecodebench), date_start="2025-02-01", date_end="2025-05-31")
    assert len(lcb) == 4  # the fifth row lies outside the v6 window
    assert {p.style for p in lcb} == {"stdin", "functional"} and all(len(p.test_cases) >= 2 for p in lcb)
    raw = [json.loads(line) for line in assets.livecodebench.read_text().splitlines()]
    encodings = {r["private_test_cases"].startswith("[") for r in raw}
    assert encodings == {True, False}  # both of LiveCodeBench's private-test encodings
    assert {"question_content", "starter_code", "public_test_cases", "private_test_cases", "metadata",
            "contest_date", "difficulty", "platform"} <= set(raw[0])
    mtime = assets.rstarcoder.stat().st_mtime_ns
    write_rehearsal_data(assets.rstarcoder, assets.livecodebench)
    assert assets.rstarcoder.stat().st_mtime_ns == mtime  # unchanged bytes are not rewritten
