"""Teacher-forced next-token distributions of one model over a set of completions: the probe's only model calls.

Sequences are eval samples (prompt token ids + completion token ids, docs/CONTRACTS.md sample shards); every
completion token is one position, predicted from the prompt and the completion before it. Which samples are used is
declared (`select_sequences`: a seeded choice of problems, the first samples of each, the first completion tokens)
and recorded in eval/mechanism.json.

Two paths give the same `Distributions`:
- `exact_distributions`: transformers forward passes, log-softmax over the full vocabulary; entropy and every
  tail mass exact. One sequence per forward pass (no padding to get wrong); for models a CPU or one GPU holds.
- `vllm_distributions`: vLLM `prompt_logprobs=K` (top-K raw log-probabilities per prompt position, the engine the
  pipeline already uses); the entropy is bounded (`distributions.entropy_bounds`). K is capped by the engine's
  `max_logprobs`, which `generation.engine.engine_options` raises to eval.mechanism.top_k for this path.

Cost on the embedded default (SmolLM2-135M, fp32, 2 cores, the first 64 completion tokens of 2 x 24 samples): about
27 s per model on an AVX2-only AMD EPYC, about half that with AVX-512; the prompt forward keeps only its last
logit. The subsample is what keeps the probe inside the run's time budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ...errors import DataError
from ...generation.shards import read_samples
from .distributions import Distributions, entropy_bounds, from_logits

@dataclass(frozen=True)
class TeacherForced:
    problem_id: str
    source: str  # the eval label whose sample this is (base, ssd)
    sample_idx: int
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]

    @property
    def ids(self) -> list[int]:
        return [*self.prompt_ids, *self.completion_ids]


@dataclass(frozen=True)
class Selection:
    """The declared subsample (0 = all): problems (seeded choice), samples per problem and source, first tokens."""
    max_problems: int = 0
    max_samples_per_problem: int = 0
    max_completion_tokens: int = 0
    seed: int = 0

    @classmethod
    def from_config(cls, m) -> "Selection":
        return cls(m.max_problems, m.max_samples_per_problem, m.max_completion_tokens, m.seed)


def select_sequences(rows_by_source: Mapping[str, Iterable[Mapping[str, Any]]], sel: Selection) -> list[TeacherForced]:
    """Sample rows (prompt_id, sample_idx, prompt_token_ids, token_ids) of each source -> the declared subsample,
    ordered by problem, source, sample. Only problems every source has are kept, so both models and every source
    see the same problems."""
    by_source: dict[str, dict[str, list]] = {}
    for source, rows in rows_by_source.items():
        groups: dict[str, list] = {}
        for r in rows:
            if len(r["token_ids"]):
                groups.setdefault(str(r["prompt_id"]), []).append(r)
        by_source[source] = groups
    common = sorted(set.intersection(*(set(g) for g in by_source.values()))) if by_source else []
    if sel.max_problems and len(common) > sel.max_problems:
        pick = np.random.default_rng(sel.seed).choice(len(common), sel.max_problems, replace=False)
        common = [common[i] for i in sorted(pick)]
    out = []
    for pid in common:
        for source in sorted(by_source):
            rows = sorted(by_source[source][pid], key=lambda r: int(r["sample_idx"]))
            for r in rows[: sel.max_samples_per_problem or None]:
                completion = tuple(int(t) for t in r["token_ids"])[: sel.max_completion_tokens or None]
                out.append(TeacherForced(pid, source, int(r["sample_idx"]),
                                         tuple(int(t) for t in r["prompt_token_ids"]), completion))
    return out


def sequences_from_folders(folders: Mapping[str, Path], sel: Selection) -> list[TeacherForced]:
    """`select_sequences` over the sample shards of each eval label's samples/ folder."""
    rows = {}
    for source, folder in folders.items():
        found = read_samples(Path(folder))
        if not found:
            raise DataError(f"no sample shards in {folder}; the mechanism probe teacher-forces the eval samples of "
                            f"{source!r} (run the stage that writes them first).", path=str(folder))
        rows[source] = found
    return select_sequences(rows, sel)


def _layout(seqs: Sequence[TeacherForced]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    problem_ids = sorted({s.problem_id for s in seqs})
    index = {p: i for i, p in enumerate(problem_ids)}
    problem = np.concatenate([np.full(len(s.completion_ids), index[s.problem_id]) for s in seqs]).astype(np.int64)
    sequence = np.concatenate([np.full(len(s.completion_ids), i) for i, s in enumerate(seqs)]).astype(np.int64)
    position = np.concatenate([len(s.prompt_ids) + np.arange(len(s.completion_ids)) for s in seqs]).astype(np.int64)
    return problem_ids, problem, sequence, position


def exact_distributions(model_path: str | Path, seqs: Sequence[TeacherForced], k: int) -> Distributions:
    """Full-vocabulary distributions with transformers (fp32; on the GPU when there is one). Samples of one prompt
    share its forward pass: the prompt's KV cache is computed once and cropped back after each completion (the
    completions are most of the positions, the prompts most of the tokens), which is exact."""
    import torch  # why: torch-heavy; the report imports this package
    from transformers import AutoModelForCausalLM

    if not seqs:
        raise DataError("the mechanism probe has no sequences to teacher-force (no common problems with samples).")
    from transformers.utils import logging as hf_logging

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # library chatter stays off the run's console
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32, local_files_only=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.to(device).eval()
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(seqs):
        by_prompt.setdefault(s.prompt_ids, []).append(i)
    parts: list = [None] * len(seqs)
    with torch.inference_mode():
        for prompt, members in by_prompt.items():
            # only the prompt's last position predicts a completion token: no LM head over the rest of the prompt
            out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
            first, cache = out.logits[0, -1:], out.past_key_values
            for i in members:
                rest = list(seqs[i].completion_ids[:-1])
                if not rest:
                    logits = first
                elif hasattr(cache, "crop"):
                    more = model(input_ids=torch.tensor([rest], device=device), past_key_values=cache, use_cache=True)
                    logits = torch.cat([first, more.logits[0]])
                    cache.crop(-len(rest))  # back to the prompt alone for the next sample
                else:  # a cache that cannot be cropped: the whole sequence again
                    ids = torch.tensor([seqs[i].ids], device=device)
                    logits = model(input_ids=ids).logits[0, len(prompt) - 1: ids.shape[1] - 1]
                parts[i] = from_logits(logits.float().cpu(), k)
    del model
    logp, top_ids, ent = (np.concatenate([p[j] for p in parts]) for j in range(3))
    problem_ids, problem, sequence, position = _layout(seqs)
    return Distributions(logp, top_ids, ent, ent.copy(), problem, sequence, position, problem_ids, exact=True)


def vllm_distributions(engine: Any, seqs: Sequence[TeacherForced], k: int) -> Distributions:
    """Top-K distributions from vLLM's `prompt_logprobs` on a `generation.engine.VLLMEngine` (one generated token
    per sequence, which is discarded)."""
    from vllm import SamplingParams

    if not seqs:
        raise DataError("the mechanism probe has no sequences to teacher-force (no common problems with samples).")
    allowed = getattr(getattr(engine, "options", None), "max_logprobs", k)
    if k > allowed:
        raise ValueError(f"eval.mechanism.top_k={k} is above the engine's max_logprobs={allowed}; start the engine "
                         "with generation.engine.EngineOptions(max_logprobs=top_k) (engine_options does for a run).")
    params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=k, detokenize=False)
    outs = engine.llm.generate([{"prompt_token_ids": s.ids} for s in seqs], params, use_tqdm=False)
    vocab = int(engine.llm.llm_engine.model_config.get_vocab_size())
    logp = np.full((sum(len(s.completion_ids) for s in seqs), k), -np.inf)
    top_ids = np.zeros(logp.shape, dtype=np.int64)
    row = 0
    for s, out in zip(seqs, outs):
        for j in range(len(s.prompt_ids), len(s.ids)):
            entries = sorted(out.prompt_logprobs[j].items(), key=lambda kv: kv[1].rank)[:k]
            for c, (tok, lp) in enumerate(entries):
                logp[row, c], top_ids[row, c] = lp.logprob, tok
            row += 1
    finite = np.where(np.isfinite(logp), logp, -1e30)
    low, high = entropy_bounds(finite, vocab)
    problem_ids, problem, sequence, position = _layout(seqs)
    return Distributions(finite, top_ids, low, high, problem, sequence, position, problem_ids, exact=False)
