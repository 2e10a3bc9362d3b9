"""What every benchmark record says about where it ran: device, CPU features, load, package versions, date.

A timing means little without the machine: on CPUs the instruction set decides the fastest dtype (no avx512_bf16
means bf16 is emulated), and a loaded machine halves throughput, so the load average at the start is recorded too.
Imported by the scripts in this folder (`python benchmarks/bench_x.py` puts the folder on sys.path).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _cpuinfo_field(name: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_info() -> dict:
    """Device name, core count, CPU features, memory and the load average when the benchmark started."""
    info: dict = {
        "cpu": _cpuinfo_field("model name") or platform.processor() or platform.machine(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_flags": {f: f in _cpuinfo_field("flags").split() for f in CPU_FLAGS},
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
    }
    gpu = _gpu_name()
    info["device"] = gpu or f"CPU: {info['cpu']} ({info['cpus_usable']} cores)"
    return info


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"


def package_versions(*packages: str) -> dict:
    """Python plus each installed package's version (missing ones are left out)."""
    out = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
