"""The scalar that picks top-1 (the user's choice, never changed by grounding) and the deterministic pick.

A scorer maps a sample to a finite float, higher is better. Built-ins: `score` (the record's declared `score`: a
verifier's or reward model's value, a mean token log-probability) and `pass_rate` (`passed`/`total`, or a
`pass_rate` field). Any callable `Sample -> float` works too. Ties are broken by the smallest sample id, so the
pick does not depend on the order the samples arrive in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import DataError, SSDError
from .samples import Sample, finite_number

Scorer = Callable[[Sample], float]


def given_score(sample: Sample) -> float:
    value = finite_number(sample.record.get("score"))
    if value is None:
        what = "has no 'score'" if "score" not in sample.record else f"has score {sample.record['score']!r}"
        raise DataError(f"sample {sample.id!r} {what}; the 'score' scorer needs a finite number per sample "
                        "(or choose another scorer, e.g. --scorer pass_rate).", path=_path(sample),
                        line=_line(sample))
    return value


def pass_rate(sample: Sample) -> float:
    rec = sample.record
    if "pass_rate" in rec:
        value = finite_number(rec["pass_rate"])
    else:
        passed, total = finite_number(rec.get("passed")), finite_number(rec.get("total"))
        value = passed / total if passed is not None and total else None
    if value is None or not 0.0 <= value <= 1.0:
        raise DataError(f"sample {sample.id!r} has no test pass rate; the 'pass_rate' scorer needs 'pass_rate' in "
                        "[0, 1] or 'passed' and 'total' (> 0) per sample.", path=_path(sample), line=_line(sample))
    return value


SCORERS: dict[str, Scorer] = {"score": given_score, "pass_rate": pass_rate}


def resolve_scorer(scorer: str | Scorer) -> tuple[str, Scorer]:
    """(label, callable) for a built-in scorer's name or any callable."""
    if callable(scorer):
        return getattr(scorer, "__name__", "custom"), scorer
    if scorer not in SCORERS:
        raise SSDError(f"unknown scorer {scorer!r}; choose one of {', '.join(sorted(SCORERS))} or pass a callable "
                       "Sample -> float from Python.")
    return scorer, SCORERS[scorer]


@dataclass(frozen=True)
class Selection:
    """Top-1 by the scalar. `ranking`: every id, best first; `tied`: the ids that share the top score."""
    scorer: str
    selected: str
    scores: dict[str, float]
    ranking: tuple[str, ...]
    tied: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"scorer": self.scorer, "selected": self.selected, "scores": dict(sorted(self.scores.items())),
                "ranking": list(self.ranking), "tied": list(self.tied)}


def select_top1(samples: Sequence[Sample], scorer: str | Scorer = "score") -> Selection:
    if not samples:
        raise SSDError("no samples to select from.")
    label, fn = resolve_scorer(scorer)
    scores: dict[str, float] = {}
    for s in samples:
        value = finite_number(fn(s))
        if value is None:
            raise DataError(f"scorer {label!r} returned a non-finite or non-numeric value for sample {s.id!r}.",
                            path=_path(s), line=_line(s))
        scores[s.id] = value
    ranking = tuple(sorted(scores, key=lambda i: (-scores[i], i)))
    top = scores[ranking[0]]
    tied = tuple(i for i in ranking if scores[i] == top)
    return Selection(label, ranking[0], scores, ranking, tied)


def _path(sample: Sample) -> str | None:
    return sample.source.rpartition(":")[0] or None


def _line(sample: Sample) -> int | None:
    tail = sample.source.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None
