"""`data` group: prompt source, eval set, dedup/contamination, split, packing inputs, anchor-data mixing."""
from __future__ import annotations

from dataclasses import dataclass, field

# The declared post-filters, in the order they are applied; their rules live in `evaluation.postfilters`.
POSTFILTERS = ("empty_or_stub", "truncated", "looping")
from pathlib import Path


@dataclass
class MixSource:
    """One anchor-data source mixed into training (`megatron_ssd.data.mix`): rows of chat `messages` (the last one
    the assistant's) or `prompt`/`response` pairs, tokenised with the model's chat template."""

    # A local .jsonl/.jsonl.gz/.parquet file or an HF dataset folder written by `save_to_disk`.
    path: str = ""
    # Share of the packed training tokens (document positions) this source should take, in (0, 1).
    fraction: float = 0.0
    # Its name in pack/meta.json and documents.parquet; default: the file or folder name.
    name: str = ""


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
    postfilters: list[str] = field(default_factory=lambda: list(POSTFILTERS))
    # Anchor data mixed into the SSD samples against format drift (typically 5-20% of tokens in total); [] = the
    # paper's recipe. Fractions must sum below 1. Rows are drawn in a seeded order (`mix_seed`), repeated when a
    # source is smaller than its share; pack/meta.json records the realised fractions.
    mix: list[MixSource] = field(default_factory=list)
    mix_seed: int = 0

    def mix_problems(self) -> list[str]:
        """One message per problem of `mix`, each naming the key and the fix; [] when it is usable."""
        out: list[str] = []
        for i, src in enumerate(self.mix):
            key = f"data.mix[{i}]"
            if not src.path:
                out.append(f"{key}.path is empty: give a local .jsonl/.parquet file or a save_to_disk folder of chat "
                           "messages or prompt/response rows.")
            elif not Path(src.path).expanduser().exists():
                out.append(f"{key}.path={src.path}: no such file or folder; give a local .jsonl/.parquet file or a "
                           "save_to_disk folder of chat messages or prompt/response rows.")
            if not 0.0 < src.fraction < 1.0:
                out.append(f"{key}.fraction={src.fraction}: the share of training tokens must be strictly between 0 "
                           "and 1 (e.g. 0.1 for 10%).")
        total = sum(src.fraction for src in self.mix)
        if self.mix and total >= 1.0:
            out.append(f"data.mix fractions sum to {total:g}: they must sum below 1, since the rest of the training "
                       "tokens are the SSD samples; lower them (5-20% in total is the usual anchor share).")
        names = [mix_source_name(src) for src in self.mix]
        if len(set(names)) < len(names):
            out.append(f"data.mix names {names} repeat; give each source a distinct data.mix[i].name.")
        return out


def mix_source_name(src: MixSource) -> str:
    return src.name or Path(src.path).name
