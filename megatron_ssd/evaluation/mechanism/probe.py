"""The probe end to end: both models' distributions on the same completions -> the eval/mechanism.json record.

`probe` is pure (distributions in, record out); `run_probe` adds the declared subsample of the eval samples and the
extraction (`extract`), and is what the `evaluate` stage and `ssd mechanism` call. The record holds the settings
(thresholds, truncation, subsample, backend), position shares, the raw base-vs-tuned quantities (tail mass and mass
outside the training top-k at locks, entropy and plausible continuations at forks, each a paired bootstrap over
problems), the frontier test (`frontier.frontier_test`) with the decode-only arm and the base at T = 1 marked on it,
the split-halves null check, examples, and the one-line reading the report prints.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .distributions import Distributions
from .extract import Selection, TeacherForced, exact_distributions, sequences_from_folders, vllm_distributions
from .frontier import (BEYOND, INDISTINGUISHABLE, INSIDE, NO_TAIL, TAIL_FLOOR, frontier_test, null_check,
                       paired_deltas, per_problem_mean)
from .quantities import CLASS_NAMES, FORK, LOCK, Thresholds, Truncation, classify, decode_is_exact, raw_quantities

SCHEMA_VERSION = 1


def probe(base: Distributions, tuned: Distributions, *, m: Any, trunc: Truncation, ci_level: float,
          samples: int, decode_only_temperature: float | None, seqs: Sequence[TeacherForced] | None = None,
          token_text: Callable[[int], str] | None = None) -> dict[str, Any]:
    """The record of eval/mechanism.json for distributions of the same positions under both models.
    `m`: an `eval.mechanism` config (thresholds, grid, min_excess, examples, seed)."""
    if len(base) != len(tuned) or not np.array_equal(base.position, tuned.position):
        raise ValueError("the base and tuned distributions must cover the same positions")
    t = Thresholds.from_config(m)
    classes = classify(base, t)
    kwargs = dict(temperatures=list(m.temperatures), trunc=trunc, plausible_p=t.plausible_p,
                  min_excess=m.min_excess, ci_level=ci_level, samples=samples, seed=m.seed)
    extra = {"base": 1.0}
    if decode_only_temperature is not None:
        extra["decode-only"] = float(decode_only_temperature)
    test = frontier_test(base, classes, tuned, classes, point_temperature=m.tuned_temperature, extra_points=extra,
                         **kwargs)
    null = null_check(base, classes, **kwargs)
    record = {
        "schema_version": SCHEMA_VERSION,
        "settings": {"thresholds": asdict(t), "truncation": asdict(trunc), "top_k_kept": base.k,
                     "temperatures": list(m.temperatures), "tuned_temperature": m.tuned_temperature,
                     "min_excess": m.min_excess, "ci_level": ci_level, "bootstrap_samples": samples, "seed": m.seed},
        "exact": bool(base.exact and tuned.exact),
        "frontier_exact": decode_is_exact(trunc, base.k),
        "positions": _shares(classes, base, seqs),
        "problems": len(base.problem_ids),
        "raw": _raw(base, tuned, classes, t, trunc, ci_level, samples, m.seed),
        "frontier_test": test,
        "null_check": {k: null.get(k) for k in ("reading", "excess", "problems_used", "note")},
        "examples": _examples(base, tuned, classes, seqs, token_text, int(m.examples)),
    }
    record["sentence"] = sentence(test, ci_level)
    return record


def _shares(classes: np.ndarray, base: Distributions, seqs: Sequence[TeacherForced] | None) -> dict[str, Any]:
    counts = {CLASS_NAMES[c]: int((classes == c).sum()) for c in CLASS_NAMES}
    out: dict[str, Any] = {"total": len(classes), **counts,
                           "shares": {k: v / max(1, len(classes)) for k, v in counts.items()}}
    if seqs:
        source = np.array([seqs[i].source for i in base.sequence])
        out["by_source"] = {s: {CLASS_NAMES[c]: int(((classes == c) & (source == s)).sum()) for c in CLASS_NAMES}
                            for s in sorted(set(source.tolist()))}
    return out


def _raw(base: Distributions, tuned: Distributions, classes: np.ndarray, t: Thresholds, trunc: Truncation,
         ci_level: float, samples: int, seed: int) -> dict[str, Any]:
    """Base vs tuned at temperature 1 without truncation: lock tails, fork entropy and plausible continuations."""
    qb, qt = raw_quantities(base, t, trunc.top_k), raw_quantities(tuned, t, trunc.top_k)
    num = len(base.problem_ids)
    lock, fork = classes == LOCK, classes == FORK
    where = {"tail": lock, "outside_top_k": lock, "entropy_low": fork, "entropy_high": fork, "plausible": fork}

    def means(q):
        return {f"{'lock' if where[k] is lock else 'fork'}_{k}": per_problem_mean(q[k], where[k], base.problem, num)
                for k in where}

    out = paired_deltas(means(qb), means(qt), ci_level, samples, seed)
    agree = (base.ids[:, 0] == tuned.ids[:, 0])[lock]
    out["lock_top1_agreement"] = float(agree.mean()) if agree.size else None
    return out


def _examples(base: Distributions, tuned: Distributions, classes: np.ndarray, seqs: Sequence[TeacherForced] | None,
              token_text: Callable[[int], str] | None, count: int) -> dict[str, list]:
    """Locks where the tuned model cut the most tail, and the base's widest forks, with context and top tokens."""
    if not seqs or count <= 0:
        return {"lock": [], "fork": []}
    text = token_text or (lambda i: f"<{i}>")
    pb, pt = np.exp(base.logp), np.exp(tuned.logp)
    lock, fork = np.flatnonzero(classes == LOCK), np.flatnonzero(classes == FORK)
    picks = {"lock": lock[np.argsort(-((1 - pb[lock, 0]) - (1 - pt[lock, 0])), kind="stable")],
             "fork": fork[np.argsort(-base.entropy_low[fork], kind="stable")]}

    def top(p, ids, i):
        return [[text(int(ids[i, j])), round(float(p[i, j]), 4)] for j in range(min(3, p.shape[1]))]

    out = {}
    for name, rows in picks.items():
        out[name], seen = [], set()
        for i in rows:
            s = seqs[int(base.sequence[i])]
            ctx = s.ids[max(0, int(base.position[i]) - 12): int(base.position[i])]
            if tuple(ctx) in seen:  # two samples of one prompt often open alike: show distinct contexts
                continue
            seen.add(tuple(ctx))
            out[name].append({"problem_id": s.problem_id, "source": s.source, "sample_idx": s.sample_idx,
                              "context": "".join(text(c) for c in ctx), "base_top": top(pb, base.ids, i),
                              "tuned_top": top(pt, tuned.ids, i)})
            if len(out[name]) == count:
                break
    return out


def sentence(test: Mapping[str, Any], ci_level: float) -> str:
    """The report's one-line reading of the frontier test."""
    x, reading = test.get("excess") or {}, test.get("reading")
    level = f"{100 * ci_level:g}%"
    if reading in (BEYOND, INSIDE, INDISTINGUISHABLE):
        front_tail = test["point"]["lock_tail"]["estimate"] + x["estimate"]
        facts = (f"at the fork entropy the base reaches at T≈{x['matched_temperature']:.2f}, SSD's lock tail is "
                 f"{test['point']['lock_tail']['estimate']:.5f} vs the base's {front_tail:.5f} (tail excess "
                 f"{x['estimate']:+.5f}, {level} CI [{x['ci_low']:+.5f}, {x['ci_high']:+.5f}], "
                 f"{test['problems_used']} problems)")
        if reading == BEYOND:
            return f"SSD moves off the temperature frontier: {facts}; no temperature of the base does that."
        if reading == INSIDE:
            return f"SSD is worse than a temperature change: {facts}."
        return (f"SSD's change is indistinguishable from a temperature change: {facts}; the interval does not clear "
                f"±{test['min_excess']:g}.")
    if reading == NO_TAIL:
        return (f"SSD's point cannot be told from a temperature change at this decoding: {test.get('note')}, so "
                f"there is no distractor tail to compare ({_curve_summary(test)}).")
    return ("SSD's point cannot be placed against the temperature frontier: "
            f"{test.get('note') or 'its fork entropy lies outside the grid of eval.mechanism.temperatures'}.")


def _curve_summary(test: Mapping[str, Any]) -> str:
    """Where along the grid the tuned curve has a tail to compare, and its largest excess there (no interval)."""
    rows = [r for r in test.get("tuned_curve") or [] if r["excess"] is not None  # a tail on either side
            and max(r["lock_tail"], r["lock_tail"] + r["excess"]) > TAIL_FLOOR]
    if not rows:
        return "nor at any temperature of the grid"
    best = max(rows, key=lambda r: abs(r["excess"]))
    return (f"where a tail remains, T = {rows[0]['temperature']:g}…{rows[-1]['temperature']:g}, SSD's curve's "
            f"largest tail excess is {best['excess']:+.5f} at T = {best['temperature']:g}, a point estimate: rerun with "
            f"eval.mechanism.tuned_temperature in that range for its interval")


def run_probe(base_model: str | Path, tuned_model: str | Path, sample_folders: Mapping[str, Path], *, m: Any,
              trunc: Truncation, ci_level: float, samples: int, decode_only_temperature: float | None,
              load_engine: Callable[[str | Path], Any] | None = None) -> dict[str, Any]:
    """Select the declared subsample of `sample_folders` (label -> samples/ folder), extract both models'
    distributions with `m.backend` (exact: transformers; vllm: `load_engine(path)` gives a VLLMEngine) and return
    the record, with the subsample and the seconds each part took."""
    started = time.perf_counter()
    sel = Selection.from_config(m)
    seqs = sequences_from_folders(sample_folders, sel)
    timing = {}
    dists = {}
    token_text = None
    for name, path in (("base", base_model), ("tuned", tuned_model)):
        t0 = time.perf_counter()
        if m.backend == "exact":
            dists[name] = exact_distributions(path, seqs, m.top_k)
        elif m.backend == "vllm":
            if load_engine is None:
                raise ValueError("eval.mechanism.backend=vllm needs an engine loader")
            engine = load_engine(path)
            dists[name] = vllm_distributions(engine, seqs, m.top_k)
            token_text = token_text or _decoder(getattr(engine, "tokenizer", None))
        else:
            raise ValueError(f"eval.mechanism.backend={m.backend!r}: choose exact or vllm")
        timing[f"{name}_s"] = round(time.perf_counter() - t0, 2)
    if token_text is None:
        token_text = _decoder(_tokenizer(base_model))
    record = probe(dists["base"], dists["tuned"], m=m, trunc=trunc, ci_level=ci_level, samples=samples,
                   decode_only_temperature=decode_only_temperature, seqs=seqs, token_text=token_text)
    record["settings"].update(backend=m.backend, subsample=asdict(sel),
                              sources=sorted(sample_folders), sequences=len(seqs))
    record["models"] = {"base": str(base_model), "tuned": str(tuned_model)}
    timing["total_s"] = round(time.perf_counter() - started, 2)
    record["timing"] = timing
    return record


def _tokenizer(path: str | Path):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception:  # examples then show token ids; the numbers do not depend on it
        return None


def _decoder(tokenizer) -> Callable[[int], str] | None:
    if tokenizer is None:
        return None
    return lambda i: tokenizer.decode([i])
