"""The verdict gates training: the rule (stages/gate_training.py), the chain that stops or is forced (launch/runner.py),
the exit status and panels of `ssd run` (launch/cli.py), and the forced line of the report. Engine-free: run
directories with fixture verdicts and stub stages."""
from __future__ import annotations

import io
import json
import types
from dataclasses import replace

import pytest
from rich.console import Console

from megatron_ssd.config import SSDConfig
from megatron_ssd.errors import SSDError
from megatron_ssd.evaluation.decisions import verdict as verdicts
from megatron_ssd.evaluation.report.loading import load_run
from megatron_ssd.evaluation.report.sections import build
from megatron_ssd.launch import cli, runner
from megatron_ssd.launch import stages as stage_registry
from megatron_ssd.launch.results_table import forced_line
from megatron_ssd.rundir import CHAINS, RunDir
from megatron_ssd.stages.gate_training import ALLOWED_VERDICTS, decide_training


def make_run(tmp_path, **overrides) -> tuple[SSDConfig, RunDir]:
    cfg = replace(SSDConfig(), run_dir=str(tmp_path / "run"), runs_root=str(tmp_path / "runs"), **overrides)
    return cfg, RunDir.open(cfg)


def write_verdict(run: RunDir, value: str, config_hash: str | None = "run") -> None:
    record = {"verdict": value, "reason": f"fixture reason for {value}.", "alternative": "fixture alternative"}
    if config_hash is not None:
        record["config_hash"] = run.stored_config_hash() if config_hash == "run" else config_hash
    run.write_verdict(record)


ALL_VALUES = (*verdicts.VERDICTS, "GO-SSD (PROVISIONAL)", "PROVISIONAL-GO-SSD", "SOMETHING-NEW")


@pytest.mark.parametrize("arm", ["minimal", "verifier_aware"])
@pytest.mark.parametrize("value", ALL_VALUES)
def test_rule_allows_exactly_the_arms_verdicts(tmp_path, arm, value):
    cfg, run = make_run(tmp_path, arm=arm)
    write_verdict(run, value)
    gate = decide_training(cfg, run)
    expected = {"minimal": {verdicts.GO_SSD},
                "verifier_aware": {verdicts.GO_SSD, verdicts.GO_VERIFIER_AWARE}}[arm]
    assert gate.allowed == (value in expected) and gate.proceed == gate.allowed and not gate.forced
    assert gate.verdict == value and gate.reason == f"fixture reason for {value}."


def test_every_verdict_value_has_a_rule_for_each_arm():
    assert set(ALLOWED_VERDICTS) == {"minimal", "verifier_aware", "decode_only"}
    assert all(set(v) <= set(verdicts.VERDICTS) for v in ALLOWED_VERDICTS.values())


def test_a_provisional_verdict_stands(tmp_path):
    cfg, run = make_run(tmp_path)
    run.write_verdict({"verdict": verdicts.GO_SSD, "reason": "r", "provisional": True,
                       "config_hash": run.stored_config_hash()})
    gate = decide_training(cfg, run)
    assert gate.allowed and gate.provisional


def test_decode_only_never_trains_even_forced(tmp_path):
    cfg, run = make_run(tmp_path, arm="decode_only", force_train=True)
    write_verdict(run, verdicts.GO_SSD)
    gate = decide_training(cfg, run)
    assert not gate.proceed and "never trains" in gate.reason


def test_force_overrides_a_verdict_that_does_not_allow(tmp_path):
    cfg, run = make_run(tmp_path, force_train=True, force_reason="demo")
    write_verdict(run, verdicts.GO_OTHER)
    gate = decide_training(cfg, run)
    assert gate.proceed and gate.forced and not gate.allowed
    assert gate.record() == {"forced": True, "overrode_verdict": "GO-OTHER", "arm": "minimal",
                             "verdict_reason": "fixture reason for GO-OTHER.", "force_reason": "demo"}
    write_verdict(run, verdicts.GO_SSD)
    assert not decide_training(cfg, run).forced  # nothing to override


@pytest.mark.parametrize("force", [False, True])
def test_missing_or_foreign_verdict_is_refused_naming_which(tmp_path, force):
    cfg, run = make_run(tmp_path, force_train=force)
    with pytest.raises(SSDError, match=r"no verdict at .*verdict.json.*ssd diagnose run_dir="):
        decide_training(cfg, run)
    write_verdict(run, verdicts.GO_SSD, config_hash="0123456789abcdef")
    with pytest.raises(SSDError, match=r"computed for another config \(hash 0123456789"):
        decide_training(cfg, run)
    write_verdict(run, verdicts.GO_SSD, config_hash=None)
    with pytest.raises(SSDError, match=r"has no config hash"):
        decide_training(cfg, run)


# ------------------------------------------------------------------------------------- the chain, stub stages
@pytest.fixture
def stub_stages(monkeypatch):
    """Every stage replaced by a stub that records its call; `diagnose` writes the verdict `state["verdict"]`."""
    state = {"verdict": verdicts.GO_OTHER, "calls": []}

    def module_for(name):
        def run(cfg, ctx):
            state["calls"].append(name)
            if name == "diagnose":
                write_verdict(ctx.run, state["verdict"])
            if name == "report":
                ctx.run.stage_dir("report")
                (ctx.run.report_dir / "report.md").write_text("stub report\n")
            return {"stub": name}
        return types.SimpleNamespace(run=run)

    specs = {name: types.SimpleNamespace(name=name, description=spec.description, load=lambda n=name: module_for(n))
             for name, spec in stage_registry.STAGES.items()}
    monkeypatch.setattr(runner, "STAGES", specs)
    monkeypatch.setattr(runner, "release_engines", lambda: None)
    return state


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def test_chain_stops_on_a_verdict_that_does_not_allow_and_writes_the_report(tmp_path, stub_stages):
    cfg, run = make_run(tmp_path)
    outcomes = runner.run_chain(cfg, run, quiet_console())
    status = {o.stage: o.status for o in outcomes}
    assert status == {"prompts": "ran", "diagnose": "ran", **{s: "stopped" for s in CHAINS["minimal"][2:]}}
    assert stub_stages["calls"] == ["prompts", "diagnose", "report"]  # the report of what exists
    assert (run.report_dir / "report.md").exists() and not run.is_done("report")  # a forced rerun rewrites it
    assert runner.gate_stop(outcomes).verdict == "GO-OTHER" and not runner.chain_complete(outcomes)
    assert run.training_override() is None


def test_chain_trains_on_an_allowing_verdict(tmp_path, stub_stages):
    stub_stages["verdict"] = verdicts.GO_VERIFIER_AWARE
    cfg, run = make_run(tmp_path, arm="verifier_aware")
    outcomes = runner.run_chain(cfg, run, quiet_console())
    assert runner.chain_complete(outcomes) and runner.gate_stop(outcomes) is None
    assert stub_stages["calls"] == list(CHAINS["verifier_aware"])
    assert "forced" not in run.done_info("train")["summary"]


def test_forced_chain_records_the_override_everywhere(tmp_path, stub_stages):
    stub_stages["verdict"] = verdicts.UNDECIDED
    cfg, run = make_run(tmp_path)
    assert runner.gate_stop(runner.run_chain(cfg, run, quiet_console())) is not None
    forced = replace(cfg, force_train=True, force_reason="show the chain")  # operational: same run directory
    outcomes = runner.run_chain(forced, RunDir.open(forced), quiet_console())
    assert runner.chain_complete(outcomes)
    train = run.done_info("train")["summary"]
    assert train["forced"] is True and train["overrode_verdict"] == "UNDECIDED"
    record = run.training_override()
    assert record["overrode_verdict"] == "UNDECIDED" and record["force_reason"] == "show the chain"
    assert run.read_manifest()["overrides"]["training_gate"] == record
    text = build(load_run(run.path), {}).markdown()
    first = text[: text.index("run directory")]  # before the run's first list
    assert "forced past the precondition verdict UNDECIDED" in first and "show the chain" in first


def test_ssd_run_exit_status_and_panels(tmp_path, stub_stages, monkeypatch):
    out = quiet_console()
    monkeypatch.setattr(cli, "console", out)
    cfg, _ = make_run(tmp_path)
    assert cli.execute(cfg) == cli.EXIT_STOPPED_BY_VERDICT
    text = out.file.getvalue()
    assert "SSD stopped by the precondition verdict" in text and "fixture reason for GO-OTHER." in text
    assert "fixture alternative" in text and "force_train=true" in text and "exit status 4" in text
    # a single training stage asked for by name is gated the same way
    assert cli.execute(replace(cfg, stage="sample")) == cli.EXIT_STOPPED_BY_VERDICT
    assert cli.EXIT_STOPPED_BY_VERDICT not in (0, 1, cli.EXIT_USER_ERROR, cli.EXIT_INCOMPLETE)


def test_forced_line_in_the_result_panel(tmp_path):
    _, run = make_run(tmp_path)
    assert forced_line(run) is None
    run.write_training_override({"forced": True, "overrode_verdict": "GO-OTHER", "arm": "minimal",
                                 "force_reason": "the embedded default shows the whole chain"})
    line = forced_line(run)
    assert "TRAINING FORCED" in line and "GO-OTHER" in line and "the embedded default" in line
