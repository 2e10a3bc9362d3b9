"""Grounding and the gap report on hand-built plans whose ground truth is known (see selection_fixture.py)."""
from __future__ import annotations

import json
import sys
import types

import pytest
from selection_fixture import write_repo, write_samples

from megatron_ssd.errors import ConfigError
from megatron_ssd.selection import (GroundingConfig, build_index, diagnose_code_samples, diagnose_plans,
                                    load_samples, log_to_wandb, render_json, render_markdown)
from megatron_ssd.selection.grounding import Ratio


@pytest.fixture()
def inputs(tmp_path):
    return load_samples(write_samples(tmp_path / "s.jsonl")), build_index(write_repo(tmp_path / "repo"))


@pytest.fixture()
def report(inputs):
    return diagnose_plans(*inputs)


def by_section(report, sid):
    return {g.section: g for g in report.groundings[sid]}


def test_scalar_pick_is_kept_tie_broken_by_id(report):
    assert report.selected == "B" and report.selection.tied == ("B", "C")


def test_invented_function_and_wrong_dependency(report):
    b = by_section(report, "B")["Analysis"]
    assert b.existence == Ratio(2, 3) and b.unresolved == ("shop.pricing.compute_vat",)
    assert b.dependency == Ratio(0, 1)  # checkout() never calls apply_tax (it reaches it only through Cart)
    assert b.false_dependencies == ("shop.checkout.checkout calls shop.pricing.apply_tax",)
    a = by_section(report, "A")["Analysis"]
    assert (a.existence, a.dependency, a.unresolved) == (Ratio(4, 4), Ratio(2, 2), ())


def test_missed_transitive_callers(report, inputs):
    b = by_section(report, "B")["Plan"]
    assert b.impact == Ratio(2, 5)  # names line_total (and so its module shop.cart) only
    assert b.missed_impact == ("shop.cart.Cart.total", "shop.checkout", "shop.checkout.quote")
    a = by_section(report, "A")["Plan"]
    assert a.impact == Ratio(5, 5) and a.dependency == Ratio(3, 3)
    shallow = diagnose_plans(*inputs, config=GroundingConfig(impact_depth=1))
    assert by_section(shallow, "B")["Plan"].impact == Ratio(2, 2)  # depth 1: line_total and shop.cart


def test_section_without_code_claims_is_not_grounded_not_zero(report):
    for sid in "ABC":
        risks = by_section(report, sid)["Risks"]
        assert not risks.grounded and risks.existence is None
    row = next(s for s in report.sections if s.section == "Risks")
    assert row.metrics == () and not row.meaningful


def test_gap_rows_messages_and_unresolved_list(report):
    rows = {s.section: {m.metric: m for m in s.metrics} for s in report.sections}
    assert rows["Analysis"]["existence"].best_sample == "A" and rows["Analysis"]["existence"].meaningful
    assert rows["Plan"]["existence"].best_sample == "B"  # ties go to the selected sample
    assert rows["Plan"]["impact"].gap == pytest.approx(0.6)
    picked = "the scalar 'score' picked B, but A is better grounded on section"
    assert report.disagreements == [
        f"{picked} Analysis: existence 4/4 (1.00) vs 2/3 (0.67)",
        f"{picked} Analysis: dependency 2/2 (1.00) vs 0/1 (0.00)",
        f"{picked} Plan: impact 5/5 (1.00) vs 2/5 (0.40)"]
    assert report.unresolved == [{"sample": "B", "section": "Analysis", "name": "shop.pricing.compute_vat"},
                                 {"sample": "C", "section": "Analysis", "name": "shop.cart.Cart.checkout_all"}]


def test_threshold_controls_what_is_meaningful(inputs):
    samples, index = inputs
    strict = diagnose_plans(samples, index, threshold=0.7, picked_by="verifier")
    assert strict.disagreements == ["the verifier picked B, but A is better grounded on section Analysis: "
                                    "dependency 2/2 (1.00) vs 0/1 (0.00)"]
    with pytest.raises(ConfigError, match="threshold"):
        diagnose_plans(samples, index, threshold=0)


def test_renderers_and_wandb_only_with_an_active_run(report, monkeypatch):
    md = render_markdown(report)
    assert "selected: **B**" in md and "tie between B, C" in md and "`shop.pricing.compute_vat`" in md
    data = json.loads(json.dumps(render_json(report)))
    assert data["selection"]["selected"] == "B" and len(data["groundings"]) == 3
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    assert log_to_wandb(report) is False
    logged = []
    fake = types.SimpleNamespace(run=None, Table=lambda columns, data: ("table", columns, data))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    assert log_to_wandb(report) is False  # imported but no run
    fake.run = types.SimpleNamespace(log=logged.append)
    assert log_to_wandb(report) is True
    assert logged[0]["selection/disagreements"] == 3 and logged[0]["selection/unresolved_references"] == 2


def test_code_samples_grounded_in_stdlib_and_starter():
    starter = "def helper(xs):\n    return sorted(xs)\n"
    good = ("import collections\nfrom math import sqrt\n\n"
            "def solve(xs):\n    c = collections.Counter(xs)\n    return helper(list(c)), sqrt(len(xs))\n")
    third_party = "import numpy as np\n\ndef solve(xs):\n    return np.sort(xs)\n"
    invented = "def solve(xs):\n    return make_answer(xs) + math_utils.mean(xs)\n"
    broken = "def solve(xs:\n"
    samples = [{"id": "good", "code": good, "lp": -0.9}, {"id": "np", "code": third_party, "lp": -0.2},
               {"id": "inv", "code": invented, "lp": -0.5}, {"id": "bad", "code": broken, "lp": -0.1}]
    rep = diagnose_code_samples(samples, starter, scalar="lp")
    assert rep.selected == "bad" and rep.selection.scorer == "lp"  # the scalar decides, even for broken code
    g = {sid: {x.section: x for x in gs} for sid, gs in rep.groundings.items()}
    assert g["good"]["solve"].existence == Ratio(5, 5)  # Counter, helper, list, sqrt, len
    assert g["good"]["imports"].existence == Ratio(2, 2)
    assert g["np"]["imports"].unresolved == ("numpy",) and g["np"]["solve"].existence == Ratio(0, 1)
    assert g["inv"]["solve"].unresolved == ("make_answer", "math_utils.mean")
    assert not g["bad"]["program"].grounded and "does not parse" in g["bad"]["program"].notes[0]
    solve = next(s for s in rep.sections if s.section == "solve")
    assert not solve.selected_has_section and any("section solve" in n for n in rep.notes)
