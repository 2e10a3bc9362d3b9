"""The stage registry: names, what each reads, and the chain each experiment arm runs."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from megatron_ssd.errors import StageUnavailable


@dataclass(frozen=True)
class StageSpec:
    name: str
    description: str
    arrives_with: str  # the work item that builds it, named when the stage is missing from this build

    @property
    def module(self) -> str:
        return f"megatron_ssd.stages.{self.name}"

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def load(self):
        if not self.available():
            raise StageUnavailable(f"stage '{self.name}' ({self.description}) is not available in this build yet: it "
                                   f"arrives with {self.arrives_with}.")
        return importlib.import_module(self.module)


STAGES = {
    s.name: s
    for s in (
        StageSpec("prompts", "load, dedup, decontaminate and split prompts", "the foundation"),
        StageSpec("diagnose", "base-model pass@k and the precondition verdict", "the evaluation work (issue #5)"),
        StageSpec("sample", "sample the frozen model at the SSD decoding on vLLM", "the foundation"),
        StageSpec("filter", "verifier-aware filter: keep samples that pass their tests", "the evaluation work (issue #5)"),
        StageSpec("pack", "tokenise and pack samples into training bins", "the training engine (issue #4)"),
        StageSpec("train", "Megatron-core SFT on the packed samples", "the training engine (issue #4)"),
        StageSpec("export", "Megatron checkpoint -> HF folder", "the training engine (issue #4)"),
        StageSpec("evaluate", "pass@k for base, decode-only and SSD models", "the evaluation work (issue #5)"),
        StageSpec("report", "report.md / report.html with tables and plots", "the evaluation work (issue #5)"),
    )
}
STAGE_NAMES = tuple(STAGES)
GENERATING_STAGES = ("diagnose", "sample", "evaluate")

CHAINS = {
    "minimal": ("prompts", "diagnose", "sample", "pack", "train", "export", "evaluate", "report"),
    "verifier_aware": ("prompts", "diagnose", "sample", "filter", "pack", "train", "export", "evaluate", "report"),
    "decode_only": ("prompts", "diagnose", "evaluate", "report"),
}


def requirements(stage: str, arm: str) -> tuple[str, ...]:
    """Stages whose outputs `stage` reads, for this arm."""
    return {
        "prompts": (),
        "diagnose": ("prompts",),
        "sample": ("prompts",),
        "filter": ("sample",),
        "pack": ("filter",) if arm == "verifier_aware" else ("sample",),
        "train": ("pack",),
        "export": ("train",),
        "evaluate": ("prompts",) if arm == "decode_only" else ("prompts", "export"),
        "report": ("evaluate",),
    }[stage]
