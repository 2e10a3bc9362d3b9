"""Sandbox throughput: executions per second with bubblewrap vs a bare subprocess, at 1 and N workers.

What is timed, per execution, for a HumanEval-sized job (define a function, run a 3-assert check):
- bare:      `/usr/bin/python3 -I -c <program + check>` as a plain subprocess: the floor any process-per-sample
             evaluator pays (interpreter start-up + the program);
- fallback:  our harness without bubblewrap (uid drop, rlimits, the fork into a supervised child, the judge);
- bwrap:     the full sandbox (bubblewrap namespaces + harness), the default.
Overhead per execution = median latency of a mode − median latency of bare at the same worker count; the CPU
seconds per execution (this process + all children, user + sys) are recorded too, because on a shared machine
they are the load-independent cost (throughput on a dedicated machine ≈ cores / CPU seconds per execution). With
bwrap the processes inside the pid namespace are not reaped by us, so the harness's own report of its CPU (harness
+ candidate) is added; bubblewrap's in-namespace init is not counted (it only waits).
The target is <= 0.2 s of overhead per execution. The load average before and after is recorded.

    python benchmarks/bench_sandbox.py [--executions 60] [--workers N]
Writes benchmarks/results/sandbox_<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine_info import machine_info, package_versions
from megatron_ssd.evaluation.sandbox.isolation import IsolationWarning
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig, SandboxJob, resolve_isolation, run_job

PROGRAM = "def f(x):\n    return 2 * x\n"
TESTS = ("def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 4\n"
         "    assert candidate(0) == 0\n")
RESULTS = Path(__file__).resolve().parent / "results"


def bare_once(python: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([python, "-I", "-c", PROGRAM + TESTS + "check(f)\n"], capture_output=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode())
    return time.perf_counter() - start


INTERIOR_CPU: list[float] = []  # CPU the harness reports from inside a pid namespace (invisible to getrusage)


def sandbox_once(cfg: SandboxConfig) -> float:
    job = SandboxJob(style="humaneval", program=PROGRAM, test_code=TESTS, entry_point="f")
    start = time.perf_counter()
    result = run_job(job, cfg)
    if result.sample_outcome.outcome != "passed":
        raise RuntimeError(f"benchmark job did not pass: {result.sample_outcome}")
    if result.isolation == "bwrap" and result.cpu_s is not None:
        INTERIOR_CPU.append(result.cpu_s)
    return time.perf_counter() - start


def _cpu() -> float:
    """CPU seconds (user + sys) of this process and of every child it has reaped."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn, executions: int, workers: int) -> dict[str, float]:
    fn()  # warm-up (imports, isolation probe, page cache)
    INTERIOR_CPU.clear()
    cpu0, start = _cpu(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        latencies = list(pool.map(lambda _: fn(), range(executions)))
    wall, cpu = time.perf_counter() - start, _cpu() - cpu0 + sum(INTERIOR_CPU)
    return {"executions": executions, "workers": workers, "wall_s": round(wall, 3),
            "executions_per_s": round(executions / wall, 2), "latency_mean_s": round(statistics.mean(latencies), 4),
            "latency_median_s": round(statistics.median(latencies), 4),
            "latency_min_s": round(min(latencies), 4),
            "latency_p95_s": round(sorted(latencies)[int(0.95 * (len(latencies) - 1))], 4),
            "cpu_s_per_execution": round(cpu / executions, 4)}


def sandbox_environment() -> dict[str, object]:
    """What the sandbox's cost depends on beyond the machine: bubblewrap, the two Pythons, the user."""
    try:
        bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        bwrap = None
    system_python = subprocess.run(["/usr/bin/python3", "--version"], capture_output=True, text=True).stdout.strip()
    return {"python_evaluator": platform.python_version(), "python_sandbox": system_python, "bwrap": bwrap,
            "euid": os.geteuid()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--executions", type=int, default=60)
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    configs = {}
    modes = {"bare": None, "fallback": SandboxConfig(isolation="fallback"), "bwrap": SandboxConfig(isolation="bwrap")}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for mode, cfg in modes.items():
        if cfg is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IsolationWarning)
                configs[mode] = resolve_isolation(cfg).mode
        fn = (lambda: bare_once("/usr/bin/python3")) if cfg is None else (lambda c=cfg: sandbox_once(c))
        results[mode] = {}
        for workers in sorted({1, args.workers}):
            results[mode][str(workers)] = measure(fn, args.executions, workers)
            r = results[mode][str(workers)]
            print(f"{mode:9s} workers={workers}: {r['executions_per_s']:6.2f} exec/s, latency median "
                  f"{r['latency_median_s'] * 1000:.0f} ms (min {r['latency_min_s'] * 1000:.0f} ms), "
                  f"CPU {r['cpu_s_per_execution'] * 1000:.0f} ms/exec")
    overhead, cpu_overhead = {}, {}
    for mode in ("fallback", "bwrap"):
        for workers, r in results[mode].items():
            bare = results["bare"][workers]
            overhead[f"{mode}/{workers}"] = round(r["latency_median_s"] - bare["latency_median_s"], 4)
            cpu_overhead[f"{mode}/{workers}"] = round(r["cpu_s_per_execution"] - bare["cpu_s_per_execution"], 4)
    target = 0.2
    out = {"benchmark": "sandbox", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "sandbox_environment": sandbox_environment(), "load_avg_before": load_before,
           "load_avg_after": os.getloadavg(),
           "isolation_modes": configs, "results": results, "overhead_per_execution_s": overhead,
           "cpu_overhead_per_execution_s": cpu_overhead,
           "target_overhead_s": target, "meets_target": all(v <= target for k, v in overhead.items()
                                                             if k.startswith("bwrap/")),
           "versions": package_versions("megatron-ssd"), "argv": sys.argv[1:]}
    for key, value in overhead.items():
        print(f"overhead {key}: {value * 1000:.0f} ms per execution (latency), "
              f"{cpu_overhead[key] * 1000:.0f} ms CPU")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = Path(args.out) if args.out else RESULTS / f"sandbox_{_dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
