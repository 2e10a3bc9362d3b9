"""`data` group: prompt source, eval set, dedup/contamination, split, packing inputs."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    # Training prompt source: humaneval | jsonl | parquet | rstarcoder | livecodebench.
    source: str = "humaneval"
    path: str | None = None
    # Eval set source (same kinds). With source == eval_source == humaneval the default splits HumanEval into
    # two disjoint halves: one half's prompts are sampled for training, the other half is the eval set.
    eval_source: str = "humaneval"
    eval_path: str | None = None
    # LiveCodeBench contest-date window (inclusive, ISO dates); empty = no bound.
    date_start: str = ""
    date_end: str = ""
    # Fraction of problems held out (used when train and eval come from the same source).
    heldout_fraction: float = 0.5
    split_seed: int = 0
    max_train_prompts: int | None = None
    max_eval_problems: int | None = None
    # Near-duplicate detection: MinHash over word 5-gram shingles, Jaccard threshold.
    near_dup_threshold: float = 0.8
    minhash_num_perm: int = 128
    # Contamination: a training prompt sharing any `contamination_ngram`-word n-gram with an eval problem.
    contamination_ngram: int = 13
    # drop | keep (keep = only count them in the manifest)
    contamination_action: str = "drop"
    # Verifier-aware arm only: the declared post-filters applied before the sandbox
    # (`evaluation.postfilters`: empty_or_stub, truncated, looping); [] sends every sample to the tests.
    postfilters: list[str] = field(default_factory=lambda: ["empty_or_stub", "truncated", "looping"])
