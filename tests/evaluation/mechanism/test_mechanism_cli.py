"""`ssd mechanism` on two tiny HF checkpoints and sample shards; its refusals of bad input; the config's checks."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from launch import mechanism as cli
from megatron_ssd.config.eval import MechanismConfig
from megatron_ssd.config.sample import SampleConfig
from megatron_ssd.config.validate import mechanism_problems
from megatron_ssd.generation.shards import write_shard

VOCAB_LOW, VOCAB_HIGH = 3, 200


def _shards(folder, problems: int, samples: int, seed: int, length: int = 10):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(problems):
        prompt = rng.integers(VOCAB_LOW, VOCAB_HIGH, size=6).tolist()
        for s in range(samples):
            ids = rng.integers(VOCAB_LOW, VOCAB_HIGH, size=length).tolist()
            rows.append({"prompt_id": f"HumanEval/{p}", "sample_idx": s, "prompt_text": "", "prompt_token_ids": prompt,
                         "text": "", "token_ids": ids, "finish_reason": "length", "num_tokens": length, "seed": s,
                         "temperature": 0.7, "top_k": 20, "top_p": 0.95, "min_p": 0.0, "cumulative_logprob": None})
    folder.mkdir(parents=True)
    write_shard(folder, 0, rows)
    return folder


@pytest.fixture(scope="module")
def sample_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mechanism_samples")
    return (_shards(root / "base" / "samples", problems=6, samples=2, seed=0),
            _shards(root / "ssd" / "samples", problems=5, samples=2, seed=1))


def _scaled(src, dst, scale: float):
    """`src` with its logits multiplied by `scale` (the final norm's weight scaled): the model at temperature
    1/scale, exactly."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(scale)
    model.save_pretrained(str(dst))
    return dst


@pytest.fixture(scope="module")
def peaked_pair(tiny_pair, tmp_path_factory):
    """A base with locks and forks (a random tiny model's logits x 40) and the same model x 50: a pure temperature
    change (the base at T = 0.8)."""
    root = tmp_path_factory.mktemp("peaked")
    return _scaled(tiny_pair[0], root / "base", 40.0), _scaled(tiny_pair[0], root / "tuned", 50.0)


def test_cli_reads_a_temperature_change_of_real_checkpoints_as_one(peaked_pair, sample_folders, tmp_path):
    base, tuned = peaked_pair
    out, plot = tmp_path / "t.json", tmp_path / "t.png"
    assert cli.main([f"base={base}", f"tuned={tuned}", f"samples={sample_folders[0]},{sample_folders[1]}",
                     f"out={out}", f"plot={plot}", "train_top_p=1.0", "bootstrap_samples=300"]) == 0
    record = json.loads(out.read_text())
    pos = record["positions"]
    assert pos["lock"] > 0 and pos["fork"] > 0, pos
    test = record["frontier_test"]
    assert test["reading"] == "indistinguishable", record["sentence"]
    assert test["excess"]["matched_temperature"] == pytest.approx(0.8, abs=0.02)
    assert abs(test["excess"]["estimate"]) < 1e-3
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_cli_writes_the_record(tiny_pair, sample_folders, tmp_path, capsys):
    base, tuned = tiny_pair
    out, plot = tmp_path / "m.json", tmp_path / "m.png"
    rc = cli.main([f"--base={base}", "--tuned", str(tuned), f"samples={sample_folders[0]},{sample_folders[1]}",
                   f"out={out}", f"plot={plot}", "max_completion_tokens=8", "bootstrap_samples=200"])
    assert rc == 0
    record = json.loads(out.read_text())
    captured = capsys.readouterr()
    assert captured.out.strip() == record["sentence"]
    assert not plot.exists() and "no plot: no frontier" in " ".join(captured.err.split())
    s = record["settings"]
    assert s["sources"] == ["base", "ssd"]  # named after <label>/samples
    assert record["problems"] == 5  # only the problems both sources have
    assert s["sequences"] == 5 * 2 * 2 and record["positions"]["total"] == 5 * 2 * 2 * 8
    assert s["subsample"]["max_completion_tokens"] == 8
    assert s["truncation"] == {"top_k": SampleConfig().top_k, "top_p": SampleConfig().top_p,
                               "min_p": SampleConfig().min_p}
    assert record["exact"] is True and s["backend"] == "exact"
    assert record["models"] == {"base": str(base), "tuned": str(tuned)}
    # a random tiny model has forks everywhere and no locks: the point cannot be placed, and the record says so
    assert record["positions"]["fork"] > 0
    assert record["frontier_test"]["reading"] == "out_of_range" and record["positions"]["lock"] == 0
    assert "cannot be placed against the temperature frontier" in record["sentence"]
    assert record["timing"]["base_s"] > 0 and record["timing"]["tuned_s"] > 0


def test_the_same_model_twice_has_no_raw_effect(tiny_pair, sample_folders, tmp_path):
    base, _ = tiny_pair
    out = tmp_path / "same.json"
    assert cli.main([f"base={base}", f"tuned={base}", f"samples={sample_folders[0]}", f"out={out}",
                     "max_completion_tokens=6", "bootstrap_samples=100"]) == 0
    raw = json.loads(out.read_text())["raw"]
    measured = [r for r in raw.values() if isinstance(r, dict) and "delta" in r]
    assert measured and all(r["delta"] == pytest.approx(0.0, abs=1e-9) for r in measured)


@pytest.mark.parametrize("args,expected", [
    (["tuned=X", "samples={samples}"], "base='' is not an HF model folder"),
    (["base={base}", "tuned={base}"], "samples=DIR[,DIR...] is required"),
    (["base={base}", "tuned={base}", "samples={missing}"], "does not exist"),
    (["base={base}", "tuned={base}", "samples={samples}", "lock_p=1.5"], "lock_p=1.5"),
    (["base={base}", "tuned={base}", "samples={samples}", "backend=tpu"], "backend='tpu'"),
    (["base={base}", "tuned={base}", "samples={samples}", "top_k=5"], "below sample.top_k=20"),
    (["base={base}", "tuned={base}", "samples={samples}", "nonsense=1"], "nonsense"),
    (["--base"], "--base needs a value"),
])
def test_bad_input_is_refused_by_name(tiny_pair, sample_folders, tmp_path, capsys, args, expected):
    fill = {"base": tiny_pair[0], "samples": sample_folders[0], "missing": tmp_path / "nowhere"}
    rc = cli.main([f"out={tmp_path / 'never.json'}"] + [a.format(**fill) for a in args])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR
    assert expected in " ".join(err.split()), err
    assert not (tmp_path / "never.json").exists()


def test_help_needs_no_model(capsys):
    assert cli.main(["--help"]) == 0
    assert "ssd mechanism base=HF_DIR tuned=HF_DIR samples=DIR" in capsys.readouterr().out


@pytest.mark.parametrize("change,expected", [
    ({"backend": "onnx"}, "backend='onnx'"),
    ({"top_k": 1}, "top_k=1: keep at least 2"),
    ({"backend": "vllm", "top_k": 2000}, "above 1000 per position use backend=exact"),
    ({"enabled": True, "top_k": 10}, "top_k=10 is below sample.top_k=20"),
    ({"lock_p": 0.4}, "lock_p=0.4"),
    ({"plausible_p": 0.6}, "plausible_p=0.6: in (0, 0.5)"),
    ({"lock_p": 0.8, "plausible_p": 0.1}, "below 1 - lock_p=0.2"),
    ({"fork_entropy": 0.0}, "fork_entropy=0.0"),
    ({"temperatures": [1.0]}, "at least 2 temperatures"),
    ({"temperatures": [0.0, 1.0]}, "at least 2 temperatures > 0"),
    ({"tuned_temperature": 0.0}, "tuned_temperature=0.0"),
    ({"min_excess": -0.1}, "min_excess=-0.1"),
    ({"max_problems": -1}, "max_problems=-1"),
])
def test_mechanism_config_problems_name_the_field(change, expected):
    problems = mechanism_problems(replace(MechanismConfig(), **change), SampleConfig())
    assert any(expected in p for p in problems), problems


def test_the_default_mechanism_config_is_valid():
    assert mechanism_problems(MechanismConfig(), SampleConfig()) == []
    assert mechanism_problems(replace(MechanismConfig(), enabled=True, backend="vllm", top_k=64), SampleConfig()) == []


def test_vllm_backend_raises_the_engines_max_logprobs_for_every_stage():
    from types import SimpleNamespace

    from megatron_ssd.generation.engine import max_logprobs

    def cfg(**m):
        return SimpleNamespace(eval=SimpleNamespace(mechanism=replace(MechanismConfig(), **m)))

    assert max_logprobs(cfg()) == 20  # off: vLLM's default
    assert max_logprobs(cfg(enabled=True, backend="exact", top_k=64)) == 20  # exact does not use the engine
    assert max_logprobs(cfg(enabled=True, backend="vllm", top_k=64)) == 64
    assert max_logprobs(cfg(enabled=True, backend="vllm", top_k=8)) == 20


def test_dashed_options_keep_dashes_in_their_values():
    assert cli.dashed_to_dotlist(["--base=/tmp/a-b", "--max-problems", "3", "tuned=/x-y"]) == \
        ["base=/tmp/a-b", "max_problems=3", "tuned=/x-y"]
