"""How a pass@k estimate or a paired difference is written everywhere (report, stage tables, the launcher's
panel): percentage points with one decimal and the CI in brackets, e.g. ``25.0 [17.7, 33.3]``."""
from __future__ import annotations

from typing import Any, Mapping


def pp(fraction: float, *, signed: bool = False) -> str:
    """A fraction as percentage points, one decimal (``0.25`` -> ``25.0``; signed: ``+25.0``)."""
    return f"{100 * fraction:+.1f}" if signed else f"{100 * fraction:.1f}"


def interval(low: float | None, high: float | None, *, signed: bool = False) -> str:
    """A CI of fractions in percentage points: ``[17.7, 33.3]``; ``—`` when there is none (a slice under the
    minimum size for an interval: `scoring.MIN_SLICE_PROBLEMS`)."""
    if low is None or high is None:
        return "—"
    return f"[{pp(low, signed=signed)}, {pp(high, signed=signed)}]"


def estimate_with_ci(est: Mapping[str, Any] | None, *, percent_sign: bool = False, missing: str = "-") -> str:
    """A pass@k estimate (`{"estimate", "ci_low", "ci_high"}`) with its CI: ``25.0 [17.7, 33.3]``."""
    if not est:
        return missing
    ci = interval(est.get("ci_low"), est.get("ci_high"))
    return f"{pp(est['estimate'])}{'%' if percent_sign else ''}" + ("" if ci == "—" else f" {ci}")


def delta_ci(diff: Mapping[str, Any]) -> str:
    """The CI of a paired difference (`{"delta", "ci_low", "ci_high"}`), signed: ``[-1.0, +26.0]``."""
    return interval(diff.get("ci_low"), diff.get("ci_high"), signed=True)


def p_value(p: float | None) -> str:
    """A p-value to three decimals (``<0.001`` below that); ``—`` when no test was made."""
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def passk_line(summary: Mapping[str, Any]) -> str:
    """Every pass@k of a summary on one line: ``pass@1 25.0 [17.7, 33.3]; pass@4 ...``."""
    return "; ".join(f"pass@{k} {estimate_with_ci(est)}"
                     for k, est in sorted(summary.get("pass_at_k", {}).items(), key=lambda kv: int(kv[0])))
