"""`ssd select` (megatron_ssd.selection.cli.main): output, exit codes, and one clear paragraph on bad input."""
from __future__ import annotations

import json

import pytest
from selection_fixture import write_repo, write_samples

from megatron_ssd.selection.cli import main


@pytest.fixture()
def paths(tmp_path):
    return write_samples(tmp_path / "s.jsonl"), write_repo(tmp_path / "repo")


def test_select_prints_pick_and_gaps_and_exits_zero(paths, tmp_path, capsys):
    samples, repo = paths
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    rc = main(["--samples", str(samples), "--repo", str(repo), "--json", str(out_json), "--markdown", str(out_md)])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.splitlines()[0] == "selected: B"
    assert "the scalar 'score' picked B, but A is better grounded on section Analysis" in out
    assert "B / Analysis: shop.pricing.compute_vat" in out
    assert json.loads(out_json.read_text())["selection"]["selected"] == "B"
    assert "| Analysis |" in out_md.read_text()


def test_no_gaps_is_still_exit_zero(tmp_path, capsys):
    repo = write_repo(tmp_path / "repo")
    samples = write_samples(tmp_path / "s.jsonl", [{"id": "only", "text": "## Plan\nModify `shop.cart.Cart`.",
                                                     "score": 1}])
    assert main(["--samples", str(samples), "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.startswith("selected: only\n")


@pytest.mark.parametrize("lines, message", [
    (['{"id": "a", "text": "x", "score": 1}', '{"id": "b", "text": '], "s.jsonl:2: is not valid JSON"),
    (['{"id": "a", "text": "x"}'], "s.jsonl:1: sample 'a' has no 'score'"),
    (['{"id": "a", "text": "x", "score": 1}', '', '{"id": "a", "text": "y", "score": 2}'],
     "s.jsonl:3: repeats id 'a' (first on line 1)"),
    (['[1, 2]'], "s.jsonl:1: is a JSON list"),
])
def test_bad_samples_file(tmp_path, capsys, lines, message):
    repo = write_repo(tmp_path / "repo")
    (tmp_path / "s.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["--samples", str(tmp_path / "s.jsonl"), "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_repo(paths, tmp_path, capsys):
    samples, _ = paths
    assert main(["--samples", str(samples), "--repo", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no python\n")
    assert main(["--samples", str(samples), "--repo", str(tmp_path / "empty")]) == 2
    assert "holds no readable Python files" in capsys.readouterr().err


def test_unknown_scorer_is_a_usage_error(paths, capsys):
    samples, repo = paths
    assert main(["--samples", str(samples), "--repo", str(repo), "--scorer", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err
