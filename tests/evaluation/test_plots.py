"""The report's figures say what their intervals are and keep the arms' error bars apart."""
from __future__ import annotations

import pytest

from megatron_ssd.evaluation.report import plots
from megatron_ssd.evaluation.statistics.bootstrap import INTERVAL_METHOD


def summary(estimates: dict[int, float], method: str = INTERVAL_METHOD) -> dict:
    return {"pass_at_k": {str(k): {"estimate": e, "ci_low": e - 0.1, "ci_high": e + 0.1, "ci_level": 0.95,
                                   "ci_method": method} for k, e in estimates.items()}}


def test_passk_title_names_the_interval_the_table_uses():
    fig = plots.passk_figure({"base": summary({1: 0.3, 2: 0.4}), "ssd": summary({1: 0.35, 2: 0.45})})
    title = fig.axes[0].get_title()
    assert INTERVAL_METHOD in title and "95%" in title and "bootstrap" not in title
    assert "not recorded" in plots.interval_title({"base": {"pass_at_k": {"1": {"estimate": 0.5}}}})


def test_arms_error_bars_sit_side_by_side():
    arms = {"base": summary({1: 0.3, 4: 0.5}), "decode-only": summary({1: 0.3, 4: 0.5}),
            "ssd": summary({1: 0.3, 4: 0.5})}
    fig = plots.passk_figure(arms)
    xs = [tuple(bars.lines[0].get_xdata()) for bars in fig.axes[0].containers]  # one ErrorbarContainer per arm
    assert len(xs) == 3 and len(set(xs)) == 3  # three arms, three distinct positions at each k
    base, middle, ssd = sorted(xs)
    assert middle == pytest.approx((1, 4))  # the middle arm stays on k; the others straddle it symmetrically
    assert base[0] * ssd[0] == pytest.approx(1) and base[1] * ssd[1] == pytest.approx(16)
    assert [t for t in fig.axes[0].get_xticks()] == [1, 4]
    assert plots.passk_curves(arms)[:4] == b"\x89PNG"
