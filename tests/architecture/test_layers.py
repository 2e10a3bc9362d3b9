"""The layer contract of docs/ARCHITECTURE.md, enforced on every import in the package.

import-linter cannot see `megatron_ssd.kernels` and `megatron_ssd.launch` (setup.py maps them from top-level
folders), so this test reads the import graph itself with `ast`: every `import`/`from ... import` of an in-repo
module, at module level or inside a function, resolved to its dotted name.

Rules:
1. a module imports only from its own layer or a lower one;
2. a function-local import of an in-repo module carries a one-line reason (a comment on the line or the line
   above), since hidden imports hide the graph; the reasons allowed are start-up cost and optional dependencies.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "megatron_ssd"
# Folders installed under the package by setup.py's package_dir.
MAPPED = {"kernels": ROOT / "kernels", "launch": ROOT / "launch"}

# Lowest first. Modules of one layer may import each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("config", "tracking"),
    ("rundir", "runlock", "shared_cache", "problems"),
    ("prompts", "prompting", "data", "models", "kernels"),
    ("generation", "evaluation", "selection", "rounds", "serving"),
    ("training",),
    ("stages",),
    ("launch",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def package_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the installed package."""
    out: dict[str, Path] = {}
    roots = [(PACKAGE, ROOT / PACKAGE)] + [(f"{PACKAGE}.{k}", v) for k, v in MAPPED.items()]
    for prefix, folder in roots:
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([prefix, *parts])] = path
    return out


def top_level(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path):
    """(imported module, line number, is function-local) for every in-repo import of one file."""
    tree = ast.parse(path.read_text(), str(path))
    local_lines: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(fn):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    local_lines.add(inner.lineno)
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, path, node)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.startswith(PACKAGE + ".") and top_level(target) in RANK:
                yield target, node.lineno, node.lineno in local_lines
                break


MODULES = package_files()


def test_every_top_level_module_has_a_layer():
    unplaced = sorted({top_level(m) for m in MODULES} - set(RANK) - {None, "hydra_conf"})
    assert not unplaced, f"place these in LAYERS (and docs/ARCHITECTURE.md): {unplaced}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    own = top_level(module)
    if own not in RANK:
        return
    upward = [f"line {line}: {target} ({top_level(target)} is above {own})"
              for target, line, _ in imports_of(module, MODULES[module]) if RANK[top_level(target)] > RANK[own]]
    assert not upward, f"{MODULES[module].relative_to(ROOT)} imports up the layers:\n  " + "\n  ".join(upward)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_local_imports_say_why(module):
    path = MODULES[module]
    lines = path.read_text().splitlines()
    silent = [f"line {line}: {target}" for target, line, local in imports_of(module, path)
              if local and "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#")]
    assert not silent, (f"{path.relative_to(ROOT)}: function-local in-repo imports without a one-line reason "
                        "(move them to the top of the module, or say why on the line):\n  " + "\n  ".join(silent))


def test_the_contract_catches_an_upward_import(tmp_path):
    """The checker itself: a config module that imports evaluation is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..evaluation.scoring import summarize\n")
    found = list(imports_of(f"{PACKAGE}.config.bad", bad))
    assert found and RANK[top_level(found[0][0])] > RANK["config"]
