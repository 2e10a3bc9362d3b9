"""The Python half of `benchmarks/gpu/check.sh`: the preflight (wheel list, imports, environment) and the
summary of the GPU tests' JUnit XML as JSON.

    python benchmarks/gpu/check_tools.py preflight OUT_DIR [--dry-run]
    python benchmarks/gpu/check_tools.py tests-json JUNIT_XML OUT_JSON

The preflight writes OUT_DIR/environment.json (device, date, versions: `benchmarks/machine_info.py`) and exits
non-zero when the wheel list is malformed, when a listed wheel in .whl/ is missing or has another version, or
when an import the check needs fails (on the GPU machine; a dry run on a CPU only reports what is not installed
here, since the wheels are meant for the GPU machine's Python 3.12).
"""
from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # machine_info

from machine_info import machine_info, package_versions, utc_now  # noqa: E402

WHEELS = HERE / "wheels.txt"
WHEEL_DIR = REPO / ".whl"
# What the GPU image brings (benchmarks/gpu/README.md); everything else the check imports must be in wheels.txt.
ON_IMAGE = {"torch", "triton", "numpy", "transformers", "pyarrow", "pyyaml", "safetensors", "rich", "pytest",
            "packaging", "tokenizers"}
# module -> distribution, for every import the check's parts need.
IMPORTS = {
    "torch": "torch", "triton": "triton", "numpy": "numpy", "transformers": "transformers", "pyarrow": "pyarrow",
    "yaml": "pyyaml", "safetensors": "safetensors", "pytest": "pytest",
    "megatron.core": "megatron-core", "liger_kernel": "liger-kernel", "omegaconf": "omegaconf",
    "hydra": "hydra-core", "antlr4": "antlr4-python3-runtime",
}
# Our own modules, imported from the working tree (PYTHONPATH; check.sh).
OWN = ("megatron_ssd.kernels", "megatron_ssd.training.loss", "megatron_ssd.training.trainer",
       "megatron_ssd.training.entry", "megatron_ssd.models.convert")
LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_wheel_list(path: Path = WHEELS) -> dict[str, str]:
    """name -> version; raises ValueError naming the line of a malformed or repeated entry."""
    pins: dict[str, str] = {}
    for i, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{i}: {raw!r} is not `name==version`")
        name = _norm(m.group(1))
        if name in pins:
            raise ValueError(f"{path}:{i}: {name} is listed twice (two versions stop the whole install)")
        pins[name] = m.group(2)
    return pins


def wheel_files(folder: Path = WHEEL_DIR) -> dict[str, str]:
    """name -> version of the wheels in `folder` (from the file names: name-version-tags.whl)."""
    out = {}
    for f in sorted(folder.glob("*.whl")):
        name, version = f.name.split("-")[:2]
        out[_norm(name)] = version
    return out


def check_wheels(pins: dict[str, str]) -> list[str]:
    problems = [f"{dist} is imported by the check but neither on the GPU image nor in {WHEELS.name}"
                for dist in sorted({_norm(d) for d in IMPORTS.values()} - set(pins) - ON_IMAGE)]
    if WHEEL_DIR.is_dir():
        have = wheel_files()
        for name, version in pins.items():
            if have.get(name) != version:
                problems.append(f".whl/ has {name} {have.get(name, '(none)')}, wheels.txt pins {version}; "
                                "run benchmarks/gpu/fetch_wheels.sh")
        problems += [f".whl/ holds {name} {v}, which wheels.txt does not list" for name, v in have.items()
                     if name not in pins]
    return problems


def check_imports(pins: dict[str, str], strict: bool) -> tuple[dict, list[str]]:
    report, problems = {}, []
    for module, dist in {**IMPORTS, **{m: None for m in OWN}}.items():
        try:
            importlib.import_module(module)
            version = metadata.version(dist) if dist else "working tree"
            report[module] = version
            pin = pins.get(_norm(dist)) if dist else None
            if strict and pin and version != pin:
                problems.append(f"{module}: {dist} {version} imported, wheels.txt pins {pin} (PYTHONPATH order?)")
        except Exception as exc:  # any import failure is a finding, whatever its type
            report[module] = f"FAILED: {type(exc).__name__}: {exc}"[:300]
            if strict or dist is None or _norm(dist) in ON_IMAGE:
                problems.append(f"import {module}: {report[module]}")
    own = importlib.import_module("megatron_ssd.kernels").__file__
    if not own.startswith(str(REPO)):
        problems.append(f"megatron_ssd.kernels comes from {own}, not this working tree")
    return report, problems


def preflight(out: Path, dry_run: bool) -> int:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    problems = []
    try:
        pins = read_wheel_list()
    except ValueError as exc:
        pins, problems = {}, [str(exc)]
    problems += check_wheels(pins)
    imports, import_problems = check_imports(pins, strict=not dry_run)
    problems += import_problems
    if not dry_run and not torch.cuda.is_available():
        problems.append("no CUDA device: run with --dry-run on a machine without a GPU")
    env = {
        "check": "benchmarks/gpu/check.sh", "dry_run": dry_run, "date": utc_now(), "device": machine_info(),
        "versions": {**package_versions("torch", "triton", "megatron-core", "liger-kernel", "transformers",
                                        "transformer-engine", "omegaconf", "hydra-core"),
                     "cuda": torch.version.cuda, "cuda_device_count": torch.cuda.device_count()},
        "wheels": pins, "imports": imports, "problems": problems,
    }
    (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
    for p in problems:
        print(f"preflight: {p}", file=sys.stderr)
    print(f"preflight: {'ok' if not problems else f'{len(problems)} problem(s)'}; wrote {out / 'environment.json'}")
    return 1 if problems else 0


def tests_json(junit: Path, out: Path) -> int:
    """pytest's JUnit XML as {counts, tests: [{name, outcome, message}]}."""
    cases = []
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome, message = {"failure": "failed"}.get(tag, tag), (node.get("message") or "")[:500]
                    break
            cases.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                          "message": message, "seconds": float(case.get("time") or 0)})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    out.write_text(json.dumps({"date": utc_now(), "counts": counts, "tests": cases}, indent=1) + "\n")
    print(f"gpu tests: {counts}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("preflight")
    pre.add_argument("out", type=Path)
    pre.add_argument("--dry-run", action="store_true")
    tj = sub.add_parser("tests-json")
    tj.add_argument("junit", type=Path)
    tj.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "preflight":
        return preflight(args.out, args.dry_run)
    return tests_json(args.junit, args.out)


if __name__ == "__main__":
    sys.exit(main())
