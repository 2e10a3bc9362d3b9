"""Several generation jobs through one engine pass, the CPU thread binding, and the labels each model is evaluated
under; a scripted engine stands in for vLLM (the real engine is covered in test_sample_vllm.py)."""
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from megatron_ssd.config import SSDConfig
from megatron_ssd.generation.engine import Decoding, cpu_threads_bind
from megatron_ssd.generation.evalrun import model_decodings
from megatron_ssd.generation.sharded import GenerationJob, generate_jobs, missing_shards
from megatron_ssd.generation.shards import read_samples
from megatron_ssd.problems import Problem
from rich.console import Console


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"


class ScriptedEngine:
    """Answers each request with tokens derived from its seed and temperature; finishes in reverse order, so
    completion order differs from submission order, as in a continuous batch."""

    def __init__(self, max_model_len=64):
        self.options = SimpleNamespace(max_model_len=max_model_len)
        self.submitted = []

    def render(self, messages):
        ids = tuple(range(len(messages[-1]["content"]) % 7 + 3))
        return messages[-1]["content"], ids

    def stream(self, requests, max_inflight=4096):
        batch = list(requests)
        self.submitted.append(len(batch))
        for req in reversed(batch):
            tokens = [req.seed % 1000, int(req.decoding.temperature * 10)]
            yield req, Completion(f"{req.prompt_id}/{req.sample_idx}@{req.decoding.temperature}", tokens)


def problems(n=6):
    return [Problem(problem_id=f"P{i}", source="t", question=f"question {i}") for i in range(n)]


def job(tmp_path: Path, label: str, temperature: float, n: int = 2, shards=(0, 1, 2)) -> GenerationJob:
    return GenerationJob(label, problems(), Decoding(temperature, 20, 0.95, 0.0, 16), n, 7, tmp_path / label, 3,
                         list(shards))


def rows(folder):
    return [(r["prompt_id"], r["sample_idx"], r["text"], tuple(r["token_ids"]), r["temperature"])
            for r in read_samples(folder)]


def test_jobs_share_one_pass_and_give_what_each_gives_alone(tmp_path):
    engine = ScriptedEngine()
    together = [job(tmp_path / "together", "a", 0.7), job(tmp_path / "together", "b", 1.2, n=1)]
    runs = generate_jobs(engine, together, console=Console(quiet=True))
    assert engine.submitted == [6 * 2 + 6 * 1]  # one stream with both jobs' requests
    assert [sorted(r.written) for r in runs] == [[0, 1, 2], [0, 1, 2]]
    for spec in together:
        alone = replace(spec, out_dir=tmp_path / "alone" / spec.label)
        generate_jobs(ScriptedEngine(), [alone], console=Console(quiet=True))
        assert rows(spec.out_dir) == rows(alone.out_dir)
    assert {r[4] for r in rows(together[0].out_dir)} == {0.7} and {r[4] for r in rows(together[1].out_dir)} == {1.2}


def test_finished_shards_are_not_regenerated(tmp_path):
    first = job(tmp_path, "a", 0.7, shards=(1,))
    generate_jobs(ScriptedEngine(), [first], console=Console(quiet=True))
    engine = ScriptedEngine()
    [run] = generate_jobs(engine, [job(tmp_path, "a", 0.7)], console=Console(quiet=True))
    assert run.skipped_existing == [1] and sorted(run.written) == [0, 2]
    assert len(rows(tmp_path / "a")) == 12


def test_prompts_longer_than_the_budget_are_skipped_and_reported(tmp_path):
    engine = ScriptedEngine(max_model_len=16 + 5)  # budget 5 prompt tokens; rendered prompts have 3..9
    [run] = generate_jobs(engine, [job(tmp_path, "a", 0.7)], console=Console(quiet=True))
    assert run.prompts_too_long and len(rows(tmp_path / "a")) == 2 * (6 - len(run.prompts_too_long))


def test_cpu_threads_bind_uses_every_usable_cpu():
    assert cpu_threads_bind("all", 1, [0, 1]) == "0-1"
    assert cpu_threads_bind("all", 2, range(8)) == "0-3|4-7"
    assert cpu_threads_bind("all", 1, [0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert cpu_threads_bind("auto") == "auto" and cpu_threads_bind("nobind") == "nobind"
    with pytest.raises(ValueError, match="2 CPUs cannot be split over 4 ranks"):
        cpu_threads_bind("all", 4, [0, 1])


def test_base_model_gets_the_decode_only_labels_and_the_trained_model_the_sweep():
    cfg = SSDConfig()
    cfg.sample.temperature, cfg.eval.temperature, cfg.eval.temperature_sweep = 1.6, 0.7, [1.0, 1.6]
    base = model_decodings(cfg, "base")
    assert list(base) == ["base", "base_T1.6", "base_T1"]
    assert base["base_T1.6"].top_p == cfg.sample.top_p and base["base_T1.6"].max_tokens == cfg.eval.max_tokens
    assert base["base_T1"].top_p == cfg.eval.top_p  # sweep values keep the evaluation truncation
    ssd = model_decodings(cfg, "ssd")
    assert list(ssd) == ["ssd", "ssd_T1", "ssd_T1.6"] and ssd["ssd_T1.6"].top_p == cfg.eval.top_p
    cfg.eval.temperature_sweep = []
    assert list(model_decodings(cfg, "ssd")) == ["ssd"]


def test_missing_shards_tells_when_no_engine_is_needed(tmp_path):
    """evaluate_labels loads an engine only when some shard of some job is missing (a rerun after scoring died
    must not pay for an engine start)."""
    j = job(tmp_path, "base", 0.6)
    assert missing_shards(j) == [0, 1, 2]
    generate_jobs(ScriptedEngine(), [replace(j, shards=[0, 2])], console=Console(quiet=True))
    assert missing_shards(j) == [1]
    generate_jobs(ScriptedEngine(), [j], console=Console(quiet=True))
    assert missing_shards(j) == []
