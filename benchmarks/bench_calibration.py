"""Calibration of the evaluation statistics on simulated benchmarks, P in {32, 164, 500} x n in {1, 2, 10}.

The larger version of tests/evaluation/test_calibration.py, through the same code paths
(`megatron_ssd.evaluation.decisions.calibration`): problems draw p ~ Beta(mean, concentration 1) (U-shaped, like
real code benchmarks), so every truth is known. Per cell it measures: coverage of the pass@1 and pass@n
intervals at low (2 %), medium (30 %) and high (97 %) pass rates; coverage of the paired pass@1 difference with no
effect and with a lift; for n >= 2 the slice table's per-slice and family-wise (Holm) false-positive rates under
the null and the verdict's frequencies at a true headroom equal to its 5 pp threshold; the round-2 gate's false
pass rate under the null; and once, the collapse probes' false-alarm rates on null splits. Each rate comes with
its binomial standard error. Single-threaded; a few minutes on one core.

    .venv/bin/python benchmarks/bench_calibration.py [--replicates 200] [--seed 0]

Writes benchmarks/results/calibration_<date>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine_info import machine_info, package_versions, utc_now

from megatron_ssd.evaluation.decisions import calibration as cal

SIZES = (32, 164, 500)
SAMPLES = (1, 2, 10)
MEANS = {"low": 0.02, "medium": 0.3, "high": 0.97}


def cell(P: int, n: int, replicates: int, seed: int) -> dict:
    out: dict = {"P": P, "n": n}
    out["passk_coverage"] = {f"pass@{k}/{name}": cal.passk_coverage(P, n, k, mean, replicates=replicates,
                                                                     seed=seed + k)
                             for name, mean in MEANS.items() for k in sorted({1, n})}
    paired_reps = max(50, replicates // 2)
    out["paired_coverage"] = {
        "null/medium": cal.paired_coverage(P, n, 1, 0.3, 0.0, replicates=paired_reps, seed=seed),
        "null/low": cal.paired_coverage(P, n, 1, 0.02, 0.0, replicates=paired_reps, seed=seed + 1),
        "lift 0.1/medium": cal.paired_coverage(P, n, 1, 0.3, 0.1, replicates=paired_reps, seed=seed + 2),
    }
    if n >= 2:
        out["slices_null"] = cal.slice_false_positives(P, n, replicates=max(20, replicates // 10), seed=seed)
        out["verdict_at_threshold"] = cal.verdict_rates(P, n, 0.05, replicates=replicates, seed=seed)
    out["gate_false_pass"] = cal.gate_false_pass(P, n, replicates=paired_reps, seed=seed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    start = time.perf_counter()
    cells = []
    for P in SIZES:
        for n in SAMPLES:
            t0 = time.perf_counter()
            c = cell(P, n, args.replicates, args.seed)
            cells.append(c)
            worst = min(v["rate"] for v in c["passk_coverage"].values())
            paired = min(v["rate"] for v in c["paired_coverage"].values())
            slices = c.get("slices_null", {}).get("family_wise", {}).get("rate")
            go = c.get("verdict_at_threshold", {}).get("verdicts", {}).get("GO-SSD", {}).get("rate", 0.0)
            print(f"P={P:>3} n={n:>2}: pass@k coverage >= {worst:.3f}, paired >= {paired:.3f}, slices any "
                  f"{'-' if slices is None else f'{slices:.3f}'}, GO-SSD at threshold {go:.3f}, gate false pass "
                  f"{c['gate_false_pass']['rate']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    probes = cal.probe_false_alarms(replicates=max(30, args.replicates // 4), seed=args.seed)
    print(f"collapse probes under the null: any alarm {probes['any']['rate']:.3f}")
    result = {
        "date": utc_now(), "benchmark": "calibration", "replicates": args.replicates, "seed": args.seed,
        "nominal": {"ci_level": 0.95, "verdict_one_sided": 0.95, "false_positive": 0.05},
        "population": "p ~ Beta(mean, concentration 1); truths in closed form",
        "machine": machine_info(), "versions": package_versions("numpy", "megatron-ssd"),
        "seconds": round(time.perf_counter() - start, 1), "cells": cells, "collapse_probes_null": probes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"calibration_{result['date'][:10]}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
