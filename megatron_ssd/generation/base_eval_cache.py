"""One evaluation of the base model per (model, eval set, decoding), shared by every run that needs it.

Every point of a sweep over T_train / top-p / T_eval evaluates the same base model on the same eval set at the
official decoding (label `base`), and points sharing a T_train at the same decode-only decoding (`base_T<t>`).
That is the most expensive generation of a point after sampling; it is computed once here:

    with reuse_base_evaluations(cfg, run_dir, decodings, cache_root):
        evaluate_labels(...)            # finds the cached labels already in place and skips them

On entry, for each label, an exclusive file lock on its cache key is taken (in key order, so two points never
deadlock); a cached label is copied into `<run>/eval/<label>/`. The body computes what is missing; on exit the
labels it finished are published to the cache (copied to a temp folder, then renamed) and the locks are released.
So concurrent points wait for the first one instead of all computing the same evaluation, and a killed point
publishes nothing half-written (the protocol is `shared_cache.py`'s).

The key hashes everything that decides the result: the model section of the config, the eval set's content (the
eval rows of prompts.parquet), the decoding, the sample count and seed, and the scoring settings.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..rundir import RunDir
from ..shared_cache import content_key, locked, placing, publish

SUMMARY = "summary.json"
# eval.* keys that do not change a label's samples or scores (which labels exist, how fast they are computed).
NON_RESULT_EVAL_KEYS = ("temperature", "top_k", "top_p", "min_p", "max_tokens", "temperature_sweep", "workers",
                        "gate_min_lift_pp", "gap_threshold_pp")


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj


def eval_set_hash(run_dir: Path) -> str:
    """The content of the eval split (every column of its rows, in problem-id order)."""
    rows = sorted(RunDir(run_dir).prompts("eval").to_pylist(), key=lambda r: r["problem_id"])
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(cfg: Any, eval_set: str, decoding: Any) -> str:
    scoring = {k: v for k, v in _plain(cfg.eval).items() if k not in NON_RESULT_EVAL_KEYS}
    return content_key({"model": _plain(cfg.model), "eval_set": eval_set, "decoding": _plain(decoding),
                        "seed": cfg.seed, "scoring": scoring})


@contextlib.contextmanager
def reuse_base_evaluations(cfg: Any, run_dir: str | Path, decodings: Mapping[str, Any],
                           cache_root: str | Path) -> Iterator[dict[str, str]]:
    """Lock, restore, let the body compute the rest, publish; yields label -> "cached" | "computed"."""
    run_dir, cache_root = Path(run_dir), Path(cache_root)
    eval_set = eval_set_hash(run_dir)
    keys = {label: cache_key(cfg, eval_set, d) for label, d in decodings.items()}
    status: dict[str, str] = {}
    with locked(cache_root, keys.values()):
        for label, key in keys.items():
            cached, mine = cache_root / key, RunDir(run_dir).eval_dir(label)
            if (mine / SUMMARY).exists():
                status[label] = "present"
            elif (cached / SUMMARY).exists():
                with placing(cached, mine, link=False):  # a copy: the run may add to its own eval folder
                    pass
                status[label] = "cached"
            else:
                status[label] = "computed"
        yield status
        for label, key in keys.items():
            mine, cached = RunDir(run_dir).eval_dir(label), cache_root / key
            if (mine / SUMMARY).exists() and not (cached / SUMMARY).exists():
                publish(mine, cached)
