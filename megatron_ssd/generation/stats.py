"""Per-run sample statistics: empty, no code block, truncated, looping, token-length quantiles."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

FENCE = "```"


def is_looping(token_ids: list[int], n: int = 8, window: int = 256, max_distinct_ratio: float = 0.3) -> bool:
    """Degenerate repetition: in the last `window` tokens, distinct n-grams are under `max_distinct_ratio` of all.

    A healthy completion's n-grams are nearly all distinct; a model stuck in a loop repeats a short cycle, so
    distinct n-grams collapse to roughly the cycle length.
    """
    tail = list(token_ids[-window:])
    if len(tail) < 4 * n:
        return False
    grams = [tuple(tail[i : i + n]) for i in range(len(tail) - n + 1)]
    return len(set(grams)) / len(grams) < max_distinct_ratio


def sample_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    lengths = np.array([r["num_tokens"] for r in rows], dtype=np.int64)
    total = len(rows)
    counts = {
        "empty": sum(1 for r in rows if not r["text"].strip()),
        "no_code_block": sum(1 for r in rows if FENCE not in r["text"]),
        "truncated": sum(1 for r in rows if r["finish_reason"] == "length"),
        "looping": sum(1 for r in rows if is_looping(r["token_ids"])),
    }
    out: dict[str, Any] = {"samples": total, "tokens": int(lengths.sum()) if total else 0, **counts}
    out.update({f"{k}_frac": (v / total if total else 0.0) for k, v in counts.items()})
    if total:
        qs = np.quantile(lengths, [0.1, 0.5, 0.9, 0.99])
        out["length_quantiles"] = {"p10": float(qs[0]), "p50": float(qs[1]), "p90": float(qs[2]),
                                   "p99": float(qs[3]), "max": int(lengths.max())}
    return out
