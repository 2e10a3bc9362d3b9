"""The anti-collapse battery (DESIGN §7), declared before training and run on the same probe prompts for the base
model and the trained model.

Self-distillation can raise pass@1 by collapsing the distribution: fewer distinct programs, repetitive or
truncated text, lost exploration. Each probe compares the trained model with the base model and raises an alert
with the numbers when a declared tolerance is exceeded:

- diversity: self-BLEU (BLEU-4 of each sampled generation against other generations; higher = less diverse),
  over all probe generations and within each prompt's samples; alert when it rises by more than 10 % (relative).
- repetition: the fraction of repeated 4-grams inside a generation; alert on a > 10 % relative rise.
- length: median and p95 of generation length (tokens when given, else whitespace words); alert when either moves
  by more than 25 % in either direction.
- exploration: pass@k falling (by more than `passk_drop_tol_pp`) while pass@1 rises.
- style: comment-line rate and docstring rate; alert on a > 50 % relative change that is also > 5 pp absolute.
- refusals / empty outputs: alert when their rate rises by more than 2 pp.
- out-of-domain probe (optional): alert when a score on an unrelated probe set drops by more than 2 pp.

BLEU is implemented here (n-gram precision with clipping, brevity penalty, +1 smoothing for n > 1) so the numbers
do not depend on an optional package; generations are tokenised as words and punctuation.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
_REFUSAL = re.compile(r"\b(I can(?:no|')t (?:help|assist|do that)|I'm sorry|I am sorry|as an AI|I am unable|"
                      r"I'm unable|cannot comply)\b", re.IGNORECASE)
_FENCE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class CollapseThresholds:
    self_bleu_rel: float = 0.10
    repetition_rel: float = 0.10
    length_rel: float = 0.25
    passk_drop_tol_pp: float = 1.0
    style_rel: float = 0.50
    style_min_abs_pp: float = 5.0
    refusal_abs_pp: float = 2.0
    empty_abs_pp: float = 2.0
    ood_drop_pp: float = 2.0


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


# ------------------------------------------------------------------------------------------------- metrics
def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(hyp: Sequence[str], refs: Sequence[Counter], ref_lens: Sequence[int], max_n: int = 4) -> float:
    """BLEU of one tokenised hypothesis against references given as per-order n-gram Counters (see self_bleu)."""
    if not hyp or not refs:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        counts = _ngrams(hyp, n)
        total = sum(counts.values())
        if total == 0:
            return 0.0
        clipped = sum(min(c, max(r[n].get(g, 0) for r in refs)) for g, c in counts.items())
        if n == 1:
            if clipped == 0:
                return 0.0
            log_p += math.log(clipped / total)
        else:
            log_p += math.log((clipped + 1) / (total + 1))
    closest = min(ref_lens, key=lambda r: (abs(r - len(hyp)), r))
    bp = 1.0 if len(hyp) > closest else math.exp(1 - closest / len(hyp))
    return bp * math.exp(log_p / max_n)


def self_bleu(texts: Sequence[str], max_n: int = 4, max_hyps: int = 100, max_refs: int = 20, seed: int = 0) -> float:
    """Mean BLEU of up to `max_hyps` generations against up to `max_refs` others (sampled with a fixed seed)."""
    toks = [tokenize(t) for t in texts]
    toks = [t for t in toks if t]
    if len(toks) < 2:
        return float("nan")
    rng = random.Random(seed)
    hyps = rng.sample(range(len(toks)), min(max_hyps, len(toks)))
    per_order = [{n: _ngrams(t, n) for n in range(1, max_n + 1)} for t in toks]
    scores = []
    for h in hyps:
        others = [i for i in range(len(toks)) if i != h]
        refs = rng.sample(others, min(max_refs, len(others)))
        scores.append(sentence_bleu(toks[h], [per_order[r] for r in refs], [len(toks[r]) for r in refs], max_n))
    return float(np.mean(scores))


def within_prompt_self_bleu(texts: Sequence[str], prompt_ids: Sequence[str], seed: int = 0,
                            max_prompts: int = 200) -> float:
    """Mean over prompts (with >= 2 samples) of self-BLEU among that prompt's samples."""
    groups: dict[str, list[str]] = defaultdict(list)
    for t, p in zip(texts, prompt_ids):
        groups[str(p)].append(t)
    ids = sorted(p for p, g in groups.items() if len(g) >= 2)
    ids = random.Random(seed).sample(ids, min(max_prompts, len(ids)))
    vals = [v for v in (self_bleu(groups[p], seed=seed, max_hyps=10, max_refs=10) for p in ids) if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def ngram_repetition(texts: Iterable[str], n: int = 4) -> float:
    """Mean over generations of the fraction of n-grams that repeat an earlier n-gram of the same generation."""
    vals = []
    for t in texts:
        grams = _ngrams(tokenize(t), n)
        total = sum(grams.values())
        if total:
            vals.append(1.0 - len(grams) / total)
    return float(np.mean(vals)) if vals else float("nan")


def _code_of(text: str) -> str:
    blocks = _FENCE_BLOCK.findall(text)
    return "\n".join(blocks) if blocks else text


def style_stats(texts: Sequence[str]) -> dict[str, float]:
    comment_lines = code_lines = docstrings = 0
    for t in texts:
        code = _code_of(t)
        lines = [ln.strip() for ln in code.splitlines() if ln.strip()]
        code_lines += len(lines)
        comment_lines += sum(1 for ln in lines if ln.startswith("#"))
        docstrings += int('"""' in code or "'''" in code)
    n = max(1, len(texts))
    return {"comment_line_rate": comment_lines / max(1, code_lines), "docstring_rate": docstrings / n}


def probe_stats(texts: Sequence[str], num_tokens: Sequence[int | None] | None = None,
                prompt_ids: Sequence[str] | None = None, seed: int = 0) -> dict[str, float]:
    """Every metric of the battery for one model's generations on the probe prompts."""
    lengths = [int(nt) if nt is not None else len(t.split()) for t, nt in
               zip(texts, num_tokens if num_tokens is not None else [None] * len(texts))]
    stats = {
        "num_generations": len(texts),
        "self_bleu": self_bleu(texts, seed=seed),
        "self_bleu_within_prompt": (within_prompt_self_bleu(texts, prompt_ids, seed=seed)
                                    if prompt_ids is not None else float("nan")),
        "repetition_4gram": ngram_repetition(texts),
        "length_median": float(np.median(lengths)) if lengths else float("nan"),
        "length_p95": float(np.quantile(lengths, 0.95)) if lengths else float("nan"),
        "length_unit": "tokens" if num_tokens is not None and all(x is not None for x in num_tokens) else "words",
        "refusal_rate": float(np.mean([bool(_REFUSAL.search(t)) for t in texts])) if texts else float("nan"),
        "empty_rate": float(np.mean([not t.strip() for t in texts])) if texts else float("nan"),
    }
    stats.update(style_stats(texts))
    return stats


# --------------------------------------------------------------------------------------------------- alerts
def _alert(probe: str, message: str, base: Any, model: Any, change: Any, threshold: Any) -> dict[str, Any]:
    return {"probe": probe, "message": message, "base": base, "model": model, "change": change,
            "threshold": threshold}


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _rel(base: float, model: float) -> float:
    return (model - base) / base if base else (math.inf if model > 0 else 0.0)


def run_battery(base: Mapping[str, Any], model: Mapping[str, Any], *,
                base_summary: Mapping[str, Any] | None = None, model_summary: Mapping[str, Any] | None = None,
                ood_base: float | None = None, ood_model: float | None = None,
                thresholds: CollapseThresholds = CollapseThresholds()) -> dict[str, Any]:
    """Compare `probe_stats` of the trained model with the base model's; returns {"ok", "alerts", ...}.

    base_summary/model_summary (results.summarize schema) enable the pass@k-vs-pass@1 probe; ood_base/ood_model
    are scores (fractions) on an optional out-of-domain probe set.
    """
    th = thresholds
    alerts: list[dict[str, Any]] = []
    for key, limit in (("self_bleu", th.self_bleu_rel), ("self_bleu_within_prompt", th.self_bleu_rel),
                       ("repetition_4gram", th.repetition_rel)):
        b, m = base.get(key), model.get(key)
        if _finite(b, m) and _rel(b, m) > limit:
            alerts.append(_alert(key, f"{key} rose {100 * _rel(b, m):+.1f}% vs base ({b:.4f} -> {m:.4f}); "
                                      f"tolerance +{100 * limit:.0f}%", b, m, _rel(b, m), limit))
    for key in ("length_median", "length_p95"):
        b, m = base.get(key), model.get(key)
        if _finite(b, m) and b > 0 and abs(m / b - 1) > th.length_rel:
            alerts.append(_alert(key, f"{key} drifted {100 * (m / b - 1):+.1f}% vs base ({b:.0f} -> {m:.0f} "
                                      f"{model.get('length_unit', '')}); tolerance ±{100 * th.length_rel:.0f}%",
                                 b, m, m / b - 1, th.length_rel))
    for key in ("comment_line_rate", "docstring_rate"):
        b, m = base.get(key), model.get(key)
        if _finite(b, m) and abs(m - b) * 100 > th.style_min_abs_pp and abs(_rel(b, m)) > th.style_rel:
            alerts.append(_alert(key, f"style probe {key} changed {100 * (m - b):+.1f} pp ({b:.3f} -> {m:.3f})",
                                 b, m, m - b, th.style_rel))
    for key, limit in (("refusal_rate", th.refusal_abs_pp), ("empty_rate", th.empty_abs_pp)):
        b, m = base.get(key), model.get(key)
        if _finite(b, m) and (m - b) * 100 > limit:
            alerts.append(_alert(key, f"{key} rose {100 * (m - b):+.1f} pp ({b:.3f} -> {m:.3f}); tolerance "
                                      f"+{limit:g} pp", b, m, m - b, limit))
    explore = _exploration(base_summary, model_summary, th.passk_drop_tol_pp)
    if explore is not None:
        alerts.append(explore)
    if ood_base is not None and ood_model is not None and (ood_base - ood_model) * 100 > th.ood_drop_pp:
        alerts.append(_alert("out_of_domain", f"out-of-domain probe fell {100 * (ood_model - ood_base):+.1f} pp "
                                              f"({ood_base:.3f} -> {ood_model:.3f})", ood_base, ood_model,
                             ood_model - ood_base, th.ood_drop_pp))
    return {"ok": not alerts, "alerts": alerts, "base": dict(base), "model": dict(model),
            "thresholds": asdict(th)}


def _exploration(base: Mapping[str, Any] | None, model: Mapping[str, Any] | None,
                 tol_pp: float) -> dict[str, Any] | None:
    if not base or not model:
        return None
    bk, mk = base.get("pass_at_k") or {}, model.get("pass_at_k") or {}
    common = sorted((int(k) for k in set(bk) & set(mk)), reverse=True)
    if "1" not in bk or "1" not in mk or not common or common[0] <= 1:
        return None
    k = str(common[0])
    b1, m1 = bk["1"]["estimate"], mk["1"]["estimate"]
    bkv, mkv = bk[k]["estimate"], mk[k]["estimate"]
    if m1 > b1 and (bkv - mkv) * 100 > tol_pp:
        return _alert("passk_vs_pass1", f"pass@1 rose {100 * (m1 - b1):+.1f} pp but pass@{k} fell "
                                        f"{100 * (mkv - bkv):+.1f} pp: the distribution is narrowing",
                      {"pass@1": b1, f"pass@{k}": bkv}, {"pass@1": m1, f"pass@{k}": mkv}, mkv - bkv, tol_pp)
    return None
