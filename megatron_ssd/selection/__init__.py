"""Selection diagnostics: keep the scalar's top-1 of N samples and show where it is weaker on grounding.

Best-of-N by one scalar (a verifier's or reward model's score, a test pass rate, mean token log-probability) often
keeps a sample that is not the strongest on the sections that matter, and splicing sections of different samples
breaks their internal consistency. This package leaves the pick alone and adds an independent, deterministic
second signal: how well each section is grounded in the real code, by static analysis (`ast`, never executing the
target). Grounding observes; it never changes the selection and is never folded into a scalar. docs/SELECTION.md
describes the approach and its limits.

Public API:
- `diagnose_plans(samples, repo, scorer=..., config=GroundingConfig(...), threshold=...) -> GapReport`: plans (or any
  sectioned text about code) against a repository; `load_samples(path)` reads them from jsonl.
- `diagnose_code_samples(samples, starter_code, scalar=...) -> GapReport`: N programs of one problem against the
  standard library and the starter code.
- `build_index(root)` -> `CodebaseIndex` (entities, import and call graphs), reusable across calls.
- `render_table`, `render_markdown`, `render_json`, `log_to_wandb` (only when a wandb run is active).
- `ssd select` is `selection.cli.main`.
Modules: samples (records, sections), scorers (the scalar and the deterministic pick), index (the codebase),
claims (what a section says about code), grounding (per-section ratios), gaps (the report), render, code, plans.
"""
from .code import diagnose_code_samples
from .gaps import GapReport
from .grounding import GroundingConfig
from .index import CodebaseIndex, build_index
from .plans import diagnose_plans
from .render import log_to_wandb, render_json, render_markdown, render_table
from .samples import Sample, load_samples, make_sample
from .scorers import Selection, select_top1

__all__ = ["CodebaseIndex", "GapReport", "GroundingConfig", "Sample", "Selection", "build_index",
           "diagnose_code_samples", "diagnose_plans", "load_samples", "log_to_wandb", "make_sample",
           "render_json", "render_markdown", "render_table", "select_top1"]
