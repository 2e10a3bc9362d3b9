"""Samples, sections, scorers and claim extraction: the inputs of grounding."""
from __future__ import annotations

import pytest

from megatron_ssd.errors import DataError, SSDError
from megatron_ssd.selection.claims import Ref, extract_claims
from megatron_ssd.selection.samples import make_sample, split_markdown
from megatron_ssd.selection.scorers import select_top1


def test_markdown_sections_ignore_fenced_headings_and_keep_deeper_ones():
    text = "intro\n# Analysis\nA\n```python\n# not a heading\n```\n### detail\nB\n## Plan\nC\n## plan\nD\n"
    secs = split_markdown(text)
    assert [s.name for s in secs] == ["Preamble", "Analysis", "Plan", "plan (2)"]
    assert "# not a heading" in secs[1].text and "### detail" in secs[1].text
    assert split_markdown("no headings here") [0].name == "Document"


def test_json_sections_from_text_or_object():
    a = make_sample("a", '{"Analysis": "x", "Plan": ["y"]}')
    b = make_sample("b", {"Analysis": "x", "Plan": "y"})
    assert [s.name for s in a.sections] == [s.name for s in b.sections] == ["Analysis", "Plan"]
    assert b.section("analysis").text == "x"


def test_scalar_top1_ties_broken_by_id_not_order():
    samples = [make_sample(i, "t", {"score": s}) for i, s in (("c", 1.0), ("b", 2.0), ("a", 2.0))]
    for order in (samples, samples[::-1]):
        sel = select_top1(order)
        assert sel.selected == "a" and sel.tied == ("a", "b") and sel.ranking == ("a", "b", "c")
    rates = [make_sample("x", "t", {"passed": 3, "total": 4}), make_sample("y", "t", {"pass_rate": 0.5})]
    assert select_top1(rates, "pass_rate").selected == "x"
    assert select_top1(samples, lambda s: -len(s.id) - ord(s.id)).selected == "a"


def test_scorer_errors_name_the_sample():
    with pytest.raises(DataError, match=r"f\.jsonl:3: sample 'q' has no 'score'"):
        select_top1([make_sample("q", "t", {}, source="f.jsonl:3")])
    with pytest.raises(DataError, match="has score 'high'"):
        select_top1([make_sample("q", "t", {"score": "high"})])
    with pytest.raises(SSDError, match="unknown scorer 'nope'"):
        select_top1([make_sample("q", "t", {"score": 1})], "nope")


def test_claims_entities_paths_dependencies_and_changes():
    c = extract_claims(
        "The loader in `pkg/train.py` calls `load_batch` and `pkg.data.shuffle()`; `Trainer.step` is called by "
        "`run_loop`. pkg.util imports `json`. Changing `pkg.data.shuffle` affects `pkg.cli.main`. We should "
        "modify the function `pkg.data.read_rows` and rename `old_name`, e.g. now. See https://x.io/a_b.py.\n"
        "```python\ndef new_helper():\n    invented_call()\n```\n`x = y + 1` and `foo(a, b)`.")
    names = {(r.kind, r.name) for r in c.refs}
    assert ("path", "pkg/train.py") in names and ("entity", "foo") in names
    assert not {n for _, n in names} & {"new_helper", "invented_call", "e.g", "x", "a_b.py"}
    deps = {(d.kind, d.src.name, d.dst.name) for d in c.dependencies}
    assert deps == {("calls", "pkg/train.py", "load_batch"), ("calls", "pkg/train.py", "pkg.data.shuffle"),
                    ("calls", "run_loop", "Trainer.step"), ("imports", "pkg.util", "json"),
                    ("affects", "pkg.data.shuffle", "pkg.cli.main")}
    assert set(c.changes) == {Ref("entity", "pkg.data.read_rows"), Ref("entity", "old_name"),
                              Ref("entity", "pkg.data.shuffle")}


def test_prose_without_code_has_no_claims():
    assert not extract_claims("Rounding may surprise users. We keep it simple, i.e. no new state.").has_code_claims
