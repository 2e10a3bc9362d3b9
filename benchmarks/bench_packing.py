"""Packing efficiency and time at seq_length 65,536 on a realistic SSD length distribution.

Completions: lognormal with median ~3K and p95 ~20K tokens (long-tailed reasoning/code outputs), capped where
generation would stop (prompt + completion <= seq_length + 1, i.e. finish_reason="length"); prompts: uniform
300-1,500 tokens. Seeded. For each document count it times first-fit-decreasing (+ in-bin layout) and compares
its efficiency with next-fit in input order (concatenate until full: what a naive packer does). For the
smallest count it also runs the full write path (parquet shards -> read -> pack -> .npy) and times reading a bin
back through PackedDataset. Target: efficiency >= 98% at 64K.

    .venv/bin/python benchmarks/bench_packing.py [--docs 10000 100000] [--seq-length 65536] [--seed 0]

Writes benchmarks/results/packing_<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import machine_info, package_versions

from megatron_ssd.data.ffd import bin_layout, first_fit_decreasing
from megatron_ssd.data.pack import select_documents, write_packed
from megatron_ssd.data.packed import PackedDataset
from megatron_ssd.data.samples import read_samples

MEDIAN, P95 = 3000, 20000
SIGMA = float(np.log(P95 / MEDIAN) / 1.6448536)  # lognormal sigma giving that p95/median ratio
VOCAB = 151_936


def lengths(n: int, seq_length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prompt = rng.integers(300, 1501, n)
    completion = np.exp(rng.normal(np.log(MEDIAN), SIGMA, n)).astype(np.int64).clip(1)
    completion = np.minimum(completion, seq_length + 1 - prompt)  # generation stops at the context limit
    return prompt, completion


def next_fit(sizes: np.ndarray, capacity: int) -> int:
    bins, room = 0, 0
    for s in sizes.tolist():
        if s > room:
            bins, room = bins + 1, capacity
        room -= s
    return bins


def bench_ffd(n: int, seq_length: int, seed: int) -> dict:
    prompt, completion = lengths(n, seq_length, seed)
    positions = prompt + completion - 1
    t0 = time.perf_counter()
    assign = first_fit_decreasing(positions, seq_length)
    t1 = time.perf_counter()
    bin_layout(assign, positions)
    t2 = time.perf_counter()
    bins = int(assign.max()) + 1
    loads = np.bincount(assign, weights=positions)
    assert loads.max() <= seq_length
    nf_bins = next_fit(positions, seq_length)
    per_bin = np.bincount(assign)
    return {
        "docs": n,
        "tokens": int(positions.sum()),
        "completion_median": float(np.median(completion)),
        "completion_p95": float(np.percentile(completion, 95)),
        "capped_at_context": int((prompt + completion == seq_length + 1).sum()),
        "bins": bins,
        "efficiency": float(positions.sum() / (bins * seq_length)),
        "efficiency_without_last_bin": float((positions.sum() - loads[-1]) / ((bins - 1) * seq_length)),
        "docs_per_bin_mean": float(per_bin.mean()),
        "ffd_seconds": t1 - t0,
        "layout_seconds": t2 - t1,
        "next_fit_bins": nf_bins,
        "next_fit_efficiency": float(positions.sum() / (nf_bins * seq_length)),
    }


def bench_write(n: int, seq_length: int, seed: int) -> dict:
    """Parquet shards of random ids with the same lengths -> read_samples -> select -> write_packed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    prompt, completion = lengths(n, seq_length, seed)
    rng = np.random.default_rng(seed + 1)
    with tempfile.TemporaryDirectory(prefix="bench_packing_") as tmp:
        samples = Path(tmp) / "samples"
        samples.mkdir()
        num_shards = 8
        for s in range(num_shards):
            idx = np.arange(s, n, num_shards)
            p_len, c_len = prompt[idx], completion[idx]

            def lists(lens: np.ndarray) -> pa.Array:
                offsets = np.concatenate(([0], np.cumsum(lens))).astype(np.int32)
                values = rng.integers(0, VOCAB, int(offsets[-1]), dtype=np.int32)
                return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))

            pq.write_table(pa.table({
                "prompt_id": [f"p{i}" for i in idx], "sample_idx": pa.array(np.zeros(len(idx)), pa.int32()),
                "prompt_text": [""] * len(idx), "prompt_token_ids": lists(p_len), "token_ids": lists(c_len),
                "finish_reason": ["stop"] * len(idx), "num_tokens": pa.array(c_len, pa.int32()),
            }), samples / f"shard_{s:05d}.parquet")
        t0 = time.perf_counter()
        table = read_samples(samples, VOCAB)
        t1 = time.perf_counter()
        docs = select_documents(table, seq_length, "truncate")
        meta = write_packed(Path(tmp) / "packed", table, docs, seq_length, 0, "bench")
        t2 = time.perf_counter()
        ds = PackedDataset(Path(tmp) / "packed", "bench", seq_length)
        picks = np.random.default_rng(seed).integers(0, len(ds), 50)
        t3 = time.perf_counter()
        for i in picks:
            ds[int(i)]
        t4 = time.perf_counter()
        disk = sum(f.stat().st_size for f in (Path(tmp) / "packed").iterdir())
    return {
        "docs": n,
        "read_seconds": t1 - t0,
        "pack_write_seconds": t2 - t1,
        "bins": meta["num_bins"],
        "efficiency": meta["packing_efficiency"],
        "packed_bytes": disk,
        "dataset_getitem_ms": (t4 - t3) / len(picks) * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--seq-length", type=int, default=65_536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="skip the full write-path run")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()

    ffd = [bench_ffd(n, args.seq_length, args.seed) for n in args.docs]
    print(f"seq_length {args.seq_length:,}; completions lognormal median {MEDIAN} p95 {P95}; prompts 300-1500")
    print(f"{'docs':>9} {'tokens':>13} {'bins':>7} {'FFD eff':>8} {'next-fit':>8} {'docs/bin':>8} {'FFD s':>7} "
          f"{'layout s':>8}")
    for r in ffd:
        print(f"{r['docs']:>9,} {r['tokens']:>13,} {r['bins']:>7,} {r['efficiency']:>8.2%} "
              f"{r['next_fit_efficiency']:>8.2%} {r['docs_per_bin_mean']:>8.1f} {r['ffd_seconds']:>7.2f} "
              f"{r['layout_seconds']:>8.2f}")
    write = None
    if not args.no_write:
        write = bench_write(min(args.docs), args.seq_length, args.seed)
        print(f"full path, {write['docs']:,} docs: read {write['read_seconds']:.1f} s, pack+write "
              f"{write['pack_write_seconds']:.1f} s, {write['packed_bytes'] / 2**20:,.0f} MiB, "
              f"PackedDataset[i] {write['dataset_getitem_ms']:.1f} ms/bin")
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "benchmark": "packing",
        "seq_length": args.seq_length,
        "seed": args.seed,
        "distribution": {"completion": f"lognormal median {MEDIAN} p95 {P95} (sigma {SIGMA:.4f}), capped at the "
                         "context", "prompt": "uniform 300-1500"},
        "machine": machine_info(),
        "versions": package_versions("numpy", "pyarrow", "megatron-ssd"),
        "ffd": ffd,
        "full_write_path": write,
        "target_efficiency": 0.98,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"packing_{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
