"""The report's "Locks and forks" section, from a record the probe itself writes (simulated base/tuned pair)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from megatron_ssd.config.eval import MechanismConfig
from megatron_ssd.evaluation.mechanism import calibration as cal  # Simulation, Truncation
from megatron_ssd.evaluation.mechanism.extract import TeacherForced
from megatron_ssd.evaluation.mechanism.probe import probe
from megatron_ssd.evaluation.mechanism.quantities import Thresholds
from megatron_ssd.evaluation.report.loading import RunData
from megatron_ssd.evaluation.report.mechanism import frontier_plot, mechanism_section
from megatron_ssd.evaluation.report.rendering import Doc
from megatron_ssd.rundir import RunDir

PNG = b"\x89PNG"


def _record(boost: float, seed: int = 3, top_p: float = 0.95) -> dict:
    """eval/mechanism.json of a simulated pair: boost > 0 sharpens the base's locks only (beyond the frontier)."""
    sim = cal.Simulation(problems=24, trunc=cal.Truncation(top_k=20, top_p=top_p))
    rng = np.random.default_rng(seed)
    logits, problem, sequence, position = cal.simulate_logits(sim, rng)
    base = cal.distributions(logits, problem, sequence, position, sim.k)
    tuned_logits = cal.sharpen_locks(logits, base, sim.thresholds, boost) if boost else logits
    tuned = cal.distributions(tuned_logits, problem, sequence, position, sim.k)
    seqs = [TeacherForced(f"p{int(problem[sequence == s][0])}", "base" if s % 2 == 0 else "ssd", int(s // 2),
                          tuple(range(3)), tuple(range(sim.positions)))
            for s in range(int(sequence.max()) + 1)]
    m = replace(MechanismConfig(), enabled=True, temperatures=list(sim.temperatures), examples=2)
    record = probe(base, tuned, m=m, trunc=sim.trunc, ci_level=0.95, samples=300, decode_only_temperature=1.2,
                   seqs=seqs, token_text=lambda i: f"t{i}")
    record["settings"].update(backend="exact", subsample={"max_problems": 0}, sources=["base", "ssd"],
                              sequences=len(seqs))
    return record


@pytest.fixture(scope="module")
def beyond_record():
    return _record(boost=3.0)


def _render(tmp_path, record):
    run = RunDir(tmp_path)
    if record is not None:
        run.write_mechanism(record)
    doc, metrics = Doc(), {}
    mechanism_section(doc, RunData(run_dir=tmp_path), metrics)
    return doc, metrics


def test_section_shows_reading_plot_intervals_null_check_and_examples(tmp_path, beyond_record):
    assert beyond_record["frontier_test"]["reading"] == "beyond"
    doc, metrics = _render(tmp_path, beyond_record)
    md = doc.markdown()
    assert md.startswith("## Locks and forks")
    assert "**SSD moves off the temperature frontier: " in md
    assert doc.images["mechanism_frontier"].startswith(PNG)
    # the raw table: one row per quantity with base, SSD, delta and a CI
    for name in ("lock: tail 1 − p(top-1)", "lock: mass outside training top-k", "fork: entropy (nats)",
                 "fork: plausible continuations"):
        line = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert line.count("[") == 1, line
    tail = beyond_record["raw"]["lock_tail"]
    assert tail["delta"] < 0 and tail["ci_high"] < 0  # the sharpened locks lost tail mass, interval clear of 0
    assert f"{tail['delta']:+.4f}" in md
    assert "null check (the base against itself" in md
    assert f"**{beyond_record['null_check']['reading']}**" in md
    assert "| lock | `" in md and "| fork | `" in md  # examples with their contexts
    assert metrics["mechanism/reading"] == "beyond"
    assert metrics["mechanism/tail_excess"] == pytest.approx(beyond_record["frontier_test"]["excess"]["estimate"])
    assert metrics["mechanism/lock_tail/delta"] == pytest.approx(tail["delta"])


def test_section_says_how_to_run_it_when_there_is_no_record(tmp_path):
    doc, metrics = _render(tmp_path, None)
    md = doc.markdown()
    assert "not run (eval.mechanism.enabled is off" in md and "ssd mechanism" in md
    assert not doc.images and "mechanism/reading" not in metrics


def test_a_temperature_change_reads_as_one(tmp_path):
    record = _record(boost=0.0)  # tuned == base: SSD's point is the base at T = 1, on its own frontier
    assert record["frontier_test"]["reading"] == "indistinguishable"
    doc, _ = _render(tmp_path, record)
    assert "**SSD's change is indistinguishable from a temperature change: " in doc.markdown()


def test_plot_marks_the_decode_only_arm_and_the_base_on_the_curve(beyond_record):
    test = beyond_record["frontier_test"]
    extra = test["extra_points"]
    assert set(extra) == {"base", "decode-only"}
    assert extra["decode-only"]["temperature"] == 1.2
    # both are points of the frontier itself: the decode-only arm is a temperature change of the base
    assert extra["decode-only"] in test["frontier"] and extra["base"] in test["frontier"]
    assert frontier_plot(test).startswith(PNG)
    assert frontier_plot({"reading": "out_of_range"}) is None


def test_out_of_range_point_is_said_and_not_plotted_as_a_reading(tmp_path, beyond_record):
    record = {**beyond_record, "frontier_test": {**beyond_record["frontier_test"], "reading": "out_of_range",
                                                 "note": "its fork entropy lies outside the grid"}}
    from megatron_ssd.evaluation.mechanism.probe import sentence

    record["sentence"] = sentence(record["frontier_test"], 0.95)
    doc, metrics = _render(tmp_path, record)
    assert "cannot be placed against the temperature frontier: its fork entropy lies outside the grid" in \
        doc.markdown()
    assert metrics["mechanism/reading"] == "out_of_range"


def test_thresholds_in_the_text_are_the_records(tmp_path, beyond_record):
    doc, _ = _render(tmp_path, beyond_record)
    md = doc.markdown()
    t = Thresholds()
    assert f"base top-1 ≥ {t.lock_p}" in md and f"above {t.plausible_p}" in md
    assert "top_k=20, top_p=0.95" in md
    assert "exact over the full vocabulary" in md


def test_a_truncation_that_leaves_no_lock_tail_says_so_instead_of_no_effect(tmp_path):
    # top_p 0.8 below every lock's top-1 (>= 0.9): at T = 1 no tail survives on either side, whatever SSD did
    record = _record(boost=3.0, top_p=0.8)
    test = record["frontier_test"]
    assert test["reading"] == "no_tail" and test["point"]["lock_tail"]["estimate"] == 0.0
    doc, metrics = _render(tmp_path, record)
    md = doc.markdown()
    assert "cannot be told from a temperature change at this decoding: the truncation (top_k=20, top_p=0.8" in md
    assert "where a tail remains, T = " in md  # the tuned curve says where a comparison is possible
    assert metrics["mechanism/reading"] == "no_tail"


def test_the_tuned_curve_of_the_base_itself_has_no_excess(beyond_record):
    same = _record(boost=0.0)["frontier_test"]["tuned_curve"]
    assert len(same) == len(beyond_record["frontier_test"]["frontier"])
    assert all(abs(c["excess"]) < 1e-12 for c in same if c["excess"] is not None)
    sharpened = [c for c in beyond_record["frontier_test"]["tuned_curve"] if c["excess"] is not None]
    assert max(c["excess"] for c in sharpened) > 0.005  # lock sharpening shows along the grid too
