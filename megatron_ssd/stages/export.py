"""Stage `export`: the trained Megatron checkpoint -> an HF folder that transformers and vLLM load.

Reads `train/ckpt/` (iteration dirs + `latest` pointer, see `megatron_ssd.models.checkpoint`), writes
`export/hf/iter_XXXXXXX/` (safetensors, config, tokenizer, generation config, chat template from the base
model) atomically, and `export/hf/latest` naming it. An iteration already exported is not redone.
"""
from __future__ import annotations

from pathlib import Path

from ..config.schema import SSDConfig
from ..models.base_model import resolve_base_model
from ..models.checkpoint import checkpoint_info
from ..models.convert import megatron_to_hf
from ..models.hf_io import verify_hf_folder
from . import StageContext


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    # SSDError naming the path if missing, pointer-less or incomplete
    info = checkpoint_info(ctx.run.checkpoints_dir)
    ctx.run.stage_dir("export")
    out = ctx.run.export_dir / info.path.name
    if _complete(out):
        verify_hf_folder(out)  # checksums: an earlier export damaged since is refused by file name
        ctx.console.print(f"[export] {out} exists; skipping")
        summary = {"checkpoint": str(info.path), "iteration": info.iteration, "hf": str(out), "skipped": True}
    else:
        base = Path(resolve_base_model(cfg.model))
        ctx.console.print(f"[export] {info.path} -> {out} (template {base}, {cfg.model.dtype})")
        summary = megatron_to_hf(info.path, out, hf_template=base, dtype=cfg.model.dtype)
        summary["skipped"] = False
    ctx.run.write_latest_export(out)
    return summary


def _complete(folder: Path) -> bool:
    # The folder only appears by rename after a successful write, so config + weights mean complete.
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
