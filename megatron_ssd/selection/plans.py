"""Diagnose N plans (or any structured text about code) against a real codebase: select, ground, compare."""
from __future__ import annotations

import os
from typing import Sequence

from .gaps import DEFAULT_THRESHOLD, GapReport, build_report
from .grounding import GroundingConfig, ground_samples
from .index import CodebaseIndex, build_index
from .samples import Sample
from .scorers import Scorer, select_top1


def diagnose_plans(samples: Sequence[Sample], repo: str | os.PathLike | CodebaseIndex, *,
                   scorer: str | Scorer = "score", config: GroundingConfig | None = None,
                   threshold: float = DEFAULT_THRESHOLD, picked_by: str | None = None) -> GapReport:
    """Top-1 by `scorer` (never changed), each sample's per-section grounding in `repo`, and the gaps between them."""
    selection = select_top1(samples, scorer)
    index = repo if isinstance(repo, CodebaseIndex) else build_index(repo)
    groundings = ground_samples(samples, index, config)
    return build_report(selection, groundings, threshold=threshold, picked_by=picked_by,
                        index_summary=index.summary())
