"""Turn samples into packed training bins (the `packed/` format of docs/CONTRACTS.md).

A document is `prompt_token_ids + token_ids`: exactly the ids the engine saw and produced, never re-tokenised text
(re-tokenising generated text does not reproduce the sampled ids). Training on a document of L ids uses L - 1
positions, Megatron-style: `tokens = doc[:-1]`, `labels = doc[1:]`, and `loss_mask[t] = 1` exactly when
`labels[t]` is a completion id, so no prompt id (and no padding) is ever a target while the model still learns
the first completion id from the end of the prompt and the final EOS from the last completion id.

On disk (`write_packed`), one row per bin of `seq_length` positions:
    meta.json           format, seq_length, tokenizer fingerprint, counts, efficiency (see `write_packed`)
    tokens.npy          int32 [bins, seq_length]   input ids; padding = pad id
    labels.npy          int32 [bins, seq_length]   next-token targets; padding = pad id
    loss_mask.npy       uint8 [bins, seq_length]   1 = train on this target
    cu_seqlens.npy      int32 [sum(segments_b + 1)] per-bin boundaries, concatenated: 0, ..., seq_length
    cu_offsets.npy      int64 [bins + 1]           bin b's boundaries are cu_seqlens[cu_offsets[b]:cu_offsets[b+1]]
    documents.parquet   one row per packed document: prompt_id, sample_idx, shard, row, bin, offset, length,
                        loss_tokens, truncated
The padding tail of a bin is its own segment (masked), so attention never joins it to a document. Position ids
restart at 0 per segment and are derived from cu_seqlens when reading (`PackedDataset`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config.data import MixSource
from ..config.train import PACKINGS
from ..errors import ConfigError, DataError
from .ffd import bin_layout, first_fit_decreasing
from .mix import mix_anchor_data
from .packed import FORMAT, FORMAT_VERSION
from .samples import SampleTable, list_shards, read_samples
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)

POLICIES = ("truncate", "drop")


@dataclass
class Documents:
    """Which samples become documents, and how many positions each one takes."""

    index: np.ndarray  # int64: rows of the SampleTable that are packed
    length: np.ndarray  # int64: positions (= ids - 1) per packed document, after truncation
    loss_tokens: np.ndarray  # int64: positions with loss_mask = 1
    truncated: np.ndarray  # bool
    counts: dict[str, int]


def select_documents(table: SampleTable, seq_length: int, policy: str) -> Documents:
    """Apply the over-length policy. A document of L ids is over-length when L - 1 > seq_length.

    `truncate` keeps its first seq_length + 1 ids (prompt first, so the completion is what gets cut); a document
    whose prompt alone fills the window would have nothing to learn and is dropped instead. Samples with an empty
    completion are dropped for the same reason. Every case is counted.
    """
    if policy not in POLICIES:
        raise ConfigError(f"train.overlength_policy={policy!r}: choose one of {', '.join(POLICIES)}.")
    p = table.prompt_lengths
    c = table.completion_lengths
    positions = p + c - 1
    over = positions > seq_length
    empty = c == 0
    if policy == "drop":
        prompt_fills = np.zeros(len(p), dtype=bool)
        keep = ~over & ~empty
    else:
        prompt_fills = over & ~empty & (p >= seq_length + 1)
        keep = ~empty & ~prompt_fills
    length = np.where(over, seq_length, positions)
    # positions whose target is a completion id: targets are ids 1..length, completion ids start at index p
    loss = np.minimum(length, p + c - 1) - np.maximum(p - 1, 0)
    no_loss = keep & (loss < 1)  # only an empty prompt with a one-id completion gets here
    keep &= ~no_loss
    truncated = over & keep
    idx = np.flatnonzero(keep)
    counts = {
        "samples": int(len(p)),
        "documents": int(len(idx)),
        "overlength": int(over.sum()),
        "truncated": int(truncated.sum()),
        "truncated_positions_removed": int((positions - length)[truncated].sum()),
        "dropped_overlength": int((over & ~empty).sum()) if policy == "drop" else 0,
        "dropped_prompt_fills_window": int(prompt_fills.sum()),
        "dropped_empty_completion": int(empty.sum()),
        "dropped_no_loss_tokens": int(no_loss.sum()),
        "finish_reason_length": int((table.finish_reason == "length").sum()),
    }
    return Documents(idx, length[idx], loss[idx], truncated[idx], counts)


def check_prompt_tokenisation(table: SampleTable, tokenizer: Tokenizer) -> dict[str, object]:
    """Re-tokenise a few prompt texts and compare with the engine's prompt ids (with and without the tokenizer's
    own special tokens, since engines differ in whether they add BOS). A mismatch means the samples were made
    with another tokenizer or template: packing still uses the engine's ids, but the count is reported."""
    mismatches = []
    for i, text in table.check_rows:
        want = table.prompt_ids(i).tolist()
        if want not in (tokenizer.encode(text), tokenizer.encode(text, add_special_tokens=True)):
            mismatches.append(table.where(i))
    if mismatches:
        log.warning(
            "%d of %d re-tokenised prompts differ from the engine's prompt_token_ids (first: %s); the samples may "
            "come from another tokenizer or chat template.", len(mismatches), len(table.check_rows), mismatches[0],
        )
    return {"checked": len(table.check_rows), "mismatches": len(mismatches), "examples": mismatches[:5]}


def write_packed(
    out_dir: str | Path,
    table: SampleTable,
    docs: Documents,
    seq_length: int,
    pad_id: int,
    tokenizer_fingerprint: str,
    extra_meta: dict | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    packing: str = "bins",
) -> dict:
    """Pack `docs` into rows of `seq_length` and write the arrays + meta.json into `out_dir` (the caller makes the
    folder appear atomically): packing="bins" first-fit-decreasing, "one_per_row" one document per row in input
    order (`config.train.packing`). `on_progress(docs_written, total_docs)` is called after every row. Returns the
    meta dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if packing == "bins":
        assign = first_fit_decreasing(docs.length, seq_length)
    elif packing == "one_per_row":
        assign = np.arange(len(docs.length), dtype=np.int64)
    else:
        raise ConfigError(f"train.packing={packing!r}: choose one of {', '.join(PACKINGS)}.")
    order, bin_starts, offsets = bin_layout(assign, docs.length)
    num_bins = len(bin_starts) - 1
    shape = (num_bins, seq_length)
    tokens = np.lib.format.open_memmap(out / "tokens.npy", mode="w+", dtype=np.int32, shape=shape)
    labels = np.lib.format.open_memmap(out / "labels.npy", mode="w+", dtype=np.int32, shape=shape)
    mask = np.lib.format.open_memmap(out / "loss_mask.npy", mode="w+", dtype=np.uint8, shape=shape)
    p_len = table.prompt_lengths
    cu_all: list[np.ndarray] = []
    cu_offsets = np.zeros(num_bins + 1, dtype=np.int64)
    for b in range(num_bins):
        members = order[bin_starts[b]:bin_starts[b + 1]]
        lens = docs.length[members]
        for d, o, n in zip(members, offsets[bin_starts[b]:bin_starts[b + 1]], lens):
            i = docs.index[d]
            p = int(p_len[i])
            ids = np.concatenate((table.prompt_ids(i), table.completion_ids(i)[: n + 1 - p]))
            tokens[b, o:o + n] = ids[:-1]
            labels[b, o:o + n] = ids[1:]
            mask[b, o + max(p - 1, 0):o + n] = 1
        used = int(lens.sum())
        tokens[b, used:] = pad_id
        labels[b, used:] = pad_id
        cu = np.zeros(len(lens) + 1 + (used < seq_length), dtype=np.int32)
        cu[1:len(lens) + 1] = np.cumsum(lens)
        cu[len(lens) + 1:] = seq_length  # the padding tail, a segment of its own
        cu_all.append(cu)
        cu_offsets[b + 1] = cu_offsets[b] + len(cu)
        if on_progress is not None:
            on_progress(len(members), len(docs.index))
    for arr in (tokens, labels, mask):
        arr.flush()
    del tokens, labels, mask
    cu_seqlens = np.concatenate(cu_all) if cu_all else np.zeros(0, dtype=np.int32)
    np.save(out / "cu_seqlens.npy", cu_seqlens.astype(np.int32))
    np.save(out / "cu_offsets.npy", cu_offsets)

    doc_bin = np.empty(len(docs.index), dtype=np.int64)
    doc_off = np.empty(len(docs.index), dtype=np.int64)
    doc_bin[order] = np.repeat(np.arange(num_bins), np.diff(bin_starts))
    doc_off[order] = offsets
    src = docs.index
    pq.write_table(
        pa.table({
            "prompt_id": pa.array(table.prompt_id[src].tolist(), type=pa.string()),
            "sample_idx": table.sample_idx[src],
            "shard": pa.array([table.shard_paths[s].name for s in table.shard[src]], type=pa.string()),
            "row": table.row[src],
            "bin": doc_bin,
            "offset": doc_off,
            "length": docs.length,
            "loss_tokens": docs.loss_tokens,
            "truncated": docs.truncated,
        }),
        out / "documents.parquet",
    )

    real = int(docs.length.sum())
    docs_per_bin = np.diff(bin_starts)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "packing": packing,
        "seq_length": seq_length,
        "tokenizer_fingerprint": tokenizer_fingerprint,
        "pad_id": int(pad_id),
        "num_bins": num_bins,
        "num_docs": int(len(docs.index)),
        "total_tokens": num_bins * seq_length,
        "real_tokens": real,
        "padding_tokens": num_bins * seq_length - real,
        "packing_efficiency": real / (num_bins * seq_length) if num_bins else 0.0,
        "loss_tokens": int(docs.loss_tokens.sum()),
        "longest_doc": int(docs.length.max()) if len(docs.length) else 0,
        "docs_per_bin": _summary(docs_per_bin),
        "counts": docs.counts,
        "arrays": {
            "tokens": {"dtype": "int32", "shape": list(shape)},
            "labels": {"dtype": "int32", "shape": list(shape)},
            "loss_mask": {"dtype": "uint8", "shape": list(shape)},
            "cu_seqlens": {"dtype": "int32", "shape": [int(len(cu_seqlens))]},
            "cu_offsets": {"dtype": "int64", "shape": [num_bins + 1]},
        },
        **(extra_meta or {}),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _summary(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {"min": int(x.min()), "median": float(np.median(x)), "mean": round(float(x.mean()), 3), "max": int(x.max())}


def pack_folder(
    samples_dir: str | Path,
    out_dir: str | Path,
    tokenizer: Tokenizer,
    seq_length: int,
    policy: str,
    vocab_limit: int | None = None,
    on_shard: Callable[[Path], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    mix: Sequence[MixSource] = (),
    mix_seed: int = 0,
    packing: str = "bins",
) -> dict:
    """Read `samples_dir/shard_*.parquet`, pack, and write into `out_dir`. Token ids must be < `vocab_limit`
    (default: the tokenizer's vocabulary size). `mix`: anchor-data sources packed with the samples (data/mix.py)."""
    samples_dir = Path(samples_dir)
    fingerprint = tokenizer.fingerprint()
    samples_meta = samples_dir / "meta.json"
    if samples_meta.exists():
        try:
            info = json.loads(samples_meta.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc}); re-run the stage that wrote it.", path=str(samples_meta)) from exc
        expected_shards = info.get("num_shards")
        found = len(list_shards(samples_dir))
        if isinstance(expected_shards, int) and found < expected_shards:
            raise DataError(
                f"num_shards={expected_shards} but only {found} shard files exist; finish the stage that writes them "
                "(rerun `ssd stage=sample`, or wait for the other engines) before packing.",
                path=str(samples_meta),
            )
        recorded = info.get("tokenizer_fingerprint")
        if recorded is not None and recorded != fingerprint:
            raise DataError(
                f"the samples were generated with tokenizer fingerprint {str(recorded)[:12]}..., but packing uses "
                f"{tokenizer.path} ({fingerprint[:12]}...). Pack with the model that generated them, or re-run "
                "`ssd stage=sample` with this model.",
                path=str(samples_meta),
            )
    table = read_samples(samples_dir, vocab_limit or tokenizer.vocab_size, on_shard=on_shard)
    retok = check_prompt_tokenisation(table, tokenizer)
    docs = select_documents(table, seq_length, policy)
    if len(docs.index) == 0:
        raise DataError(
            f"none of the {len(table)} samples is usable for training ({docs.counts}); check the sample stage's "
            "output and train.seq_length / train.overlength_policy.",
            path=str(samples_dir),
        )
    extra = {
        "overlength_policy": policy,
        "source": str(samples_dir),
        "shards": [p.name for p in table.shard_paths],
        "tokenizer_path": str(tokenizer.path),
        "tokenizer_backend": tokenizer.backend,
        "prompt_retokenisation": retok,
    }
    table, docs, extra["mix"] = mix_anchor_data(table, docs, mix, tokenizer, seq_length, policy,
                                                vocab_limit or tokenizer.vocab_size, mix_seed, select_documents)
    return write_packed(out_dir, table, docs, seq_length, tokenizer.pad_id, fingerprint, extra, on_progress,
                        packing)
