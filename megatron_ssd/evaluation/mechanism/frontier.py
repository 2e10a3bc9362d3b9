"""The temperature frontier and SSD's point against it, with a paired bootstrap over problems.

Per problem: the mean distractor tail (1 − p(top-1)) over its lock positions and the mean entropy over its fork
positions, of a decoding distribution (`quantities.decode`: a temperature with the training truncation). The
frontier is the base model's (fork entropy, lock tail) at each temperature of a grid: the curve every decode-only
change of temperature moves along. The tuned model's point is its own (fork entropy, lock tail) at
`tuned_temperature` with the same truncation, on the same positions.

The test statistic is the **tail excess**: the frontier's lock tail at the temperature whose fork entropy equals the
tuned model's (linear interpolation on the grid), minus the tuned model's lock tail. Positive: the tuned model has
less tail at its locks than any temperature of the base that keeps the same fork entropy, i.e. it lies beyond the
curve (the paper's claim); zero: a temperature change explains it; negative: worse than a temperature change. Its
interval is the percentile bootstrap over problems: every resample draws the same problems for every column (the
frontier at each temperature and the tuned point), via `statistics.bootstrap.bootstrap_means` with one seed
(`joint_bootstrap_means`), so the frontier and the point move together and per-problem difficulty cancels.

Reading (`reading`): `beyond` when the interval's low end clears `min_excess`, `inside` when its high end is below
−`min_excess`, `out_of_range` when the tuned fork entropy lies outside the grid's, `no_tail` when the truncation
removes every lock's tail on both sides there (a top_p below the locks' top-1 probability does that near T = 1: the
test then has nothing to compare, which is not evidence of "no effect"), else `indistinguishable`. The tuned model's
own curve over the same grid (`tuned_curve`, point estimates with the excess at each temperature) shows where a
tail remains to compare. Alarm rates under the null (base against itself on split halves) and power against a
lock-only sharpening are measured in `calibration` (tests/evaluation/mechanism/).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..statistics.bootstrap import bootstrap_means, percentile_ci
from .distributions import Distributions
from .quantities import FORK, LOCK, Truncation, decode, entropy, plausible, tail

BEYOND, INDISTINGUISHABLE, INSIDE, OUT_OF_RANGE = "beyond", "indistinguishable", "inside", "out_of_range"
NO_TAIL = "no_tail"  # the truncation leaves no lock tail on either side at the compared decodings: nothing to beat
TAIL_FLOOR = 1e-12


@dataclass
class Side:
    """Per-problem means [P] (NaN where the problem has no position of the class) of one model at one decoding."""
    lock_tail: np.ndarray
    fork_entropy: np.ndarray
    fork_plausible: np.ndarray


def per_problem_mean(values: np.ndarray, mask: np.ndarray, problem: np.ndarray, num_problems: int) -> np.ndarray:
    """Mean of `values[mask]` per problem; NaN for problems without a masked position."""
    total = np.bincount(problem[mask], weights=values[mask], minlength=num_problems)
    count = np.bincount(problem[mask], minlength=num_problems)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def side(d: Distributions, classes: np.ndarray, temperature: float, trunc: Truncation, plausible_p: float) -> Side:
    """One model's per-problem lock tail, fork entropy and fork plausible count at one decoding."""
    q = decode(d.logp, temperature, trunc)
    num = len(d.problem_ids)
    lock, fork = classes == LOCK, classes == FORK
    return Side(per_problem_mean(tail(q), lock, d.problem, num),
                per_problem_mean(entropy(q), fork, d.problem, num),
                per_problem_mean(plausible(q, plausible_p).astype(np.float64), fork, d.problem, num))


def joint_bootstrap_means(columns: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """[samples, C] means of resampled problems (rows of `columns` [P, C]), the same problems for every column:
    `bootstrap_means` draws its indices from `seed` and the number of values alone, so one seed per call gives
    paired resamples of every column."""
    return np.stack([bootstrap_means(columns[:, c], samples, seed) for c in range(columns.shape[1])], axis=1)


def excess_at(front_entropy: np.ndarray, front_tail: np.ndarray, temps: np.ndarray, point_entropy: float,
              point_tail: float) -> tuple[float, float]:
    """(tail excess, matched temperature) of one point against one frontier; NaN outside the grid's entropies."""
    order = np.argsort(front_entropy, kind="stable")
    e, l, t = front_entropy[order], front_tail[order], temps[order]
    if not e[0] <= point_entropy <= e[-1]:
        return float("nan"), float("nan")
    return float(np.interp(point_entropy, e, l) - point_tail), float(np.interp(point_entropy, e, t))


def reading(ci_low: float, ci_high: float, min_excess: float) -> str:
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return OUT_OF_RANGE
    if ci_low > min_excess:
        return BEYOND
    if ci_high < -min_excess:
        return INSIDE
    return INDISTINGUISHABLE


def frontier_test(front: Distributions, front_classes: np.ndarray, point: Distributions, point_classes: np.ndarray,
                  *, temperatures: Sequence[float], point_temperature: float, trunc: Truncation, plausible_p: float,
                  min_excess: float, ci_level: float, samples: int, seed: int,
                  extra_points: dict[str, float] | None = None) -> dict:
    """The frontier of `front` (the base) at `temperatures`, the point of `point` at `point_temperature`, and the
    tail excess with its bootstrap interval over the problems that have locks and forks on both sides.

    `extra_points`: name -> temperature of further base points to mark on the plot (e.g. the decode-only arm)."""
    temps = np.array(sorted({float(t) for t in temperatures} | set((extra_points or {}).values())), dtype=np.float64)
    curves = [side(front, front_classes, float(t), trunc, plausible_p) for t in temps]
    pt = side(point, point_classes, point_temperature, trunc, plausible_p)
    lock_t = np.stack([c.lock_tail for c in curves], axis=1)  # [P, T]
    fork_e = np.stack([c.fork_entropy for c in curves], axis=1)
    fork_n = np.stack([c.fork_plausible for c in curves], axis=1)
    used = np.isfinite(lock_t).all(axis=1) & np.isfinite(fork_e).all(axis=1) & np.isfinite(pt.lock_tail) & \
        np.isfinite(pt.fork_entropy)
    num_used = int(used.sum())
    out: dict = {"problems_used": num_used, "temperatures": temps.tolist(), "point_temperature": point_temperature,
                 "min_excess": min_excess, "ci_level": ci_level, "bootstrap_samples": samples, "seed": seed,
                 "ci_method": "percentile bootstrap over problems (paired: the same problems for every column)"}
    if num_used < 2:
        out.update(reading=OUT_OF_RANGE, note=f"{num_used} problem(s) with both locks and forks; need at least 2")
        return out
    cols = np.concatenate([lock_t[used], fork_e[used], fork_n[used],
                           np.stack([pt.lock_tail[used], pt.fork_entropy[used], pt.fork_plausible[used]], axis=1)],
                          axis=1)
    means = cols.mean(axis=0)
    draws = joint_bootstrap_means(cols, samples, seed)
    nt = temps.size
    est, matched = excess_at(means[nt:2 * nt], means[:nt], temps, means[3 * nt + 1], means[3 * nt])
    boot = np.array([excess_at(r[nt:2 * nt], r[:nt], temps, r[3 * nt + 1], r[3 * nt])[0] for r in draws])
    finite = boot[np.isfinite(boot)]
    # Resamples whose point falls off the grid cannot say where it lies: the interval is then not defined.
    lo, hi = percentile_ci(finite, ci_level) if finite.size == boot.size else (float("nan"), float("nan"))

    def interval(c: int) -> dict:
        low, high = percentile_ci(draws[:, c], ci_level)
        return {"estimate": float(means[c]), "ci_low": low, "ci_high": high}

    out["frontier"] = [{"temperature": float(t), "lock_tail": float(means[i]), "fork_entropy": float(means[nt + i]),
                        "fork_plausible": float(means[2 * nt + i])} for i, t in enumerate(temps)]
    out["point"] = {"temperature": point_temperature, "lock_tail": interval(3 * nt),
                    "fork_entropy": interval(3 * nt + 1), "fork_plausible": interval(3 * nt + 2)}
    out["extra_points"] = {name: out["frontier"][int(np.searchsorted(temps, float(t)))]
                           for name, t in (extra_points or {}).items()}
    out["excess"] = {"estimate": est, "ci_low": lo, "ci_high": hi, "matched_temperature": matched,
                     "resamples_off_grid": int(boot.size - finite.size)}
    out["reading"] = reading(lo, hi, min_excess) if np.isfinite(est) else OUT_OF_RANGE
    if np.isfinite(est) and means[3 * nt] <= TAIL_FLOOR and means[3 * nt] + est <= TAIL_FLOOR:
        out["reading"] = NO_TAIL
        out["note"] = (f"the truncation (top_k={trunc.top_k}, top_p={trunc.top_p}, min_p={trunc.min_p}) leaves no "
                       f"tail at the locks of either model at T={point_temperature:g} and the base at "
                       f"T≈{matched:.2f}")
    out["tuned_curve"] = tuned_curve(point, point_classes, used, temps, means[:nt], means[nt:2 * nt], trunc,
                                     plausible_p)
    return out


def tuned_curve(point: Distributions, classes: np.ndarray, used: np.ndarray, temps: np.ndarray,
                front_tail: np.ndarray, front_entropy: np.ndarray, trunc: Truncation, plausible_p: float) -> list:
    """The tuned model at each temperature of the grid (means over the problems the test used), with its tail
    excess against the base frontier: point estimates that show where on the grid the two curves part."""
    out = []
    for t in temps:
        s = side(point, classes, float(t), trunc, plausible_p)
        tail_t, ent_t = float(s.lock_tail[used].mean()), float(s.fork_entropy[used].mean())
        excess, matched = excess_at(front_entropy, front_tail, temps, ent_t, tail_t)
        out.append({"temperature": float(t), "lock_tail": tail_t, "fork_entropy": ent_t,
                    "excess": None if not np.isfinite(excess) else excess,
                    "matched_temperature": None if not np.isfinite(matched) else matched})
    return out


def paired_deltas(base: dict[str, np.ndarray], tuned: dict[str, np.ndarray], ci_level: float, samples: int,
                  seed: int) -> dict[str, dict]:
    """Per quantity: base and tuned means over problems and the bootstrap interval of mean(tuned − base), over the
    problems where both are defined (per-problem means from `per_problem_mean`)."""
    out = {}
    for name in base:
        a, b = base[name], tuned[name]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 2:
            out[name] = {"problems": int(ok.sum())}
            continue
        diff = b[ok] - a[ok]
        lo, hi = percentile_ci(bootstrap_means(diff, samples, seed), ci_level)
        out[name] = {"base": float(a[ok].mean()), "tuned": float(b[ok].mean()), "delta": float(diff.mean()),
                     "ci_low": lo, "ci_high": hi, "problems": int(ok.sum())}
    return out


def split_halves(d: Distributions) -> np.ndarray:
    """True for the positions of each problem's even-ranked sequences (its samples in order), False for the odd."""
    rank = np.zeros(len(d), dtype=np.int64)
    for p in np.unique(d.problem):
        at = d.problem == p
        seqs = np.unique(d.sequence[at])
        rank[at] = np.searchsorted(seqs, d.sequence[at])
    return rank % 2 == 0


def null_check(base: Distributions, classes: np.ndarray, **kwargs) -> dict:
    """The base model against itself: its frontier from each problem's even-ranked samples, its own point at
    temperature 1 from the odd-ranked ones. No effect exists, so any reading but `indistinguishable` is a false
    alarm (rate measured in `calibration.null_alarm_rate`). kwargs: those of `frontier_test` but point_temperature."""
    half = split_halves(base)
    return frontier_test(base.select(half), classes[half], base.select(~half), classes[~half], point_temperature=1.0,
                         **kwargs)
