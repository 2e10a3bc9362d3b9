"""Stage `export`: the trained Megatron checkpoint -> an HF folder that transformers and vLLM load.

Reads `train/ckpt/` (iteration dirs + `latest` pointer, see `megatron_ssd.models.checkpoint`), writes
`export/hf/iter_XXXXXXX/` (safetensors, config, tokenizer, generation config, chat template from the base
model) atomically, and `export/hf/latest` naming it. An iteration already exported is not redone.
"""
from __future__ import annotations

from pathlib import Path

from ..config.schema import SSDConfig
from ..rundir import atomic_write_text
from . import StageContext


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    from ..models.base_model import resolve_base_model
    from ..models.checkpoint import checkpoint_info
    from ..models.convert import megatron_to_hf

    ckpt_root = ctx.run.path / "train" / "ckpt"
    info = checkpoint_info(ckpt_root)  # SSDError naming the path if missing, pointer-less or incomplete
    hf_root = ctx.run.stage_dir("export") / "hf"
    out = hf_root / info.path.name
    if _complete(out):
        ctx.console.print(f"[export] {out} exists; skipping")
        summary = {"checkpoint": str(info.path), "iteration": info.iteration, "hf": str(out), "skipped": True}
    else:
        base = Path(resolve_base_model(cfg.model))
        ctx.console.print(f"[export] {info.path} -> {out} (template {base}, {cfg.model.dtype})")
        summary = megatron_to_hf(info.path, out, hf_template=base, dtype=cfg.model.dtype)
        summary["skipped"] = False
    atomic_write_text(hf_root / "latest", out.name + "\n")
    return summary


def _complete(folder: Path) -> bool:
    # The folder only appears by rename after a successful write, so config + weights mean complete.
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
