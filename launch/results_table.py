"""The table `ssd run` ends with: pass@1 and pass@k with CIs for base, decode-only and SSD, the paired deltas, the
verdict, collapse alerts and the report's path, all read back from the run directory (so a rerun prints it again)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from megatron_ssd.config import SSDConfig
from megatron_ssd.evaluation.scoring import paired_passk


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _pct(est: dict | None) -> str:
    if not est:
        return "-"
    return f"{100 * est['estimate']:.1f} [{100 * est['ci_low']:.1f}, {100 * est['ci_high']:.1f}]"


def arm_labels(cfg: SSDConfig) -> dict[str, str]:
    """Arm name -> eval label: base at its setting, the base model at the training decoding, the SSD model."""
    labels = {"base": "base", "decode-only": f"base_T{cfg.sample.temperature:g}"}
    if cfg.arm != "decode_only":
        labels["SSD"] = "ssd"
    return labels


def final_panel(cfg: SSDConfig, run_dir: Path) -> Panel:
    summaries = {arm: _load(run_dir / "eval" / label / "summary.json") for arm, label in arm_labels(cfg).items()}
    ks = sorted({int(k) for s in summaries.values() if s for k in s.get("pass_at_k", {})})
    pct = int(100 * cfg.eval.ci_level)
    table = Table(title=f"{cfg.experiment}: pass@k (%) [{pct}% CI] on {_num_problems(summaries)} held-out problems, "
                        f"n={cfg.eval.n}")
    table.add_column("arm")
    table.add_column("decoding")
    for k in ks:
        table.add_column(f"pass@{k}")
    for arm, s in summaries.items():
        if s is None:
            table.add_row(arm, "not run", *["-"] * len(ks))
            continue
        decoding = f"T={s.get('temperature')} top-k={s.get('top_k')} top-p={s.get('top_p')}"
        table.add_row(arm, decoding, *[_pct(s["pass_at_k"].get(str(k))) for k in ks])

    lines = []
    base = summaries.get("base")
    for arm in ("SSD", "decode-only"):
        other = summaries.get(arm)
        if base and other:
            for k in (ks[0], ks[-1]) if ks else ():
                d = paired_passk(base, other, k, cfg.eval.ci_level, cfg.eval.bootstrap_samples, cfg.seed)
                lines.append(f"{arm} - base, pass@{k}: {100 * d['delta']:+.1f} pp [{100 * d['ci_low']:+.1f}, "
                             f"{100 * d['ci_high']:+.1f}] (paired bootstrap over {d['num_problems']} problems)")
    if summaries.get("SSD") and summaries.get("decode-only"):
        d = paired_passk(summaries["decode-only"], summaries["SSD"], 1, cfg.eval.ci_level, cfg.eval.bootstrap_samples,
                         cfg.seed)
        lines.append(f"SSD - decode-only, pass@1: {100 * d['delta']:+.1f} pp [{100 * d['ci_low']:+.1f}, "
                     f"{100 * d['ci_high']:+.1f}]")
    verdict = _load(run_dir / "diagnose" / "verdict.json")
    if verdict:
        lines.append(f"verdict (before training): {verdict.get('verdict')}: {verdict.get('reason', '')}")
    collapse = _load(run_dir / "eval" / "ssd" / "collapse.json")
    if collapse is not None:
        alerts = collapse.get("alerts", [])
        lines.append("collapse probes: " + ("all within tolerance" if not alerts else
                                            "; ".join(str(a.get("message", a)) for a in alerts)))
    report = run_dir / "report" / "report.md"
    lines.append(f"report: {report if report.exists() else 'not written'}")
    if (_num_problems(summaries) or 0) < 200:
        lines.append("note: fewer than 200 eval problems: confidence intervals are wide; scale with eval.n=... and "
                     "data.max_eval_problems=... / another eval set.")
    return Panel(Group(table, *lines), title="SSD result", expand=False)


def _num_problems(summaries: dict[str, Any]) -> int | None:
    return next((s.get("num_problems") for s in summaries.values() if s), None)
