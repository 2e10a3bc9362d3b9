"""Simulated base/tuned pairs with a known answer, run through the probe's own code path (`frontier`).

A simulated problem has sequences of positions; each position's logits over a small vocabulary are Gaussian noise
plus a lock (one token far ahead), a fork (two to four tokens close together, well ahead of the rest) or neither,
with a per-problem scale so problems differ as real ones do. Three truths:

- null: the base against itself on split halves (`frontier.null_check`): no effect; `null_alarm_rate` is the rate
  of any reading but `indistinguishable` (tests/evaluation/mechanism/test_mechanism_calibration.py bounds it by the
  nominal (1 − ci_level) with its binomial error, as decisions/calibration.py does for the other probes);
- temperature: the tuned model is the base at another temperature (logits / T0): on the frontier by construction;
- sharpen locks: the tuned model adds `boost` to the top-1 logit at the base's locks only, forks untouched: beyond
  the frontier.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..decisions.calibration import rate
from .distributions import Distributions, from_logits
from .frontier import BEYOND, INDISTINGUISHABLE, frontier_test, null_check
from .quantities import LOCK, Thresholds, Truncation, classify


@dataclass(frozen=True)
class Simulation:
    problems: int = 30
    sequences: int = 4
    positions: int = 24
    vocab: int = 200
    k: int = 20
    lock_share: float = 0.45
    fork_share: float = 0.3
    trunc: Truncation = Truncation(top_k=20, top_p=0.95)
    temperatures: tuple[float, ...] = tuple(round(0.3 + 0.05 * i, 2) for i in range(35))
    thresholds: Thresholds = Thresholds()
    min_excess: float = 0.005
    ci_level: float = 0.95
    bootstrap: int = 400


def simulate_logits(sim: Simulation, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                        np.ndarray]:
    """(logits [N, V], problem [N], sequence [N], position [N]) of one simulated benchmark. Over a flat background:
    a lock is one token 12 nats up with two distractors 2.5-4.5 nats below it (top-1 about 0.8-0.98); a fork is two
    to four tokens 10 nats up within half a nat; an other position is one token 10 up with three distractors 2-3
    below. Each problem scales its gaps by 0.8-1.2."""
    per_problem = sim.sequences * sim.positions
    n = sim.problems * per_problem
    logits = rng.normal(0.0, 0.5, size=(n, sim.vocab))
    gap_scale = np.repeat(rng.uniform(0.8, 1.2, size=sim.problems), per_problem)
    kind = rng.choice(3, size=n, p=[1 - sim.lock_share - sim.fork_share, sim.lock_share, sim.fork_share])
    lead = rng.integers(0, sim.vocab, size=n)
    width = rng.integers(2, 5, size=n)
    for j in range(4):
        col = (lead + 7 * j) % sim.vocab
        lock = np.where(j == 0, 12.0, np.where(j <= 2, 12.0 - rng.uniform(2.5, 4.5, size=n) * gap_scale, 0.0))
        fork = np.where(j < width, 10.0 + rng.uniform(-0.5, 0.5, size=n) * gap_scale, 0.0)
        other = np.where(j == 0, 10.0, 10.0 - rng.uniform(2.0, 3.0, size=n) * gap_scale)
        logits[np.arange(n), col] += np.choose(kind, [other, lock, fork])
    problem = np.repeat(np.arange(sim.problems), per_problem)
    sequence = np.repeat(np.arange(sim.problems * sim.sequences), sim.positions)
    position = np.tile(np.arange(sim.positions), sim.problems * sim.sequences)
    return logits, problem, sequence, position


def distributions(logits: np.ndarray, problem: np.ndarray, sequence: np.ndarray, position: np.ndarray,
                  k: int) -> Distributions:
    import torch  # why: torch-heavy; only the simulations and the exact path need it

    logp, ids, ent = from_logits(torch.from_numpy(logits), k)
    return Distributions(logp, ids, ent, ent.copy(), problem, sequence, position,
                         [f"p{i}" for i in range(int(problem.max()) + 1)], exact=True)


def sharpen_locks(logits: np.ndarray, base: Distributions, thresholds: Thresholds, boost: float) -> np.ndarray:
    """The base logits with `boost` added to the top-1 token at the base's locks only."""
    out = logits.copy()
    lock = np.flatnonzero(classify(base, thresholds) == LOCK)
    out[lock, base.ids[lock, 0]] += boost
    return out


def compare(sim: Simulation, base: Distributions, tuned: Distributions, seed: int) -> dict:
    classes = classify(base, sim.thresholds)
    return frontier_test(base, classes, tuned, classes, temperatures=sim.temperatures, point_temperature=1.0,
                         **_test_kwargs(sim, seed))


def _test_kwargs(sim: Simulation, seed: int) -> dict:
    return dict(trunc=sim.trunc, plausible_p=sim.thresholds.plausible_p, min_excess=sim.min_excess,
                ci_level=sim.ci_level, samples=sim.bootstrap, seed=seed)


def null_alarm_rate(sim: Simulation, replicates: int, seed: int = 0) -> dict[str, float]:
    """Rate of readings other than `indistinguishable` for the base against itself on split halves."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for r in range(replicates):
        base = distributions(*simulate_logits(sim, rng), sim.k)
        result = null_check(base, classify(base, sim.thresholds), temperatures=sim.temperatures,
                            **_test_kwargs(sim, seed + r))
        alarms += result["reading"] != INDISTINGUISHABLE
    return rate(alarms, replicates)


def detection_rate(sim: Simulation, replicates: int, boost: float, seed: int = 0) -> dict[str, float]:
    """Rate of `beyond` when the tuned model sharpens the base's locks only (by `boost` on the top-1 logit)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(replicates):
        logits, *meta = simulate_logits(sim, rng)
        base = distributions(logits, *meta, sim.k)
        tuned = distributions(sharpen_locks(logits, base, sim.thresholds, boost), *meta, sim.k)
        hits += compare(sim, base, tuned, seed + r)["reading"] == BEYOND
    return rate(hits, replicates)
