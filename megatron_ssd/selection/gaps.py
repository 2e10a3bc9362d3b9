"""The gap report: where the scalar's top-1 falls behind the best-grounded sample, section by section.

The report observes: `GapReport.selection` is the scalar's pick, unchanged, and grounding is never folded into a
score. For each section (matched by name across samples) and each grounding metric it puts the selected sample's
ratio next to the best sample's and names that sample (ties go to the better-ranked sample by the scalar, so the
selected one wins ties); a gap of at least `threshold` is meaningful and produces a disagreement message. A section
where the selected sample is silent (no code references) but another is grounded is noted, not scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from .grounding import METRICS, Ratio, SectionGrounding
from .samples import section_key
from .scorers import Selection

DEFAULT_THRESHOLD = 0.2


@dataclass(frozen=True)
class MetricGap:
    metric: str
    selected: Ratio | None
    best: Ratio | None
    best_sample: str | None
    gap: float | None  # best - selected; None when either side makes no such claim
    meaningful: bool

    def to_dict(self) -> dict[str, Any]:
        def r(x: Ratio | None):
            return None if x is None else {"hit": x.hit, "total": x.total, "value": x.value}
        return {"metric": self.metric, "selected": r(self.selected), "best": r(self.best),
                "best_sample": self.best_sample, "gap": self.gap, "meaningful": self.meaningful}


@dataclass(frozen=True)
class SectionGap:
    section: str
    selected_has_section: bool
    selected_grounded: bool
    metrics: tuple[MetricGap, ...]

    @property
    def meaningful(self) -> bool:
        return any(m.meaningful for m in self.metrics)


@dataclass
class GapReport:
    selection: Selection
    threshold: float
    sections: list[SectionGap]
    disagreements: list[str]
    notes: list[str]
    unresolved: list[dict[str, str]]  # {"sample", "section", "name"}, every sample, best-ranked first
    groundings: dict[str, list[SectionGrounding]] = field(repr=False)
    index_summary: dict[str, Any] | None = None

    @property
    def selected(self) -> str:
        return self.selection.selected

    def to_dict(self) -> dict[str, Any]:
        return {
            "selection": self.selection.to_dict(), "threshold": self.threshold,
            "sections": [{"section": s.section, "selected_has_section": s.selected_has_section,
                          "selected_grounded": s.selected_grounded, "meaningful_gap": s.meaningful,
                          "metrics": [m.to_dict() for m in s.metrics]} for s in self.sections],
            "disagreements": list(self.disagreements), "notes": list(self.notes),
            "unresolved": list(self.unresolved),
            "groundings": {sid: [g.to_dict() for g in gs] for sid, gs in sorted(self.groundings.items())},
            "index": self.index_summary,
        }


def build_report(selection: Selection, groundings: Mapping[str, Sequence[SectionGrounding]], *,
                 threshold: float = DEFAULT_THRESHOLD, picked_by: str | None = None,
                 index_summary: dict[str, Any] | None = None) -> GapReport:
    """Compare the selected sample's per-section grounding with every other sample's. `picked_by` names the
    scalar in messages ("the verifier picked B, ..."); by default "the scalar '<scorer>'"."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"gap threshold {threshold!r}: give a number in (0, 1]; it is the difference in a "
                          "grounding ratio that counts as a meaningful gap.")
    missing = set(selection.ranking) - set(groundings)
    if missing:
        raise ConfigError(f"no grounding for samples {sorted(missing)}; ground every selected-from sample.")
    who = picked_by or f"scalar '{selection.scorer}'"
    rank = {sid: i for i, sid in enumerate(selection.ranking)}
    order = selection.ranking
    by_sample = {sid: {section_key(g.section): g for g in groundings[sid]} for sid in order}

    keys: list[str] = []
    names: dict[str, str] = {}
    for sid in order:  # the selected sample's sections first, then any only others have
        for g in groundings[sid]:
            k = section_key(g.section)
            if k not in names:
                keys.append(k)
                names[k] = g.section

    sel = selection.selected
    sections, disagreements, notes = [], [], []
    for k in keys:
        mine = by_sample[sel].get(k)
        metrics = []
        for m in METRICS:
            own = mine.metric(m) if mine else None
            cands = [(sid, by_sample[sid][k].metric(m)) for sid in order
                     if k in by_sample[sid] and by_sample[sid][k].metric(m) is not None]
            if not cands:
                continue
            best_sid, best = max(cands, key=lambda c: (c[1].value, -rank[c[0]]))
            gap = best.value - own.value if own is not None else None
            meaningful = gap is not None and gap >= threshold - 1e-12
            metrics.append(MetricGap(m, own, best, best_sid, gap, meaningful))
            if meaningful:
                disagreements.append(
                    f"the {who} picked {sel}, but {best_sid} is better grounded on section {names[k]}: "
                    f"{m} {best} ({best.value:.2f}) vs {own} ({own.value:.2f})")
        grounded_elsewhere = sorted({sid for sid in order if k in by_sample[sid] and by_sample[sid][k].grounded
                                     and sid != sel}, key=rank.get)
        if (mine is None or not mine.grounded) and grounded_elsewhere:
            state = "has no such section" if mine is None else "makes no code claim there"
            notes.append(f"section {names[k]}: the selected sample {sel} {state}; grounded in "
                         f"{', '.join(grounded_elsewhere)}")
        sections.append(SectionGap(names[k], mine is not None, bool(mine and mine.grounded), tuple(metrics)))

    unresolved = [{"sample": sid, "section": g.section, "name": name}
                  for sid in order for g in groundings[sid] for name in g.unresolved]
    return GapReport(selection, threshold, sections, disagreements, notes, unresolved,
                     {sid: list(groundings[sid]) for sid in order}, index_summary)
