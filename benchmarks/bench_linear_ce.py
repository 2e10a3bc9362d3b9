"""Fused linear + cross-entropy against its peers and against the GEMM floor.

For each model shape (hidden H, vocab V), token count N and masked fraction it measures forward, backward and
forward+backward median times (CUDA events via triton.testing.do_bench, return_mode="median") and the peak
memory above the inputs (torch.cuda.max_memory_allocated delta; includes grad_hidden and grad_weight) of:
  ours                  megatron_ssd.kernels.fused_linear_cross_entropy
  torch_eager           F.linear + F.cross_entropy on fp32-upcast logits
  torch_compile_chunked torch.compile'd per-chunk linear+CE, each chunk checkpointed (memory ~ one chunk)
  liger                 Liger-Kernel LigerFusedLinearCrossEntropyLoss (skipped when not installed)
  megatron              megatron.core.fusions.fused_cross_entropy.fused_vocab_parallel_cross_entropy, TP=1
The floor: the FLOPs that must run, 3 GEMMs of 2*N*H*V (4 with the logit recompute) scaled by the unmasked
fraction, at the bf16 GEMM rate measured in the same run (8192^3 matmul). Each run first checks every impl's
loss and gradients against the fp32 reference on a small shape.

    .venv/bin/python benchmarks/bench_linear_ce.py [--shapes qwen3-4b ...] [--tokens 4K 64K] [--impls ours ...]
    .venv/bin/python benchmarks/bench_linear_ce.py --smoke      # no GPU: interpreter correctness check only
    .venv/bin/python benchmarks/bench_linear_ce.py --dry-run    # arguments and imports only, nothing runs

`--budget-s` starts no new measurement after that many seconds (the rest are recorded as skipped), and the
results are rewritten after every row, so a run cut short still leaves what it measured.

Writes benchmarks/results/linear_ce_<device>_<date>.{csv,json}. Without CUDA it refuses to time anything
(CPU/interpreter numbers say nothing about the GPU kernel) and only --smoke runs.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine_info import machine_info, package_versions, utc_now

SHAPES = {"qwen3-4b": (2560, 151_936), "llama3.1-8b": (4096, 128_256), "qwen3-30b-a3b": (2048, 151_936)}
TOKENS = [4096, 8192, 16384, 32768, 65536]
MASKED = [0.0, 0.5]
IMPLS = ["ours", "torch_eager", "torch_compile_chunked", "liger", "megatron"]
IGNORE = -100
CHUNK = 4096  # tokens per chunk of torch_compile_chunked
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


class Unavailable(Exception):
    """The implementation cannot run here (package missing); reported, not fatal."""


# ----------------------------------------------------------------------------------------------------------
# implementations: fn(hidden [N, H], weight [V, H], labels [N]) -> mean loss over non-ignored tokens


def _ours():
    from megatron_ssd.kernels import fused_linear_cross_entropy

    return lambda h, w, y: fused_linear_cross_entropy(h, w, y, ignore_index=IGNORE)


def _torch_eager():
    return lambda h, w, y: F.cross_entropy(F.linear(h, w).float(), y, ignore_index=IGNORE)


def _torch_compile_chunked():
    from torch.utils.checkpoint import checkpoint

    @torch.compile(dynamic=False)
    def chunk_loss(h, w, y):
        return F.cross_entropy(F.linear(h, w).float(), y, ignore_index=IGNORE, reduction="sum")

    def loss(h, w, y):
        total = sum(checkpoint(chunk_loss, h[i:i + CHUNK], w, y[i:i + CHUNK], use_reentrant=False)
                    for i in range(0, h.shape[0], CHUNK))
        return total / (y != IGNORE).sum().clamp(min=1)

    return loss


def _liger():
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError as exc:
        raise Unavailable(f"liger-kernel not importable ({exc})") from exc
    module = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="mean")

    def loss(h, w, y):
        out = module(w, h, y)
        return out[0] if isinstance(out, tuple) else out

    return loss


def _megatron(eager_fuser: bool):
    import torch.distributed as dist

    if eager_fuser:  # smoke on CPU: skip torch.compile of Megatron's jit_fuser functions
        import megatron.core.jit as mjit

        mjit.disable_jit_fuser()
    try:
        from megatron.core.fusions.fused_cross_entropy import fused_vocab_parallel_cross_entropy
    except ImportError as exc:
        raise Unavailable(f"megatron-core not importable ({exc})") from exc
    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    group = dist.new_group([0])

    def loss(h, w, y):
        # [S, B, V] logits with B = 1; Megatron has no ignore_index, so mask the per-token loss.
        keep = y != IGNORE
        per_token = fused_vocab_parallel_cross_entropy(F.linear(h, w).unsqueeze(1),
                                                       torch.where(keep, y, 0).unsqueeze(1), group)
        return (per_token.squeeze(1) * keep).sum() / keep.sum().clamp(min=1)

    return loss


def build_impl(name: str, smoke: bool):
    builders = {"ours": _ours, "torch_eager": _torch_eager, "torch_compile_chunked": _torch_compile_chunked,
                "liger": _liger, "megatron": lambda: _megatron(eager_fuser=smoke)}
    return builders[name]()


# ----------------------------------------------------------------------------------------------------------
# inputs, correctness, timing


def make_inputs(n, h, v, masked, device, dtype=torch.bfloat16, seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(n, h, device=device, dtype=dtype, generator=gen)
    weight = (torch.randn(v, h, device=device, dtype=dtype, generator=gen) * h ** -0.5 * 2).to(dtype)
    labels = torch.randint(0, v, (n,), device=device, generator=gen)
    if masked:
        labels[torch.rand(n, device=device, generator=gen) < masked] = IGNORE
    return hidden.requires_grad_(), weight.requires_grad_(), labels


def _grads(fn, h, w, y):
    loss = fn(h, w, y)
    gh, gw = torch.autograd.grad(loss, (h, w))
    return loss.detach().float(), gh.float(), gw.float()


def check_correctness(impls: dict, device, shape=(48, 64, 301), masked=0.5) -> list[dict]:
    """Max relative errors (vs max|ref|) of each impl's loss and grads against the fp32 reference."""
    from megatron_ssd.kernels import reference_linear_cross_entropy

    h, w, y = make_inputs(*shape, masked, device)
    ref = _grads(lambda a, b, c: reference_linear_cross_entropy(a, b, c, ignore_index=IGNORE), h, w, y)
    rows = []
    for name, fn in impls.items():
        try:
            got = _grads(fn, h, w, y)
        except Exception as exc:  # a broken peer is reported, the others still run
            rows.append({"impl": name, "status": f"error: {type(exc).__name__}: {exc}"[:200]})
            continue
        errs = [((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item() for a, b in zip(got, ref)]
        ok = errs[0] < 2e-2 and max(errs[1:]) < 5e-2  # bf16 logits/grads in the peers
        rows.append({"impl": name, "status": "ok" if ok else "MISMATCH", "loss_rel_err": errs[0],
                     "grad_hidden_rel_err": errs[1], "grad_weight_rel_err": errs[2]})
    return rows


def gemm_tflops(device) -> float:
    from triton.testing import do_bench

    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, return_mode="median")
    return 2 * 8192 ** 3 / (ms * 1e-3) / 1e12


def measure(fn, h, w, y) -> dict:
    from triton.testing import do_bench

    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = fn(h, w, y)
    loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    value = loss.item()
    del loss
    h.grad = w.grad = None

    def fwd_bwd():
        fn(h, w, y).backward()

    t_fwd = do_bench(lambda: fn(h, w, y), grad_to_none=[h, w], return_mode="median")
    t_fb = do_bench(fwd_bwd, grad_to_none=[h, w], return_mode="median")
    try:
        loss = fn(h, w, y)
        t_bwd, bwd_how = do_bench(lambda: loss.backward(retain_graph=True), grad_to_none=[h, w],
                                  return_mode="median"), "retain_graph"
    except RuntimeError:  # e.g. checkpointed graphs cannot be replayed: derive it
        t_bwd, bwd_how = t_fb - t_fwd, "fwd_bwd-fwd"
    finally:
        loss = None
        h.grad = w.grad = None
    return {"fwd_ms": t_fwd, "bwd_ms": t_bwd, "fwd_bwd_ms": t_fb, "bwd_measured_as": bwd_how,
            "peak_mem_gib": peak / 2 ** 30, "loss": value}


def bench_row(name, fn, shape, n, masked, tflops, device) -> dict:
    H, V = SHAPES[shape]
    unmasked = 1.0 - masked
    flops3 = 3 * 2 * n * H * V * unmasked
    row = {"impl": name, "shape": shape, "H": H, "V": V, "tokens": n, "masked": masked,
           "floor_3gemm_ms": flops3 / (tflops * 1e12) * 1e3, "floor_4gemm_ms": flops3 * 4 / 3 / (tflops * 1e12) * 1e3}
    h = w = y = None
    try:
        h, w, y = make_inputs(n, H, V, masked, device)
        row.update(measure(fn, h, w, y), status="ok")
        row["useful_tflops"] = flops3 / (row["fwd_bwd_ms"] * 1e-3) / 1e12
        row["pct_of_floor"] = 100 * row["floor_3gemm_ms"] / row["fwd_bwd_ms"]
    except torch.cuda.OutOfMemoryError:
        row["status"] = "OOM"
    except Exception as exc:
        row["status"] = f"error: {type(exc).__name__}: {exc}"[:300]
    finally:
        del h, w, y
        gc.collect()
        torch.cuda.empty_cache()
    return row


# ----------------------------------------------------------------------------------------------------------
# reporting


def _versions() -> dict:
    return {**package_versions("torch", "triton", "megatron-core", "liger-kernel"), "cuda": torch.version.cuda}


def _print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print("\t".join(columns))
        for r in rows:
            print("\t".join(fmt(r.get(c)) for c in columns))
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*(fmt(r.get(c)) for c in columns))
    Console().print(table)


def write_results(out_dir: Path, meta: dict, rows: list[dict]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", meta["device"]).strip("-")
    stem = out_dir / f"linear_ce_{slug}_{meta['date'][:10]}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in rows[0], k))
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return stem


# ----------------------------------------------------------------------------------------------------------


def _tokens(text: str) -> int:
    text = text.strip().upper()
    return int(float(text[:-1]) * 1024) if text.endswith("K") else int(text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    p.add_argument("--tokens", nargs="+", type=_tokens, default=TOKENS, help="e.g. 4096 or 4K")
    p.add_argument("--masked", nargs="+", type=float, default=MASKED, help="fractions of ignored labels")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=IMPLS)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes, correctness against the reference only, no timings (the only mode without CUDA)")
    p.add_argument("--budget-s", type=float, default=None, help="start no measurement after this many seconds")
    p.add_argument("--dry-run", action="store_true", help="check arguments and which impls import; run nothing")
    return p.parse_args(argv)


def dry_run(args) -> int:
    """The plan and each impl's import, without touching a device (Megatron's needs a process group: named only)."""
    missing = []
    for name in args.impls:
        if name == "megatron":
            continue
        try:
            build_impl(name, smoke=True)
            print(f"ok {name}")
        except Unavailable as exc:
            missing.append(name)
            print(f"unavailable here: {name} ({exc})")
    rows = len(args.shapes) * len(args.tokens) * len(args.masked) * len(args.impls)
    print(f"plan: {rows} rows: shapes {args.shapes}, tokens {args.tokens}, masked {args.masked}, impls {args.impls}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("bench_linear_ce: no CUDA device. Timings on CPU (Triton interpreter) would be meaningless; "
              "run with --smoke for the correctness check.", file=sys.stderr)
        return 2
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports the Triton kernels
    device = torch.device("cuda" if cuda else "cpu")

    impls, unavailable = {}, []
    for name in args.impls:
        try:
            impls[name] = build_impl(name, smoke=args.smoke)
        except Unavailable as exc:
            unavailable.append({"impl": name, "status": f"skipped: {exc}"})
            print(f"skipping {name}: {exc}")

    shape = (48, 64, 301) if args.smoke or not cuda else (2048, 1024, 8191)
    checks = check_correctness(impls, device, shape=shape) + unavailable
    _print_table(f"correctness vs fp32 reference (N, H, V = {shape}, 50% masked, bf16)", checks,
                 ["impl", "status", "loss_rel_err", "grad_hidden_rel_err", "grad_weight_rel_err"])
    failed = any(r["status"] == "MISMATCH" or r["status"].startswith("error") for r in checks)
    if args.smoke:
        print("smoke mode: correctness only, no timings" + (" (FAILED)" if failed else ""))
        return 1 if failed else 0

    tflops = gemm_tflops(device)
    meta = {"device": torch.cuda.get_device_name(device), "machine": machine_info(), "date": utc_now(),
            "versions": _versions(), "bf16_gemm_tflops_8192": tflops, "dtype": "bfloat16",
            "correctness": checks, "chunk_tokens": CHUNK,
            "peak_mem_note": "max_memory_allocated above the inputs, includes grad_hidden and grad_weight",
            "floor_note": "3 GEMMs of 2*N*H*V (4 with recompute) x unmasked fraction at the measured GEMM rate"}
    print(f"{meta['device']}: bf16 GEMM 8192^3 = {tflops:.0f} TFLOP/s")
    rows = []
    start = time.monotonic()
    for n in sorted(args.tokens):  # smallest first: a run cut by its budget loses the largest N, not a shape
        for shape_name in args.shapes:
            for masked in args.masked:
                for name, fn in impls.items():
                    if args.budget_s is not None and time.monotonic() - start > args.budget_s:
                        H, V = SHAPES[shape_name]
                        rows.append({"impl": name, "shape": shape_name, "H": H, "V": V, "tokens": n,
                                     "masked": masked, "status": f"skipped: time budget of {args.budget_s} s spent"})
                        continue
                    rows.append(bench_row(name, fn, shape_name, n, masked, tflops, device))
                    r = rows[-1]
                    print(f"{shape_name} N={n} masked={masked} {name}: {r['status']} "
                          f"{r.get('fwd_bwd_ms', float('nan')):.2f} ms fwd+bwd", flush=True)
                    write_results(args.out, meta, rows)
    stem = write_results(args.out, meta, rows)
    _print_table(f"fused linear CE, {meta['device']}", rows,
                 ["shape", "tokens", "masked", "impl", "status", "fwd_ms", "bwd_ms", "fwd_bwd_ms", "peak_mem_gib",
                  "useful_tflops", "pct_of_floor", "floor_3gemm_ms", "floor_4gemm_ms"])
    print(f"wrote {stem}.csv and {stem}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
