"""Stage `prompts`: load sources, dedup, contamination check, train / held-out split -> prompts/prompts.parquet."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..config import SSDConfig
from ..errors import DataError
from ..problems import Problem
from ..prompts.contamination import find_contamination
from ..prompts.dedup import dedup
from ..prompts.sources import load_source
from ..prompts.split import split_heldout, stable_unit
from ..rundir import RunDir, atomic_path
from . import StageContext


def _cap(problems: list[Problem], limit: int | None, salt: str) -> list[Problem]:
    if limit is None or len(problems) <= limit:
        return problems
    keep = {p.problem_id for p in sorted(problems, key=lambda p: stable_unit(p.problem_id, salt))[:limit]}
    return [p for p in problems if p.problem_id in keep]


def run(cfg: SSDConfig, ctx: StageContext) -> dict:
    d = cfg.data
    same_pool = d.source == d.eval_source and (d.path or "") == (d.eval_path or "")
    window = {"date_start": d.date_start, "date_end": d.date_end}
    pool = load_source(d.source, d.path, **window)
    if not pool:
        raise DataError(f"data.source={d.source} produced no problems (check the path and the date window).")
    for name, path in (("train_source", d.path), ("eval_source", d.eval_path)):
        if path:
            ctx.run.record_input(name, path)

    deduped = dedup(pool, threshold=d.near_dup_threshold, num_perm=d.minhash_num_perm)
    if cfg.round == 2:  # a fresh pool: nothing round 1 trained on; the same held-out set, for comparability
        used = {p.problem_id for p in load_prompts(cfg.prev_run_dir, "train")}
        eval_set = load_prompts(cfg.prev_run_dir, "eval")
        held = {p.problem_id for p in eval_set}
        train = [p for p in deduped.kept if p.problem_id not in used | held]
    elif same_pool:
        train, eval_set = split_heldout(deduped.kept, d.heldout_fraction, d.split_seed)
    else:
        train = deduped.kept
        eval_set = load_source(d.eval_source, d.eval_path, **window)
    contamination = find_contamination(train, eval_set, n=d.contamination_ngram)
    if d.contamination_action == "drop":
        train = [p for p in train if p.problem_id not in contamination.contaminated]
    train = _cap(train, d.max_train_prompts, f"cap-train-{d.split_seed}")
    eval_set = _cap(eval_set, d.max_eval_problems, f"cap-eval-{d.split_seed}")
    if not train:
        raise DataError("no training prompts left after dedup, contamination removal and caps; loosen data.* limits.")
    if not eval_set:
        raise DataError("the eval set is empty; check data.eval_source / data.eval_path and data.max_eval_problems.")

    rows = [{**p.to_row(), "split": "train"} for p in train] + [{**p.to_row(), "split": "eval"} for p in eval_set]
    with atomic_path(ctx.run.prompts_path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)

    summary = {
        "source_problems": len(pool),
        "exact_duplicates": len(deduped.exact_duplicates),
        "near_duplicates": len(deduped.near_duplicates),
        "contaminated": len(contamination.contaminated),
        "contamination_action": d.contamination_action,
        "contamination_ngram": d.contamination_ngram,
        "contaminated_examples": dict(list(contamination.contaminated.items())[:20]),
        "train": len(train),
        "eval": len(eval_set),
        "split": "held-out split of one pool" if same_pool else "separate eval source",
    }
    ctx.run.update_manifest("data", "prompts", summary)
    ctx.console.print(
        f"prompts: {len(pool)} source problems, {summary['exact_duplicates']} exact + {summary['near_duplicates']} "
        f"near duplicates removed, {summary['contaminated']} contaminated ({d.contamination_action}); "
        f"train {len(train)}, eval {len(eval_set)}"
    )
    return summary


def load_prompts(run_dir: str | Path, split: str | None = None) -> list[Problem]:
    """The Problems of one split ("train", "eval"), or of both, as the prompts stage stored them."""
    run = RunDir(run_dir)
    problems = []
    for i, row in enumerate(run.prompts(split).to_pylist()):
        try:
            problems.append(Problem.from_row(row))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"row {i} is not a Problem row ({exc}).", path=str(run.prompts_path)) from None
    return problems
