"""The stage registry: names, what each does and reads; the chain each arm runs is `megatron_ssd.rundir.CHAINS`."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class StageSpec:
    name: str
    description: str

    @property
    def module(self) -> str:
        return f"megatron_ssd.stages.{self.name}"

    def load(self) -> ModuleType:
        """The stage's module, imported only when the stage runs (a stage pulls in vLLM, torch or the sandbox)."""
        return importlib.import_module(self.module)


STAGES = {
    s.name: s
    for s in (
        StageSpec("prompts", "load, dedup, decontaminate and split prompts"),
        StageSpec("diagnose", "base-model pass@k and the precondition verdict"),
        StageSpec("sample", "sample the frozen model at the SSD decoding on vLLM"),
        StageSpec("filter", "verifier-aware filter: keep samples that pass their tests"),
        StageSpec("pack", "tokenise and pack samples into training bins"),
        StageSpec("train", "Megatron-core SFT on the packed samples"),
        StageSpec("export", "Megatron checkpoint -> HF folder"),
        StageSpec("evaluate", "pass@k for base, decode-only and SSD models"),
        StageSpec("report", "report.md / report.html with tables and plots"),
    )
}
STAGE_NAMES = tuple(STAGES)
GENERATING_STAGES = ("diagnose", "sample", "evaluate")


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
