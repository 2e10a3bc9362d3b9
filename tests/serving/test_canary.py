"""The canary report from telemetry (per checkpoint, canary share, shadow pairs, sandboxed pass rates) and the
report's Promotion section, on a synthetic run directory: no server."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_ssd.config import SSDConfig
from megatron_ssd.evaluation.report import render_report
from megatron_ssd.launch import canary_report
from megatron_ssd.problems import Problem
from megatron_ssd.rundir import RunDir, append_jsonl
from megatron_ssd.serving.canary import build_report
from megatron_ssd.serving.routing import key_digest, route

GOOD = "```python\ndef f(x):\n    return 2 * x\n```"
BAD = "```python\ndef f(x):\n    return x\n```"


def problem(pid):
    return Problem(problem_id=pid, source="test", question="double x", style="humaneval",
                   starter_code="def f(x):\n    '''Return 2*x.'''\n", entry_point="f",
                   test_code="def check(candidate):\n    assert candidate(2) == 4\n")


def call(i, mode, checkpoint, text, *, shadow_text=None, problem_id=None, share=None, user=None, **extra):
    out = {"time": f"2026-12-07T00:00:{i:02d}.000+00:00", "request_id": f"r{i}", "endpoint": "chat.completions",
           "mode": mode, "stream": False, "key_source": "user", "key_hash": key_digest(user or f"r{i}", "s"),
           "routed": checkpoint, "checkpoint": checkpoint, "fallback": None, "status": 200,
           "latency_s": 0.1 + i / 100, "prompt_tokens": 5, "completion_tokens": len(text.split()),
           "finish_reason": "stop", "outputs": [{"text": text, "finish_reason": "stop"}], "problem_id": problem_id,
           "sample_idx": None, "shadow": None}
    if share is not None:
        out["share"] = share
    if shadow_text is not None:
        out["shadow"] = {"checkpoint": "ssd", "status": 200, "latency_s": 0.2, "prompt_tokens": 5,
                         "completion_tokens": len(shadow_text.split()), "finish_reason": "stop",
                         "outputs": [{"text": shadow_text, "finish_reason": "stop"}]}
    out.update(extra)
    return out


def telemetry():
    calls = [call(i, "shadow", "base", BAD if i % 2 else GOOD, shadow_text=GOOD, problem_id=f"p{i}")
             for i in range(6)]
    for j, user in enumerate(f"u{k}" for k in range(20)):
        routed = route("canary", 0.5, key_digest(user, "s")).primary
        calls.append(call(10 + j, "canary", routed, "I'm sorry, I can't help with that." if j == 0 else "ok",
                          share=0.5, user=user))
    calls.append(call(40, "ssd", "base", "fine", routed="ssd", fallback={"from": "ssd", "reason": "ConnectError"}))
    calls.append({"time": "2026-12-07T00:00:41.000+00:00", "request_id": "r41", "endpoint": "chat.completions",
                  "mode": "ssd", "checkpoint": None, "status": 400, "error": "bad json"})
    return calls


@pytest.fixture
def problems():
    return {f"p{i}": problem(f"p{i}") for i in range(6)}


def test_the_report_summarises_checkpoints_canary_shadow_pairs_and_pass_rates(problems):
    from megatron_ssd.evaluation.sandbox.runner import SandboxConfig

    events = [{"time": "t0", "event": "mode", "mode": "canary", "share": 0.5, "source": "admin API"},
              {"time": "t1", "event": "upstream-down", "checkpoint": "ssd", "reason": "exited"}]
    r = build_report(telemetry(), events, problems=problems, splits={p: "eval" for p in problems},
                     sandbox=SandboxConfig(), offline={"base": {"pass_at_k": {"1": {"estimate": 0.5}}}},
                     bootstrap_samples=200)
    base, ssd = r["checkpoints"]["base"], r["checkpoints"]["ssd"]
    assert base["served"] == 6 + sum(1 for c in telemetry() if c.get("mode") == "canary" and c["checkpoint"] ==
                                     "base") + 1
    assert ssd["shadow"] == 6 and base["latency_s"]["p50"] > 0 and base["finish_reasons"] == {"stop": base["answers"]}
    refusals = base["refusal"]["count"] + ssd["refusal"]["count"]
    assert refusals == 1 and all(c["refusal"]["ci_high"] > c["refusal"]["estimate"] for c in (base, ssd))
    (share,) = r["canary"]["by_share"]
    assert share["keys"] == 20 and share["realised"]["ci_low"] < 0.5 < share["realised"]["ci_high"]
    assert r["fallbacks"]["count"] == 1 and r["errors"] == {"400": 1}
    assert r["mode_changes"][0]["mode"] == "canary" and r["upstream_down"][0]["checkpoint"] == "ssd"
    s = r["shadow"]
    assert s["pairs"] == 6 and s["identical_text"] == 3 and "length_median" in s["battery"]["probes"]
    assert [p["ssd"]["passed"] for p in s["listed"]] == [True] * 6
    assert [p["base"]["passed"] for p in s["listed"]] == [i % 2 == 0 for i in range(6)]
    p = r["pass_rates"]
    assert p["status"] == "scored" and p["isolation"] == ["bwrap"]
    assert p["by_checkpoint"]["base"]["estimate"] == pytest.approx(0.5)
    assert p["by_checkpoint"]["ssd"]["estimate"] == 1.0 and p["by_checkpoint"]["ssd"]["ci_low"] < 1.0
    assert p["paired_ssd_minus_base"]["delta"] == pytest.approx(0.5) and p["offline_pass@1"]["base"]["estimate"] == 0.5


def test_unscored_and_unknown_problems_are_said_not_guessed(problems):
    calls = [call(0, "shadow", "base", GOOD, shadow_text=GOOD, problem_id="elsewhere/1")]
    r = build_report(calls, [], problems=problems, sandbox=None)
    assert r["pass_rates"]["status"] == "not scored" and any("not problems of this run" in n for n in r["notes"])
    r = build_report([call(0, "base", "base", "hi")], [])
    assert r["pass_rates"]["status"] == "none" and r["canary"] is None and r["shadow"] is None


def make_run(tmp_path, problems) -> RunDir:
    run = RunDir.open(SSDConfig(run_dir=str(tmp_path / "run")))
    rows = [dict(p.to_row(), split="eval") for p in problems.values()]
    run.prompts_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), run.prompts_path)
    return run


def test_canary_report_command_writes_the_json_and_the_promotion_section(tmp_path, problems, capsys):
    run = make_run(tmp_path, problems)
    render_report(run.path)
    md = (run.report_dir / "report.md").read_text()
    assert "## Promotion: shadow and canary serving" in md and "not run." in md and "ssd serve-mode" in md
    assert canary_report.main([f"run_dir={run.path}"]) == 2  # no telemetry yet: one paragraph, exit 2
    for row in telemetry():
        append_jsonl(run.telemetry_path, row)
    append_jsonl(run.serve_events_path, {"time": "2026-12-07T00:00:09", "event": "mode", "mode": "canary",
                                         "share": 0.5, "source": "ssd serve-mode", "reason": "ramp up"})
    assert canary_report.main([f"run_dir={run.path}"]) == 0
    saved = json.loads(run.canary_report_path.read_text())
    assert saved["schema"] == "megatron-ssd/canary-report/v1" and saved["telemetry"]["records"] == len(telemetry())
    md = (run.report_dir / "report.md").read_text()
    section = md[md.index("## Promotion"):]
    section = section[:section.index("\n## ", 5)]
    for needle in ("latency p50 / p95", "realised share of keys", "pass rate on the endpoint", "Shadow pairs",
                   "mode canary (share 0.5) (ssd serve-mode: ramp up)", "answered by base: ConnectError",
                   "ssd serve-mode run_dir="):
        assert needle in section, needle
    assert "rerun `ssd canary-report" not in section
    append_jsonl(run.telemetry_path, call(50, "base", "base", "later"))
    render_report(run.path)
    assert "rerun `ssd canary-report" in (run.report_dir / "report.md").read_text()  # stale: says so


def test_the_rollback_line_points_at_the_one_flip(tmp_path, problems):
    run = make_run(tmp_path, problems)
    render_report(run.path)
    md = (run.report_dir / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("**Rollback**"))
    assert f"ssd serve-mode run_dir={run.path} mode=base" in line
