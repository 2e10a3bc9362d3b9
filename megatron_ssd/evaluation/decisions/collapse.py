"""The anti-collapse battery, declared before training and run on the same probe prompts for the base
model and the trained model.

Self-distillation can raise pass@1 by collapsing the distribution: fewer distinct programs, repetitive or
truncated text, lost exploration. Each probe compares the trained model with the base model; its change gets a
bootstrap interval over prompts (paired when both arms ran the same prompts), and it raises an alert, with the
numbers, only when the whole interval lies beyond the declared tolerance (so noise alone alarms at most
(1 − ci_level)/2 of the time per probe; tests/evaluation/test_calibration.py measures it):

- diversity: self-BLEU (BLEU-4 of each sampled generation against other generations; higher = less diverse),
  over all probe generations and within each prompt's samples; alert when it rises by more than 10 % (relative).
- repetition: the fraction of repeated 4-grams inside a generation; alert on a > 10 % relative rise.
- length: median and p95 of generation length (tokens when given, else whitespace words); alert when either moves
  by more than 25 % in either direction.
- exploration: pass@k falling (by more than `passk_drop_tol_pp`, on the paired pass@k interval) while pass@1 rises.
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

from ..scoring import paired_passk
from ..statistics.intervals import MIN_PAIRED_WIDTH, paired_interval

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


def self_bleu_scores(texts: Sequence[str], max_n: int = 4, max_hyps: int = 100, max_refs: int = 20,
                     seed: int = 0) -> dict[int, float]:
    """{index into texts: BLEU of that generation against up to `max_refs` others} for up to `max_hyps` sampled
    (with a fixed seed) non-empty generations."""
    toks_all = [tokenize(t) for t in texts]
    kept = [i for i, t in enumerate(toks_all) if t]
    if len(kept) < 2:
        return {}
    toks = [toks_all[i] for i in kept]
    rng = random.Random(seed)
    hyps = rng.sample(range(len(toks)), min(max_hyps, len(toks)))
    per_order = [{n: _ngrams(t, n) for n in range(1, max_n + 1)} for t in toks]
    scores = {}
    for h in hyps:
        others = [i for i in range(len(toks)) if i != h]
        refs = rng.sample(others, min(max_refs, len(others)))
        scores[kept[h]] = sentence_bleu(toks[h], [per_order[r] for r in refs], [len(toks[r]) for r in refs], max_n)
    return scores


def self_bleu(texts: Sequence[str], max_n: int = 4, max_hyps: int = 100, max_refs: int = 20, seed: int = 0) -> float:
    """Mean BLEU of up to `max_hyps` generations against up to `max_refs` others (sampled with a fixed seed)."""
    scores = self_bleu_scores(texts, max_n, max_hyps, max_refs, seed)
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def within_prompt_self_bleu_by_prompt(texts: Sequence[str], prompt_ids: Sequence[str], seed: int = 0,
                                     max_prompts: int = 200) -> dict[str, float]:
    """{prompt: self-BLEU among that prompt's samples} for up to `max_prompts` prompts with >= 2 samples."""
    groups: dict[str, list[str]] = defaultdict(list)
    for t, p in zip(texts, prompt_ids):
        groups[str(p)].append(t)
    ids = sorted(p for p, g in groups.items() if len(g) >= 2)
    ids = random.Random(seed).sample(ids, min(max_prompts, len(ids)))
    vals = {p: self_bleu(groups[p], seed=seed, max_hyps=10, max_refs=10) for p in ids}
    return {p: v for p, v in vals.items() if not math.isnan(v)}


def within_prompt_self_bleu(texts: Sequence[str], prompt_ids: Sequence[str], seed: int = 0,
                            max_prompts: int = 200) -> float:
    """Mean over prompts (with >= 2 samples) of self-BLEU among that prompt's samples."""
    vals = within_prompt_self_bleu_by_prompt(texts, prompt_ids, seed, max_prompts)
    return float(np.mean(list(vals.values()))) if vals else float("nan")


def repetition_of(text: str, n: int = 4) -> float | None:
    """Fraction of n-grams that repeat an earlier n-gram of the same generation (None without any n-gram)."""
    grams = _ngrams(tokenize(text), n)
    total = sum(grams.values())
    return 1.0 - len(grams) / total if total else None


def ngram_repetition(texts: Iterable[str], n: int = 4) -> float:
    """Mean over generations of the fraction of n-grams that repeat an earlier n-gram of the same generation."""
    vals = [v for v in (repetition_of(t, n) for t in texts) if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _code_of(text: str) -> str:
    blocks = _FENCE_BLOCK.findall(text)
    return "\n".join(blocks) if blocks else text


def _style_counts(text: str) -> tuple[int, int, int]:
    """(comment lines, non-blank code lines, has a docstring) of one generation's code."""
    code = _code_of(text)
    lines = [ln.strip() for ln in code.splitlines() if ln.strip()]
    return sum(1 for ln in lines if ln.startswith("#")), len(lines), int('"""' in code or "'''" in code)


def style_stats(texts: Sequence[str]) -> dict[str, float]:
    counts = [_style_counts(t) for t in texts]
    comment_lines, code_lines, docstrings = (sum(c[i] for c in counts) for i in range(3))
    n = max(1, len(texts))
    return {"comment_line_rate": comment_lines / max(1, code_lines), "docstring_rate": docstrings / n}


def probe_stats(texts: Sequence[str], num_tokens: Sequence[int | None] | None = None,
                prompt_ids: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Every metric of the battery for one model's generations on the probe prompts, plus `per_prompt`: the
    per-prompt sums the battery resamples for its intervals (each generation is its own unit without prompt ids).
    """
    lengths = [int(nt) if nt is not None else len(t.split()) for t, nt in
               zip(texts, num_tokens if num_tokens is not None else [None] * len(texts))]
    units = [str(p) for p in prompt_ids] if prompt_ids is not None else [f"#{i}" for i in range(len(texts))]
    bleu = self_bleu_scores(texts, seed=seed)
    within = within_prompt_self_bleu_by_prompt(texts, prompt_ids, seed=seed) if prompt_ids is not None else {}
    stats: dict[str, Any] = {
        "num_generations": len(texts),
        "self_bleu": float(np.mean(list(bleu.values()))) if bleu else float("nan"),
        "self_bleu_within_prompt": float(np.mean(list(within.values()))) if within else float("nan"),
        "repetition_4gram": ngram_repetition(texts),
        "length_median": float(np.median(lengths)) if lengths else float("nan"),
        "length_p95": float(np.quantile(lengths, 0.95)) if lengths else float("nan"),
        "length_unit": "tokens" if num_tokens is not None and all(x is not None for x in num_tokens) else "words",
        "refusal_rate": float(np.mean([bool(_REFUSAL.search(t)) for t in texts])) if texts else float("nan"),
        "empty_rate": float(np.mean([not t.strip() for t in texts])) if texts else float("nan"),
    }
    stats.update(style_stats(texts))
    per: dict[str, dict[str, Any]] = {}
    for i, (text, unit) in enumerate(zip(texts, units)):
        row = per.setdefault(unit, {key: 0.0 for key in _SUM_KEYS} | {"lengths": []})
        rep = repetition_of(text)
        comments, code_lines, docstring = _style_counts(text)
        row["generations"] += 1
        row["bleu_sum"] += bleu.get(i, 0.0)
        row["bleu_count"] += int(i in bleu)
        row["rep_sum"] += rep or 0.0
        row["rep_count"] += int(rep is not None)
        row["refusals"] += int(bool(_REFUSAL.search(text)))
        row["empty"] += int(not text.strip())
        row["comment_lines"] += comments
        row["code_lines"] += code_lines
        row["docstrings"] += docstring
        row["lengths"].append(lengths[i])
    for unit, value in within.items():
        per[unit]["within_bleu_sum"] = value
        per[unit]["within_bleu_count"] = 1.0
    stats["per_prompt"] = per
    return stats


_SUM_KEYS = ("generations", "bleu_sum", "bleu_count", "within_bleu_sum", "within_bleu_count", "rep_sum",
             "rep_count", "refusals", "empty", "comment_lines", "code_lines", "docstrings")


# --------------------------------------------------------------------------------------------------- alerts
_RATIOS = {  # metric -> (numerator, denominator) of per-prompt sums; resampling prompts resamples both
    "self_bleu": ("bleu_sum", "bleu_count"),
    "self_bleu_within_prompt": ("within_bleu_sum", "within_bleu_count"),
    "repetition_4gram": ("rep_sum", "rep_count"),
    "refusal_rate": ("refusals", "generations"),
    "empty_rate": ("empty", "generations"),
    "comment_line_rate": ("comment_lines", "code_lines"),
    "docstring_rate": ("docstrings", "generations"),
}
_QUANTILES = {"length_median": 0.5, "length_p95": 0.95}


def _alert(probe: str, message: str, base: Any, model: Any, change: Any, threshold: Any,
           ci: tuple[float, float] | None = None) -> dict[str, Any]:
    return {"probe": probe, "message": message, "base": base, "model": model, "change": change,
            "threshold": threshold, "ci_low": None if ci is None else ci[0], "ci_high": None if ci is None else ci[1]}


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _rel(base: float, model: float) -> float:
    return (model - base) / base if base else (math.inf if model > 0 else 0.0)


def _rel_array(base: np.ndarray, model: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, (model - base) / np.where(base > 0, base, 1.0), np.where(model > 0, np.inf, 0.0))


class _Replicates:
    """Each metric of one arm recomputed on prompt-resampled copies of its per-prompt sums (a weight matrix)."""

    def __init__(self, per_prompt: Mapping[str, Mapping[str, Any]], units: Sequence[str], weights: np.ndarray):
        self.weights = weights  # (replicates, units): how often each prompt was drawn
        self.sums = {key: np.array([float(per_prompt[u].get(key, 0.0)) for u in units]) for key in _SUM_KEYS}
        self.lengths = [np.asarray(per_prompt[u].get("lengths", []), dtype=np.float64) for u in units]

    def metric(self, key: str) -> np.ndarray:
        if key in _QUANTILES:
            return self._quantile(_QUANTILES[key])
        num, den = _RATIOS[key]
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.weights @ self.sums[num]) / (self.weights @ self.sums[den])

    def _quantile(self, q: float) -> np.ndarray:
        values = np.concatenate(self.lengths) if self.lengths else np.zeros(0)
        if not values.size:
            return np.full(self.weights.shape[0], np.nan)
        owner = np.concatenate([np.full(len(x), i) for i, x in enumerate(self.lengths)])
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(self.weights[:, owner[order]], axis=1)
        pos = np.array([np.searchsorted(row, q * row[-1]) for row in cum])
        return values[order][np.minimum(pos, values.size - 1)]


def _weights(units: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    draws = rng.integers(0, units, size=(samples, units))
    return np.stack([np.bincount(row, minlength=units) for row in draws]).astype(np.float64)


def _replicates(base: Mapping[str, Any], model: Mapping[str, Any], samples: int,
                seed: int) -> tuple[_Replicates, _Replicates, str] | None:
    """Prompt-resampled replicates of both arms: paired (same draws) when both ran the same prompts."""
    bp, mp = base.get("per_prompt"), model.get("per_prompt")
    if not bp or not mp:
        return None
    rng = np.random.default_rng(seed)
    if set(bp) == set(mp):
        units = sorted(bp)
        w = _weights(len(units), samples, rng)
        return _Replicates(bp, units, w), _Replicates(mp, units, w), f"paired bootstrap over {len(units)} prompts"
    bu, mu = sorted(bp), sorted(mp)
    return (_Replicates(bp, bu, _weights(len(bu), samples, rng)), _Replicates(mp, mu, _weights(len(mu), samples, rng)),
            f"bootstrap over prompts ({len(bu)} base, {len(mu)} model; not paired)")


def _ci(draws: np.ndarray, ci_level: float) -> tuple[float, float] | None:
    draws = draws[~np.isnan(draws)]
    if not draws.size:
        return None
    alpha = (1.0 - ci_level) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha], method="inverted_cdf")
    return float(lo), float(hi)


def _rate_difference_interval(base: Mapping[str, Any], model: Mapping[str, Any], key: str,
                              ci_level: float) -> tuple[float, float] | None:
    """A score interval (MOVER over prompts) for the change of a rate probe, when both arms ran the same prompts.

    Rates such as refusals and empty outputs are usually 0 in both arms, where the bootstrap interval collapses to
    [0, 0] and claims a certainty the data do not have; there (only there) the score interval, which keeps its
    width, replaces it. Elsewhere the bootstrap stays: it is the more powerful of the two at these sizes."""
    bp, mp = base.get("per_prompt"), model.get("per_prompt")
    if not bp or not mp or set(bp) != set(mp):
        return None
    num, den = _RATIOS[key]
    units = sorted(bp)
    nb, db = (np.array([float(bp[u].get(k, 0.0)) for u in units]) for k in (num, den))
    nm, dm = (np.array([float(mp[u].get(k, 0.0)) for u in units]) for k in (num, den))
    keep = (db > 0) & (dm > 0)
    if not keep.any():
        return None
    per = max(1.0, float(min(db[keep].min(), dm[keep].min())))
    return paired_interval(nb[keep] / db[keep], nm[keep] / dm[keep], ci_level, per)


def run_battery(base: Mapping[str, Any], model: Mapping[str, Any], *,
                base_summary: Mapping[str, Any] | None = None, model_summary: Mapping[str, Any] | None = None,
                ood_base: float | None = None, ood_model: float | None = None,
                thresholds: CollapseThresholds = CollapseThresholds(), ci_level: float | None = None,
                bootstrap_samples: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Compare `probe_stats` of the trained model with the base model's; returns {"ok", "alerts", "probes", ...}.

    Each probe's change gets a percentile-bootstrap interval over prompts (paired when both arms ran the same
    prompts), and alarms only when the whole interval lies beyond the declared tolerance: noise alone alarms at
    most (1 − ci_level)/2 of the time. Stats without `per_prompt` (older files) fall back to the point estimate,
    marked in `probes[...]["method"]`. CI settings default to model_summary's `bootstrap` block, else 0.95 / 1000 /
    0. base_summary/model_summary (`scoring.summarize` schema) enable the pass@k-vs-pass@1 probe; ood_base/ood_model
    are scores (fractions) on an optional out-of-domain probe set (point estimates: no per-prompt data).
    """
    cfg = (model_summary or {}).get("bootstrap") or {}
    ci_level = float(ci_level if ci_level is not None else cfg.get("ci_level", 0.95))
    samples = int(bootstrap_samples if bootstrap_samples is not None else cfg.get("samples", 1000))
    seed = int(seed if seed is not None else cfg.get("seed", 0))
    th = thresholds
    reps = _replicates(base, model, samples, seed)
    method = reps[2] if reps else "point estimate (no per-prompt data)"
    probes: dict[str, dict[str, Any]] = {}
    alerts: list[dict[str, Any]] = []

    def interval(key: str, change) -> tuple[float, float] | None:
        if reps is None:
            return None
        return _ci(np.asarray(change(reps[0].metric(key), reps[1].metric(key)), dtype=np.float64), ci_level)

    def record(key: str, b: Any, m: Any, change: float, ci: tuple[float, float] | None, tolerance: Any,
               beyond) -> bool:
        lo, hi = ci if ci is not None else (change, change)
        alarm = bool(beyond(lo, hi))
        probes[key] = {"base": b, "model": m, "change": change, "ci_low": lo, "ci_high": hi, "tolerance": tolerance,
                       "alarm": alarm, "method": method if ci is not None else "point estimate"}
        return alarm

    def ci_text(ci: tuple[float, float] | None, scale: float, unit: str) -> str:
        return "" if ci is None else f", {100 * ci_level:g}% CI [{scale * ci[0]:+.1f}, {scale * ci[1]:+.1f}]{unit}"

    for key, limit in (("self_bleu", th.self_bleu_rel), ("self_bleu_within_prompt", th.self_bleu_rel),
                       ("repetition_4gram", th.repetition_rel)):
        b, m = base.get(key), model.get(key)
        if not _finite(b, m):
            continue
        ci = interval(key, _rel_array)
        if record(key, b, m, _rel(b, m), ci, limit, lambda lo, hi, limit=limit: lo > limit):
            alerts.append(_alert(key, f"{key} rose {100 * _rel(b, m):+.1f}% vs base ({b:.4f} -> {m:.4f}"
                                      f"{ci_text(ci, 100, '%')}); tolerance +{100 * limit:.0f}%",
                                 b, m, _rel(b, m), limit, ci))
    for key in ("length_median", "length_p95"):
        b, m = base.get(key), model.get(key)
        if not (_finite(b, m) and b > 0):
            continue
        ci = interval(key, lambda x, y: y / x - 1)
        tol = th.length_rel
        if record(key, b, m, m / b - 1, ci, tol, lambda lo, hi: lo > tol or hi < -tol):
            alerts.append(_alert(key, f"{key} drifted {100 * (m / b - 1):+.1f}% vs base ({b:.0f} -> {m:.0f} "
                                      f"{model.get('length_unit', '')}{ci_text(ci, 100, '%')}); tolerance "
                                      f"±{100 * tol:.0f}%", b, m, m / b - 1, tol, ci))
    for key in ("comment_line_rate", "docstring_rate"):
        b, m = base.get(key), model.get(key)
        if not _finite(b, m):
            continue
        ci_abs, ci_rel = interval(key, lambda x, y: y - x), interval(key, _rel_array)
        lo_a, hi_a = ci_abs if ci_abs is not None else (m - b, m - b)
        lo_r, hi_r = ci_rel if ci_rel is not None else (_rel(b, m), _rel(b, m))
        alarm = ((100 * lo_a > th.style_min_abs_pp and lo_r > th.style_rel) or
                 (100 * hi_a < -th.style_min_abs_pp and hi_r < -th.style_rel))
        record(key, b, m, m - b, ci_abs, th.style_rel, lambda lo, hi, alarm=alarm: alarm)
        if alarm:
            alerts.append(_alert(key, f"style probe {key} changed {100 * (m - b):+.1f} pp ({b:.3f} -> {m:.3f}"
                                      f"{ci_text(ci_abs, 100, ' pp')})", b, m, m - b, th.style_rel, ci_abs))
    for key, limit in (("refusal_rate", th.refusal_abs_pp), ("empty_rate", th.empty_abs_pp)):
        b, m = base.get(key), model.get(key)
        if not _finite(b, m):
            continue
        ci = interval(key, lambda x, y: y - x)
        if ci is None or ci[1] - ci[0] < MIN_PAIRED_WIDTH:  # no variation (0 in both arms): a score interval
            ci = _rate_difference_interval(base, model, key, ci_level) or ci
        if record(key, b, m, m - b, ci, limit, lambda lo, hi, limit=limit: 100 * lo > limit):
            alerts.append(_alert(key, f"{key} rose {100 * (m - b):+.1f} pp ({b:.3f} -> {m:.3f}"
                                      f"{ci_text(ci, 100, ' pp')}); tolerance +{limit:g} pp", b, m, m - b, limit, ci))
    explore = _exploration(base_summary, model_summary, th.passk_drop_tol_pp, ci_level, samples, seed)
    if explore is not None:
        probes["passk_vs_pass1"] = explore["probe"]
        if explore["alert"] is not None:
            alerts.append(explore["alert"])
    if ood_base is not None and ood_model is not None and (ood_base - ood_model) * 100 > th.ood_drop_pp:
        alerts.append(_alert("out_of_domain", f"out-of-domain probe fell {100 * (ood_model - ood_base):+.1f} pp "
                                              f"({ood_base:.3f} -> {ood_model:.3f}; point estimate)", ood_base,
                             ood_model, ood_model - ood_base, th.ood_drop_pp))
    strip = lambda stats: {k: v for k, v in stats.items() if k != "per_prompt"}  # noqa: E731
    return {"ok": not alerts, "alerts": alerts, "probes": probes, "base": strip(base), "model": strip(model),
            "thresholds": asdict(th), "ci_level": ci_level, "bootstrap": {"samples": samples, "seed": seed},
            "method": method}


def _exploration(base: Mapping[str, Any] | None, model: Mapping[str, Any] | None, tol_pp: float, ci_level: float,
                 samples: int, seed: int) -> dict[str, Any] | None:
    """pass@k falling while pass@1 rises, on the paired pass@k interval: alarm when the whole interval of the
    pass@k change lies below −tol_pp (and pass@1 rose)."""
    if not base or not model:
        return None
    bk, mk = base.get("pass_at_k") or {}, model.get("pass_at_k") or {}
    common = sorted((int(k) for k in set(bk) & set(mk)), reverse=True)
    if "1" not in bk or "1" not in mk or not common or common[0] <= 1:
        return None
    k = common[0]
    b1, m1 = bk["1"]["estimate"], mk["1"]["estimate"]
    bkv, mkv = bk[str(k)]["estimate"], mk[str(k)]["estimate"]
    try:
        paired = paired_passk(base, model, k, ci_level, samples, seed)
        lo, hi, how = paired["ci_low"], paired["ci_high"], paired["ci_method"]
    except Exception:  # summaries without per_problem counts (older files): point estimate only
        lo = hi = mkv - bkv
        how = "point estimate"
    alarm = m1 > b1 and 100 * hi < -tol_pp
    probe = {"base": {"pass@1": b1, f"pass@{k}": bkv}, "model": {"pass@1": m1, f"pass@{k}": mkv},
             "change": mkv - bkv, "ci_low": lo, "ci_high": hi, "tolerance": tol_pp, "alarm": alarm, "method": how}
    alert = None
    if alarm:
        alert = _alert("passk_vs_pass1", f"pass@1 rose {100 * (m1 - b1):+.1f} pp but pass@{k} fell "
                                         f"{100 * (mkv - bkv):+.1f} pp ({100 * ci_level:g}% CI [{100 * lo:+.1f}, "
                                         f"{100 * hi:+.1f}] pp): the distribution is narrowing",
                       probe["base"], probe["model"], mkv - bkv, tol_pp, (lo, hi))
    return {"probe": probe, "alert": alert}
