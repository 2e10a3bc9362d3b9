"""Per-run sample statistics: empty, no code block, truncated, looping, token-length quantiles.

"looping" is the verifier-aware filter's declared rule (`evaluation.postfilters.is_looping`), so the count reported
after sampling is exactly what that filter would drop for repetition.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..evaluation.postfilters import is_looping

FENCE = "```"


def sample_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    lengths = np.array([r["num_tokens"] for r in rows], dtype=np.int64)
    total = len(rows)
    counts = {
        "empty": sum(1 for r in rows if not r["text"].strip()),
        "no_code_block": sum(1 for r in rows if FENCE not in r["text"]),
        "truncated": sum(1 for r in rows if r["finish_reason"] == "length"),
        "looping": sum(1 for r in rows if is_looping(r["text"])),
    }
    out: dict[str, Any] = {"samples": total, "tokens": int(lengths.sum()) if total else 0, **counts}
    out.update({f"{k}_frac": (v / total if total else 0.0) for k, v in counts.items()})
    if total:
        qs = np.quantile(lengths, [0.1, 0.5, 0.9, 0.99])
        out["length_quantiles"] = {"p10": float(qs[0]), "p50": float(qs[1]), "p90": float(qs[2]),
                                   "p99": float(qs[3]), "max": int(lengths.max())}
    return out
