"""Anchor-data mixing: a declared share of the training tokens taken from local instruction data (`data.mix`).

Why: practitioners mix a small share (5-20%) of instruction data into SSD's self-generated samples to anchor the
model against format drift. Declared up front and measured here, because a run that mixes is no longer the paper's
minimal recipe and its report must say so (`pack/meta.json` -> `mix`).

A source row is either chat `messages` (a list of {"role", "content"}, the last one the assistant's) or a
`prompt`/`response` pair (a one-turn chat). It becomes a document exactly like an SSD sample: the prompt is every
message before the last, rendered with the model's chat template and a generation prompt (what the engine sees when
sampling), the completion is the last answer's ids plus the EOS id, and only completion ids carry loss.

Shares are of document positions (packed non-padding tokens, after the over-length policy): with SSD documents
taking S positions and declared fractions f_i summing to F < 1, source i gets about f_i * S / (1 - F) positions,
drawn in a seeded order and repeated (a new order per pass) when the source is smaller than its share.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config.data import MixSource, mix_source_name
from ..errors import DataError
from ..prompts.readers import read_rows
from .samples import SampleTable
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)


def row_messages(row: dict[str, Any]) -> tuple[list[dict[str, str]], str] | str:
    """(prompt messages, response text) of a source row, or why it cannot be used."""
    if "messages" in row and row["messages"] is not None:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                 and isinstance(m.get("role"), str) for m in msgs):
            return "malformed_messages"
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            return "no_final_assistant_turn"
        if not msgs[-1]["content"].strip():
            return "empty_response"
        return [{"role": m["role"], "content": m["content"]} for m in msgs[:-1]], msgs[-1]["content"]
    prompt, response = row.get("prompt"), row.get("response")
    if isinstance(prompt, str) and isinstance(response, str):
        if not prompt.strip() or not response.strip():
            return "empty_prompt_or_response"
        return [{"role": "user", "content": prompt}], response
    return "neither_messages_nor_prompt_response"


def tokenize_source(src: MixSource, tokenizer: Tokenizer, vocab_limit: int) -> tuple[SampleTable, dict[str, int]]:
    """Every usable row of one source as a SampleTable (prompt ids, completion ids + EOS), and the unusable counts.
    A missing source, or one without a single usable row, is a DataError naming the file."""
    path = Path(src.path).expanduser()
    name = mix_source_name(src)
    if not path.exists():
        raise DataError(f"data.mix source {name!r} does not exist; give a local .jsonl/.parquet file or a "
                        "save_to_disk folder of chat messages or prompt/response rows, or remove it from data.mix.",
                        path=str(path))
    prompts: list[list[int]] = []
    completions: list[list[int]] = []
    rows: list[int] = []
    unusable: dict[str, int] = {}
    first_problem = ""
    for i, (where, row) in enumerate(read_rows(path)):
        parsed = row_messages(row)
        if isinstance(parsed, str):
            unusable[parsed] = unusable.get(parsed, 0) + 1
            first_problem = first_problem or f"{where}: {parsed.replace('_', ' ')}"
            continue
        messages, response = parsed
        prompts.append(tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True)))
        completions.append(tokenizer.encode(response) + [tokenizer.eos_id])
        rows.append(i)
    if not rows:
        raise DataError(
            f"data.mix source {name!r} has no usable row ({sum(unusable.values())} read: "
            f"{_describe(unusable) or 'the source is empty'}; first: {first_problem or 'none'}). Each row needs "
            "`messages` (a list of {role, content} ending with the assistant's answer) or non-empty `prompt` and "
            "`response` strings.", path=str(path))
    values = [np.fromiter((t for ids in prompts for t in ids), dtype=np.int64),
              np.fromiter((t for ids in completions for t in ids), dtype=np.int64)]
    for v in values:
        if len(v) and (v.min() < 0 or v.max() >= vocab_limit):
            raise DataError(f"data.mix source {name!r}: the tokenizer produced ids outside [0, {vocab_limit}); "
                            "pack with the model's own tokenizer folder.", path=str(path))
    n = len(rows)
    table = SampleTable(
        shard_paths=[path],
        shard=np.zeros(n, dtype=np.int32),
        row=np.asarray(rows, dtype=np.int64),
        prompt_id=np.asarray([f"mix:{name}:{r}" for r in rows], dtype=object),
        sample_idx=np.zeros(n, dtype=np.int64),
        finish_reason=np.full(n, "stop", dtype=object),
        prompt_values=values[0].astype(np.int32),
        prompt_offsets=np.concatenate(([0], np.cumsum([len(p) for p in prompts]))).astype(np.int64),
        completion_values=values[1].astype(np.int32),
        completion_offsets=np.concatenate(([0], np.cumsum([len(c) for c in completions]))).astype(np.int64),
        check_rows=[],
    )
    return table, unusable


def draw(lengths: np.ndarray, target: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `lengths` (and the pass each was drawn in) whose lengths sum as close to `target` as a
    seeded order allows: the next document is taken while it brings the sum closer to the target. A new order is
    drawn per pass, so a source smaller than its share repeats."""
    picks: list[int] = []
    passes: list[int] = []
    total, p = 0.0, 0
    while len(lengths):
        order = np.random.default_rng([seed, p]).permutation(len(lengths))
        for i in order:
            if total + lengths[i] / 2 >= target:
                return np.asarray(picks, dtype=np.int64), np.asarray(passes, dtype=np.int64)
            picks.append(int(i))
            passes.append(p)
            total += float(lengths[i])
        p += 1
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def concat_tables(tables: Sequence[SampleTable]) -> SampleTable:
    """One SampleTable over several (shard indices and offsets rebased)."""
    shard_base = np.cumsum([0] + [len(t.shard_paths) for t in tables[:-1]])

    def offsets(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(np.concatenate([np.diff(o) for o in parts])))).astype(np.int64)

    return SampleTable(
        shard_paths=[p for t in tables for p in t.shard_paths],
        shard=np.concatenate([t.shard + b for t, b in zip(tables, shard_base)]).astype(np.int32),
        row=np.concatenate([t.row for t in tables]),
        prompt_id=np.concatenate([t.prompt_id for t in tables]),
        sample_idx=np.concatenate([t.sample_idx for t in tables]),
        finish_reason=np.concatenate([t.finish_reason for t in tables]),
        prompt_values=np.concatenate([t.prompt_values for t in tables]),
        prompt_offsets=offsets([t.prompt_offsets for t in tables]),
        completion_values=np.concatenate([t.completion_values for t in tables]),
        completion_offsets=offsets([t.completion_offsets for t in tables]),
        check_rows=[c for t in tables[:1] for c in t.check_rows],
    )


def mix_anchor_data(table: SampleTable, docs: Any, sources: Sequence[MixSource], tokenizer: Tokenizer,
                    seq_length: int, policy: str, vocab_limit: int, seed: int,
                    select: Callable[[SampleTable, int, str], Any]) -> tuple[SampleTable, Any, dict[str, Any]]:
    """The SSD documents plus each source's share: (table, documents, the `mix` block of pack/meta.json).

    `docs` is `select(table, seq_length, policy)` (pack.py's `select_documents`, passed in because pack.py calls
    this module); the sources' rows go through the same over-length policy. With no sources the inputs come back
    unchanged and the block says so (realised_fraction 0)."""
    ssd_positions = int(docs.length.sum())
    declared = float(sum(s.fraction for s in sources))
    block: dict[str, Any] = {"declared_fraction": declared, "realised_fraction": 0.0, "realised_loss_fraction": 0.0,
                             "ssd_positions": ssd_positions, "unit": "document positions (packed non-padding tokens)",
                             "seed": int(seed), "sources": []}
    if not sources:
        return table, docs, block
    tables, parts = [table], [docs]
    row_base = len(table)
    for si, src in enumerate(sources):
        name = mix_source_name(src)
        source_table, unusable = tokenize_source(src, tokenizer, vocab_limit)
        kept = select(source_table, seq_length, policy)
        if len(kept.index) == 0:
            raise DataError(f"data.mix source {name!r}: none of its {len(source_table)} rows fits training "
                            f"(train.seq_length={seq_length}, train.overlength_policy={policy}: {kept.counts}); "
                            "use shorter rows or a longer sequence.", path=str(src.path))
        target = src.fraction * ssd_positions / (1.0 - declared)
        picks, passes = draw(kept.length, target, seed + si)
        rows = kept.index[picks]
        drawn = _take(source_table, rows, passes)
        n = len(rows)
        parts.append(dataclasses.replace(kept, index=np.arange(n, dtype=np.int64) + row_base,
                                         length=kept.length[picks], loss_tokens=kept.loss_tokens[picks],
                                         truncated=kept.truncated[picks], counts={}))
        tables.append(drawn)
        row_base += n
        block["sources"].append({
            "name": name, "path": str(src.path), "declared_fraction": float(src.fraction),
            "rows_read": int(len(source_table) + sum(unusable.values())), "usable_rows": int(len(kept.index)),
            "unusable": dict(sorted(unusable.items())),
            "dropped_by_overlength_policy": int(len(source_table) - len(kept.index)),
            "documents": n, "distinct_rows": int(len(np.unique(rows))), "passes": int(passes.max() + 1) if n else 0,
            "target_positions": round(target, 1), "positions": int(kept.length[picks].sum()),
            "loss_tokens": int(kept.loss_tokens[picks].sum()),
        })
        if n and passes.max() > 0:
            log.warning("data.mix source %r: its %d usable rows are fewer than its %.1f%% share; they repeat %d "
                        "times.", name, len(kept.index), 100 * src.fraction, int(passes.max() + 1))
    merged = dataclasses.replace(
        docs, index=np.concatenate([d.index for d in parts]), length=np.concatenate([d.length for d in parts]),
        loss_tokens=np.concatenate([d.loss_tokens for d in parts]),
        truncated=np.concatenate([d.truncated for d in parts]),
        counts={**docs.counts, "mix_documents": int(sum(s["documents"] for s in block["sources"]))},
    )
    positions = int(merged.length.sum())
    loss = int(merged.loss_tokens.sum())
    for s in block["sources"]:
        s["realised_fraction"] = s["positions"] / positions if positions else 0.0
        s["realised_loss_fraction"] = s["loss_tokens"] / loss if loss else 0.0
    block["realised_fraction"] = sum(s["positions"] for s in block["sources"]) / positions if positions else 0.0
    block["realised_loss_fraction"] = sum(s["loss_tokens"] for s in block["sources"]) / loss if loss else 0.0
    return concat_tables(tables), merged, block


def _take(table: SampleTable, rows: np.ndarray, passes: np.ndarray) -> SampleTable:
    """Rows of a source table (repeats allowed), `sample_idx` = the pass that drew each."""
    p_len, c_len = table.prompt_lengths[rows], table.completion_lengths[rows]
    return SampleTable(
        shard_paths=table.shard_paths, shard=table.shard[rows], row=table.row[rows], prompt_id=table.prompt_id[rows],
        sample_idx=passes.astype(np.int64), finish_reason=table.finish_reason[rows],
        prompt_values=_gather(table.prompt_values, table.prompt_offsets, rows),
        prompt_offsets=np.concatenate(([0], np.cumsum(p_len))).astype(np.int64),
        completion_values=_gather(table.completion_values, table.completion_offsets, rows),
        completion_offsets=np.concatenate(([0], np.cumsum(c_len))).astype(np.int64),
        check_rows=[],
    )


def _gather(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    if not len(rows):
        return np.zeros(0, dtype=np.int32)
    return np.concatenate([values[offsets[r]:offsets[r + 1]] for r in rows]).astype(np.int32)


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(counts.items()))
