"""Train-step throughput and MFU of the real Trainer (torchrun + megatron_ssd.training.entry) on synthetic packed
data, per configuration: model size, sequence length, TP/PP/CP, bf16/FP8.

    python benchmarks/bench_train_step.py                      # the configs for this machine (CPU or GPU)
    python benchmarks/bench_train_step.py --only tiny-fp32-tp1,smollm2-135m-fp32-s1024 --steps 3
    python benchmarks/bench_train_step.py --list
    python benchmarks/bench_train_step.py --gpu-check --budget-s 170   # ~1B Qwen3 shape, 8K/32K, both CE heads

Each configuration gets a fresh run directory: an HF Llama folder with seeded random weights, converted with
`hf_to_megatron` (the train stage's converter), packed data from random samples (documents of random length,
so bins hold several documents, as SSD's do), and the resolved config; then the ranks train `warmup + steps`
iterations. Reported from `metrics.jsonl`: median step time over the measured steps, tokens/s (positions of
the global batch per second, padding included), model TFLOP/s per device and MFU.

FLOPs (megatron_ssd.training.flops, the same formula the trainer logs), per token of a step:
    6 * N_matmul + 12 * L * (n_heads * d_head) * S_eff
N_matmul = the weights a token multiplies with (attention and MLP projections of every layer, MoE: router + top-k
experts, plus the output projection over the padded vocabulary; the embedding lookup is not a matmul);
S_eff = sum(len_d^2) / sum(len_d) over the packed documents (the mean attention span of a token); the full
S x S score matrix is counted (PaLM/Megatron convention), recomputation is not.
MFU = FLOPs / (step seconds * devices) / peak per device. Peak: GPU datasheet dense numbers (H100/H200 bf16
989 TFLOP/s, FP8 2x; table in flops.py); CPU: measured in the same run by each rank right before training (the
best square-matmul rate in the training dtype or fp32, whichever is faster: CPUs without native bf16 emulate it).

Results: benchmarks/results/train_step_<device>_<date>.json with device, date, versions and every config.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import time
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from machine_info import machine_info, package_versions

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
# SmolLM2-135M's shape (the embedded default model): 30 layers, hidden 576, 9 heads / 3 KV heads, ffn 1536.
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    tie_word_embeddings=True, rope_theta=100000.0)
# ~1.2B dense (Llama-3.2-1B's shape): for GPU runs at 8K-32K.
LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                tie_word_embeddings=True, rope_theta=500000.0)
# ~1.1B dense in Qwen3's shape (Qwen3-1.7B's width, 16 of its 28 layers; q/k norms, head_dim 128, tied 151,936
# vocab): the one-GPU configuration of the GPU check (benchmarks/gpu/check.sh).
QWEN3_1B = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=16,
                num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6)


@dataclass
class Bench:
    name: str
    model: dict
    seq_length: int
    global_batch: int  # bins per step
    micro_batch: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    precision: str = "fp32"
    fp8: str | None = None
    recompute: str | None = None
    device: str = "cpu"  # cpu | cuda
    doc_len: tuple[int, int] = (0, 0)  # completion lengths (uniform); default: 5% .. 60% of seq_length
    extra: dict = field(default_factory=dict)
    arch: str = "llama"  # llama | qwen3 (the transformers config class of `model`)
    # Megatron's local attention (the only one without Transformer Engine) materialises [B, heads, S, S]
    # scores and probabilities per layer: beyond ~8K tokens that no longer fits one GPU.
    needs_te: bool = False

    @property
    def nproc(self) -> int:
        return self.tp * self.pp * self.cp


CONFIGS = [
    Bench("tiny-fp32-tp1", TINY, 256, 8, 2),
    Bench("tiny-fp32-tp2", TINY, 256, 8, 2, tp=2),
    Bench("tiny-fp32-pp2", TINY, 256, 8, 2, pp=2),
    Bench("tiny-bf16-tp1", TINY, 256, 8, 2, precision="bf16"),
    # The fused linear-CE kernel runs in Triton's interpreter on a CPU: a correctness path, far from fast.
    Bench("tiny-fp32-tp1-fused-ce", TINY, 256, 8, 2, extra={"loss_impl": "fused_linear_ce"}),
    Bench("smollm2-135m-fp32-s1024", SMOLLM2_135M, 1024, 2, 1),
    # GPU (one node): ~1B dense at 8K-32K.
    Bench("llama1b-bf16-s8192", LLAMA_1B, 8192, 8, 1, precision="bf16", device="cuda"),
    Bench("llama1b-fp8-s8192", LLAMA_1B, 8192, 8, 1, precision="bf16", fp8="hybrid", device="cuda"),
    Bench("llama1b-bf16-s8192-fused-ce", LLAMA_1B, 8192, 8, 1, precision="bf16", device="cuda",
          extra={"loss_impl": "fused_linear_ce"}),
    Bench("llama1b-bf16-s16384", LLAMA_1B, 16384, 8, 1, precision="bf16", device="cuda"),
    Bench("llama1b-bf16-s32768-selective", LLAMA_1B, 32768, 4, 1, precision="bf16", recompute="selective",
          device="cuda"),
    Bench("llama1b-bf16-s32768-tp2", LLAMA_1B, 32768, 4, 1, tp=2, precision="bf16", device="cuda"),
    Bench("llama1b-bf16-s32768-cp2", LLAMA_1B, 32768, 4, 1, cp=2, precision="bf16", device="cuda"),
    Bench("llama1b-bf16-s32768-pp2", LLAMA_1B, 32768, 8, 1, pp=2, precision="bf16", device="cuda"),
    # The GPU check's one-GPU set: Megatron's vocab-parallel CE head against the fused linear-CE head.
    Bench("qwen3-1b-bf16-s8192", QWEN3_1B, 8192, 4, 1, precision="bf16", device="cuda", arch="qwen3"),
    Bench("qwen3-1b-bf16-s8192-fused-ce", QWEN3_1B, 8192, 4, 1, precision="bf16", device="cuda", arch="qwen3",
          extra={"loss_impl": "fused_linear_ce"}),
    Bench("qwen3-1b-bf16-s32768", QWEN3_1B, 32768, 2, 1, precision="bf16", device="cuda", arch="qwen3",
          needs_te=True),
    Bench("qwen3-1b-bf16-s32768-fused-ce", QWEN3_1B, 32768, 2, 1, precision="bf16", device="cuda", arch="qwen3",
          needs_te=True, extra={"loss_impl": "fused_linear_ce"}),
]
GPU_CHECK = [b.name for b in CONFIGS if b.name.startswith("qwen3-1b-")]


def device_slug() -> str:
    import torch

    return torch.cuda.get_device_name().split()[-1].lower() if torch.cuda.is_available() else "cpu"


def attention_path() -> str:
    """Which attention the trainer uses here (it picks TE whenever it imports)."""
    from megatron_ssd.models.provider import te_available

    if te_available():
        return "transformer_engine: THD packed sequences, fused attention"
    return "megatron local DotProductAttention: unfused, explicit [B, 1, S, S] document mask (no Transformer Engine)"


def prepare(b: Bench, root: Path, seed: int = 0) -> Path:
    """Run directory with the converted random model and synthetic packed data. Configurations that differ
    only in training options share one prepared model and data set (copied, not rebuilt)."""
    from megatron_ssd.models.convert import hf_to_megatron
    from megatron_ssd.training import synthetic

    run = root / b.name / "run"
    dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[b.precision]
    key = json.dumps([b.arch, b.model, b.seq_length, b.global_batch, b.doc_len, dtype, b.tp], sort_keys=True)
    shared = root / "prepared" / hashlib.sha1(key.encode()).hexdigest()[:12]
    if (shared / "ok").is_file():
        shutil.copytree(shared / "run", run)
        return run
    hf = shared / "hf"
    if b.arch == "qwen3":
        from transformers import Qwen3Config

        synthetic.random_model(hf, Qwen3Config(**b.model), seed=seed, std=0.02, dtype=dtype)
    else:
        synthetic.random_llama(hf, seed=seed, std=0.02, dtype=dtype, **b.model)
    prepared = shared / "run"
    hf_to_megatron(hf, prepared / "train" / "base", tp=1, dtype=dtype)
    lo, hi = b.doc_len if b.doc_len != (0, 0) else (max(4, b.seq_length // 20), max(8, b.seq_length * 3 // 5))
    bins_needed = b.global_batch * 4
    docs = max(16, int(bins_needed * b.seq_length / ((lo + hi) / 2 + 32)))
    synthetic.write_packed(prepared / "pack", num_docs=docs, seq_length=b.seq_length,
                           vocab_size=b.model["vocab_size"], seed=seed, prompt_len=(16, 48), completion_len=(lo, hi))
    shutil.rmtree(hf)
    (shared / "ok").write_text(key)
    shutil.copytree(prepared, run)
    return run


def config_for(b: Bench, run: Path, iters: int):
    from megatron_ssd.config.schema import SSDConfig

    cfg = SSDConfig(run_dir=str(run))
    cfg.train = replace(cfg.train, seq_length=b.seq_length, micro_batch_size=b.micro_batch,
                        global_batch_size=b.global_batch, train_iters=iters, lr=1e-5, min_lr=1e-6,
                        lr_warmup_iters=0, save_interval=10**9, precision=b.precision, fp8=b.fp8,
                        recompute=b.recompute, **{k: v for k, v in b.extra.items() if hasattr(cfg.train, k)})
    cfg.parallel = replace(cfg.parallel, tensor=b.tp, pipeline=b.pp, context=b.cp, nproc_per_node=b.nproc,
                           sequence_parallel=b.tp > 1 and b.device == "cuda")
    cfg.cluster = replace(cfg.cluster, wandb_mode="disabled")
    return cfg


def run_one(b: Bench, root: Path, warmup: int, steps: int, timeout: int) -> dict:
    from megatron_ssd.rundir import write_config
    from megatron_ssd.training.paths import TrainPaths

    run = prepare(b, root)
    paths = TrainPaths(run)
    write_config(config_for(b, run, warmup + steps), paths.config)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET", "1" if b.device == "cpu" else "0")}
    if b.device == "cpu":
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // b.nproc))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={b.nproc}", "--nnodes=1", "--standalone",
           "-m", "megatron_ssd.training.entry", "--config", str(paths.config)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"name": b.name, "error": (proc.stdout + proc.stderr)[-3000:]}
    records = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    start = next(r for r in records if r["kind"] == "start")
    measured = [r for r in records if r["kind"] == "step"][warmup:]
    step_s = statistics.median(r["step_time_s"] for r in measured)
    pick = min(measured, key=lambda r: abs(r["step_time_s"] - step_s))
    return {
        "name": b.name,
        "config": {**asdict(b), "model": {k: b.model[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size",
                                                                   "num_attention_heads", "num_key_value_heads",
                                                                   "intermediate_size")}},
        "world": b.nproc,
        "tokens_per_step": b.global_batch * b.seq_length,
        "step_time_s_median": step_s,
        "step_times_s": [round(r["step_time_s"], 4) for r in measured],
        "tokens_per_s": b.global_batch * b.seq_length / step_s,
        "tflops_per_device": pick["tflops_per_device"] * pick["step_time_s"] / step_s,
        "mfu": (pick["mfu"] * pick["step_time_s"] / step_s) if pick.get("mfu") else None,
        "s_eff": pick["s_eff"],
        "peak_flops_per_device": start["peak_flops_per_device"],
        "peak_flops_source": start["peak_flops_source"],
        "loss_first_last": [measured[0]["loss"], measured[-1]["loss"]],
        "loss_impl": b.extra.get("loss_impl", "megatron"),
        "thd": start.get("thd"),
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated config names (default: all for this device)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--workdir", help="where run directories go (default: a temporary folder, removed)")
    parser.add_argument("--out", help="results JSON (default: benchmarks/results/train_step_<device>_<date>.json)")
    parser.add_argument("--gpu-check", action="store_true", help=f"the GPU check's set: {', '.join(GPU_CHECK)}")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no configuration after this many seconds; each one's timeout is cut to what is left")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the selected configurations and their configs without a GPU; run nothing")
    args = parser.parse_args(argv)
    if args.gpu_check:
        args.only = ",".join(GPU_CHECK)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.list:
        for b in CONFIGS:
            print(f"{b.name:40s} {b.device:5s} seq={b.seq_length} gbs={b.global_batch} tp={b.tp} pp={b.pp} cp={b.cp} "
                  f"{b.precision}{'/fp8-' + b.fp8 if b.fp8 else ''}")
        return 0
    wanted = args.only.split(",") if args.only else [b.name for b in CONFIGS if b.device == device]
    unknown = set(wanted) - {b.name for b in CONFIGS}
    if unknown:
        parser.error(f"unknown configs: {sorted(unknown)} (see --list)")
    if args.dry_run:
        from megatron_ssd.config.validate import validate

        for b in CONFIGS:
            if b.name in wanted:
                cfg = config_for(b, Path(tempfile.gettempdir()) / "ssd-dry-run" / b.name, args.warmup + args.steps)
                validate(cfg)
                print(f"ok {b.name}: {b.arch} seq={b.seq_length} gbs={b.global_batch} {b.precision} "
                      f"loss_impl={cfg.train.loss_impl}{' (needs TE)' if b.needs_te else ''}")
        print(f"attention here: {attention_path()}")
        return 0
    if device == "cpu" and any(b.device == "cuda" for b in CONFIGS if b.name in wanted):
        parser.error("GPU configurations need a CUDA device")
    slug, dev = device_slug(), machine_info()
    date = _dt.date.today().isoformat()
    out = Path(args.out) if args.out else RESULTS / f"train_step_{slug}_{date}.json"
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ssd-bench-train-"))
    results = []
    attention = attention_path()
    t0 = time.monotonic()
    try:
        for b in CONFIGS:
            if b.name not in wanted:
                continue
            print(f"== {b.name}", flush=True)
            left = args.timeout if args.budget_s is None else args.budget_s - (time.monotonic() - t0)
            if b.needs_te and not attention.startswith("transformer_engine"):
                r = {"name": b.name, "skipped": f"needs Transformer Engine attention; here: {attention}"}
            elif left < 30:
                r = {"name": b.name, "skipped": f"time budget of {args.budget_s} s spent"}
            else:
                try:
                    r = run_one(b, root, args.warmup, args.steps, int(min(args.timeout, left)))
                except subprocess.TimeoutExpired:
                    r = {"name": b.name, "error": f"timed out after {int(min(args.timeout, left))} s"}
            results.append(r)
            if "skipped" in r:
                print(f"   skipped: {r['skipped']}", flush=True)
                continue
            if "error" in r:
                print(f"   FAILED:\n{r['error']}", flush=True)
            else:
                mfu = f"{r['mfu']:.2%}" if r["mfu"] is not None else "n/a"
                print(f"   {r['tokens_per_s']:.1f} tok/s  step {r['step_time_s_median']:.3f} s  "
                      f"{r['tflops_per_device'] * 1e3:.2f} GFLOP/s/device  MFU {mfu}  "
                      f"(peak {r['peak_flops_per_device'] / 1e9:.1f} GFLOP/s: {r['peak_flops_source']})", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        "benchmark": "train_step",
        "device": dev,
        "date": date,
        "versions": package_versions("torch", "megatron-core", "transformers", "triton", "transformer-engine",
                                     "megatron-ssd"),
        "flops_formula": "per token: 6*N_matmul + 12*L*(n_heads*d_head)*S_eff; S_eff = sum(len^2)/sum(len) over "
                         "packed documents; MFU = FLOPs/(step_s*devices)/peak (see benchmarks/bench_train_step.py)",
        "attention": attention,
        "warmup_steps": args.warmup,
        "measured_steps": args.steps,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
