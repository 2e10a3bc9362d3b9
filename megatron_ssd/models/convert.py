"""HF folder <-> Megatron dist checkpoint (layout in `megatron_ssd.models.checkpoint`).

Both directions run on CPU processes over gloo, also on GPU machines (GPUs are hidden from the ranks):
conversion is bound by memory and I/O, not compute, and this way it runs the same on a login node, a
GPU node or a laptop, with host RAM rather than GPU memory as the limit.

hf -> megatron runs as a job of world = TP x PP x EP processes (spawned here; in this process when the
world is 1 and there is no GPU). Each rank builds its own GPTModel shard with megatron-core, fills it from the
safetensors files through the declarative mapping, and saves with `dist_checkpointing`. Why not an
offline reshard of state dicts: megatron-core itself then decides every checkpoint key, stacking
(layers, experts), replica id and the SwiGLU/QKV sharded layouts, so the checkpoint is exactly what the
trainer's model expects and stays correct across megatron-core releases; each rank holds 1/world of the
model, so large models convert on one node's RAM. Since torch_dist checkpoints are layout-free, TP/PP/EP
here only fixes the vocab padding and the memory per process; the trainer may load under another layout.

megatron -> hf runs as one process (TP=PP=EP=1, about 2 bytes of host RAM per bf16 parameter, twice
that while writing): megatron-core's loader reshards whatever layout the
checkpoint was written with into the unsharded model, which the mapping turns into HF tensors.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..config.parallel import ParallelConfig, ParallelLayout
from ..errors import SSDError
from ..rundir import atomic_path, atomic_write_json
from . import checkpoint as ckpt
from .arch import ArchInfo, describe, load_hf_config, pad_vocab_size
from .hf_io import HFReader, copy_non_weight_files, hf_dtype, write_hf_folder
from .parallel import spawn
from .provider import as_dtype, build_gpt_model
from .weights import export_hf_tensors, load_hf_weights

TEMPLATE_DIR = "hf_template"  # non-weight files of the source HF folder, kept next to the checkpoint
SUMMARY = "ssd_convert.json"
_IGNORABLE_HF = re.compile(r".*rotary_emb\.inv_freq$")


def _build(hf_config: Any, parallel: ParallelConfig, dtype: torch.dtype, padded_vocab: int):
    # Local spec everywhere: its checkpoint keys are those of the TE spec (megatron maps the fused-norm
    # names and makes SequentialMLP/TEGroupedMLP checkpoints interchangeable), and it needs no GPU.
    # No random init: every tensor is overwritten (load_hf_weights checks coverage).
    return build_gpt_model(hf_config, parallel, dtype=dtype, use_te=False, padded_vocab_size=padded_vocab,
                           perform_initialization=False)


# ------------------------------------------------------------------------------------------ hf -> megatron
def _hf_to_megatron_rank(src: str, tmp_root: str, dtype_name: str, padded: int, layout: tuple, iteration: int) -> None:
    import torch.distributed as dist

    hf_config = load_hf_config(src)
    info = describe(hf_config)
    tp, pp, ep = layout
    model = _build(hf_config, ParallelConfig(tensor=tp, pipeline=pp, expert=ep), as_dtype(dtype_name), padded)
    reader = HFReader(src)
    used = load_hf_weights(model, reader, info)
    all_used: list[set[str]] = [set() for _ in range(dist.get_world_size())]
    dist.all_gather_object(all_used, used)
    unused = sorted(set(reader.names()) - set().union(*all_used))
    unused = [n for n in unused if not _IGNORABLE_HF.match(n)
              and not (info.tie_word_embeddings and n == "lm_head.weight")]
    if unused:
        raise SSDError(f"{src}: {len(unused)} HF tensors have no Megatron counterpart (e.g. {', '.join(unused[:5])}); "
                       "the config does not describe these weights.")
    ckpt.save_model_checkpoint(model, tmp_root, iteration, extra={"ssd": {"arch": info.arch, "source": str(src)}})


def hf_to_megatron(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dtype: torch.dtype | str | None = None,
    make_vocab_size_divisible_by: int = 128,
    iteration: int = 0,
    overwrite: bool = False,
) -> dict:
    """Convert an HF folder into `<dst>/iter_XXXXXXX` (+ `latest` pointers and `<dst>/hf_template/`).

    dtype: of the saved weights; default the HF config's dtype (float32 if none).
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    info = describe(src)
    HFReader(src)  # fail here, in the parent, on missing weights
    padded = pad_vocab_size(info.vocab_size, tp, make_vocab_size_divisible_by)
    layout = ParallelLayout(world=tp * pp * ep, tensor=tp, pipeline=pp, expert=ep)
    layout.validate(model=info, padded_vocab_size=padded)
    if (dst / ckpt.LATEST).exists() and not overwrite:
        raise SSDError(f"{dst}: already holds a converted checkpoint; remove it or pass overwrite/--force.")
    dtype = as_dtype(dtype) if dtype is not None else (hf_dtype(src) or torch.float32)
    dtype_name = str(dtype).removeprefix("torch.")
    dst.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst / TEMPLATE_DIR) as tmp:
        tmp.mkdir()
        copy_non_weight_files(src, tmp)
    spawn(_hf_to_megatron_rank, str(src), str(dst), dtype_name, padded, (tp, pp, ep), iteration,
          layout=layout, cpu=True)
    summary = {
        "source": str(src), "checkpoint": str(dst / ckpt.iter_dir_name(iteration)), "arch": info.arch,
        "tensor_parallel": tp, "pipeline_parallel": pp, "expert_parallel": ep, "dtype": dtype_name,
        "vocab_size": info.vocab_size, "padded_vocab_size": padded,
    }
    atomic_write_json(dst / SUMMARY, summary)
    return summary


# ------------------------------------------------------------------------------------------ megatron -> hf
def _megatron_to_hf_rank(ckpt_dir: str, out: str, template: str, dtype_name: str, padded: int,
                         ckpt_dtype_name: str) -> None:
    hf_config = load_hf_config(template)
    info = describe(hf_config)
    model = _build(hf_config, ParallelConfig(), as_dtype(ckpt_dtype_name), padded)
    ckpt.load_model_weights(model, ckpt_dir)
    tensors = export_hf_tensors(model, info)
    dtype = as_dtype(dtype_name)
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    write_hf_folder(tensors, out, template, dtype=dtype)


def find_template(ckpt_dir: Path, hf_template: str | os.PathLike | None) -> Path:
    if hf_template is not None:
        return Path(hf_template)
    for cand in (ckpt_dir.parent / TEMPLATE_DIR, ckpt_dir / TEMPLATE_DIR):
        if (cand / "config.json").is_file():
            return cand
    raise SSDError(f"{ckpt_dir}: no {TEMPLATE_DIR}/ next to the checkpoint; pass the base model folder as "
                   "--hf-template (its config, tokenizer and chat template are copied).")


def check_matches(info: ArchInfo, ci: ckpt.CheckpointInfo, template: Path) -> None:
    if ci.hidden_size != info.hidden_size or ci.padded_vocab_size < info.vocab_size:
        raise SSDError(
            f"{ci.path}: embedding {ci.padded_vocab_size}x{ci.hidden_size} does not fit the template {template} "
            f"(vocab_size={info.vocab_size}, hidden_size={info.hidden_size}); use the base model it was trained from."
        )


def megatron_to_hf(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    hf_template: str | os.PathLike | None = None,
    dtype: torch.dtype | str | None = None,
) -> dict:
    """Export a Megatron checkpoint (root with `latest`, or an `iter_XXXXXXX` dir) to an HF folder `dst`,
    written atomically. dtype: of the HF weights; default the checkpoint's parameter dtype."""
    ci = ckpt.checkpoint_info(src)
    template = find_template(ci.path, hf_template)
    info = describe(template)
    check_matches(info, ci, template)
    out_dtype = as_dtype(dtype) if dtype is not None else ci.dtype
    names = (str(out_dtype).removeprefix("torch."), str(ci.dtype).removeprefix("torch."))
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        spawn(_megatron_to_hf_rank, str(ci.path), str(tmp), str(template), names[0], ci.padded_vocab_size, names[1],
              cpu=True)
    return {"checkpoint": str(ci.path), "iteration": ci.iteration, "hf": str(dst), "arch": info.arch,
            "dtype": names[0], "files": sorted(p.name for p in dst.iterdir())}


def read_summary(root: str | os.PathLike) -> dict | None:
    f = Path(root) / SUMMARY
    return json.loads(f.read_text()) if f.is_file() else None
