"""Stage `pack`: sample shards -> packed training bins in `<run>/pack/` (docs/CONTRACTS.md, "packed/").

Reads `<run>/samples/` (arm=verifier_aware: `<run>/filter/`, same shard format), tokenises nothing new (documents
are the engine's own ids), packs them first-fit-decreasing into bins of `train.seq_length`, and writes the folder
atomically: a killed pack leaves either the previous folder or none, never a half-written one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config.schema import SSDConfig
from ..data.pack import pack_folder
from ..data.samples import list_shards
from ..data.tokenizer import load_tokenizer
from ..models.base_model import resolve_base_model
from ..rundir import atomic_path
from . import StageContext

STAGE = "pack"


def vocab_limit(model_dir: Path, tokenizer_vocab: int) -> int:
    """Ids an engine can emit: the tokenizer's vocabulary, or the model's (padded) embedding rows if larger."""
    config = model_dir / "config.json"
    if model_dir.is_dir() and config.exists():
        model_vocab = json.loads(config.read_text()).get("vocab_size")
        if isinstance(model_vocab, int):
            return max(tokenizer_vocab, model_vocab)
    return tokenizer_vocab


def run(cfg: SSDConfig, ctx: StageContext) -> dict[str, Any]:
    src = ctx.run.filtered_dir if cfg.arm == "verifier_aware" else ctx.run.samples_dir
    num_shards = len(list_shards(src))
    model_dir = Path(resolve_base_model(cfg.model))
    tokenizer = load_tokenizer(model_dir)
    out = ctx.run.stage_dir(STAGE)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=ctx.console, transient=True) as progress:
        read_task = progress.add_task("pack: read shards", total=num_shards)
        pack_task = progress.add_task("pack: write bins", total=None)

        def on_progress(n: int, total: int) -> None:
            progress.update(pack_task, advance=n, total=total)

        with atomic_path(out) as tmp:
            meta = pack_folder(
                src,
                tmp,
                tokenizer,
                cfg.train.seq_length,
                cfg.train.overlength_policy,
                vocab_limit=vocab_limit(model_dir, tokenizer.vocab_size),
                on_shard=lambda _: progress.advance(read_task),
                on_progress=on_progress,
                mix=cfg.data.mix,
                mix_seed=cfg.data.mix_seed,
                packing=cfg.train.packing,
            )
    for mixed in meta["mix"]["sources"]:  # anchor data is an input of the run: hash it into the manifest
        ctx.run.record_input(f"data.mix:{mixed['name']}", mixed["path"])
    counts = meta["counts"]
    summary = {
        "path": str(out),
        "source": str(src),
        "seq_length": meta["seq_length"],
        "packing_efficiency": round(meta["packing_efficiency"], 5),
        "bins": meta["num_bins"],
        "docs": meta["num_docs"],
        "samples": counts["samples"],
        "real_tokens": meta["real_tokens"],
        "total_tokens": meta["total_tokens"],
        "loss_tokens": meta["loss_tokens"],
        "truncated": counts["truncated"],
        "dropped": {k.removeprefix("dropped_"): v for k, v in counts.items() if k.startswith("dropped_")},
        "prompt_retokenisation_mismatches": meta["prompt_retokenisation"]["mismatches"],
    }
    dropped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary["dropped"].items() if v) or "none"
    ctx.console.print(
        f"[bold]pack[/]: {summary['docs']:,} docs of {summary['samples']:,} samples -> {summary['bins']:,} bins of "
        f"{summary['seq_length']:,} tokens, efficiency {summary['packing_efficiency']:.2%}, "
        f"{summary['loss_tokens']:,} loss tokens; truncated {summary['truncated']}, dropped: {dropped}"
    )
    if summary["prompt_retokenisation_mismatches"]:
        ctx.console.print(
            f"[yellow]pack: {summary['prompt_retokenisation_mismatches']} of "
            f"{meta['prompt_retokenisation']['checked']} re-tokenised prompts differ from the engine's ids "
            f"(e.g. {meta['prompt_retokenisation']['examples'][0]}); packed the engine's ids as they are.[/]"
        )
    return summary
