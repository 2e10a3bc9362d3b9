"""Everything the report reads, loaded once through the run directory.

All inputs are optional except the run directory itself; a missing piece is reported as "not run", never guessed,
and an unreadable one is noted in the report and treated as missing:

    manifest.json                  config (eval/sample temperatures, parallel layout), package versions
    <stage>/.done                  {"seconds": float, "summary": {...}}: compute per stage; a stage summary may carry
                                   "device_hours" (preferred) and "device" ("cuda" or "cpu")
    diagnose/verdict.json          `decisions.verdict.decide` output
    diagnose/override.json         optional: training forced past the verdict (`force_train`, stages/gate_training.py)
    eval/<label>/summary.json      `scoring.summarize` output; optional extra keys "temperature" (T_eval) and "model"
    eval/<label>/results.jsonl     `scoring.score_samples` rows (+ optional "text")
    eval/<label>/collapse.json     optional `decisions.collapse.run_battery` result of <label> vs base
    eval/<label>/selection.json    optional `selection_report.selection_report` (eval.selection_diagnostic)
    filter/meta.json               optional: the verifier-aware filter's counts
    pack/meta.json                 optional: its "mix" block (anchor data mixed into training, `data/mix.py`)
    decision.comparator            (config) a comparator file (`config.decision.load_comparator`) or another arm's
                                   run directory, loaded here for the ledger (`decisions.ledger.build_ledger`)

Labels: ``base``, ``ssd`` and the sweeps ``base_T<t>`` / ``ssd_T<t>``; which label is which arm is `arms`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.decision import load_comparator
from ...rundir import RunDir, read_json
from ..decisions.gate import load_collapse
from ..decisions.ledger import device_kind


@dataclass
class RunData:
    run_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    verdict: dict[str, Any] | None = None
    training_override: dict[str, Any] | None = None
    collapse: dict[str, Any] | None = None
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> selection.json
    filter_meta: dict[str, Any] | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    mix: dict[str, Any] | None = None
    comparator: dict[str, Any] | None = None
    problems_notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def load_run(run_dir: str | Path) -> RunData:
    run = RunDir(run_dir)
    data = RunData(run.path)
    notes = data.problems_notes
    data.manifest = read_json(run.manifest_path, notes) or {}
    data.verdict = run.verdict(notes)
    data.training_override = run.training_override(notes)
    data.filter_meta = run.filter_meta(notes)
    for label in run.eval_labels():
        summary = run.eval_summary(label, notes)
        if summary is None:
            continue
        data.summaries[label] = summary
        rows = run.eval_results(label, notes)
        if rows is not None:
            data.rows[label] = rows
        selection = run.selection(label, notes)
        if selection is not None:
            data.selections[label] = selection
    data.stages = run.done_records(notes)
    if "ssd" in data.summaries and "base" in data.summaries:
        try:
            data.collapse = load_collapse(run, "base", "ssd")
        except Exception as exc:  # a broken optional input must not sink the report
            notes.append(f"collapse battery could not be loaded ({exc}).")
    data.mix = (read_json(run.path / "pack" / "meta.json", notes) or {}).get("mix")
    data.comparator = _comparator(data)
    return data


def _comparator(data: RunData) -> dict[str, Any] | None:
    """The declared comparator in the shape `build_ledger` takes, or None (not declared, or decode_only: that arm
    is measured in this run). A comparator that cannot be read becomes a note, not a failed report."""
    kind, notes = data.cfg("decision.comparator.kind"), data.problems_notes
    try:
        if kind == "file" and data.cfg("decision.comparator.path"):
            return {"kind": "file", **load_comparator(data.cfg("decision.comparator.path"))}
        arm, other_dir = data.cfg("decision.comparator.arm"), data.cfg("decision.comparator.run_dir")
        if kind == "arm" and arm and arm != "decode_only" and other_dir:
            other = load_run(other_dir)
            return {"kind": "arm", "name": arm, "summary": other.summaries.get("ssd"), "stages": other.stages,
                    "config": other.config, "device": device_kind(other.stages, other.manifest.get("packages"))}
    except Exception as exc:  # a broken optional input must not sink the report
        notes.append(f"the declared comparator could not be loaded ({exc}).")
    return None
