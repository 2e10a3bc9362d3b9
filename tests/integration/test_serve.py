"""`ssd serve` for real (issue 26): the embedded default's base and SSD checkpoints in two vLLM servers on CPU,
the router in front on 127.0.0.1, talked to with the `openai` client.

One `ssd serve` for the module (both servers start together, ~30 s on 2 cores); the tests run in file order and the
last two are destructive (they kill the SSD server, then the command itself). The run directory is a copy of the
shared sweep's point (its export linked, not copied: serving only reads it)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from megatron_ssd import runlock
from megatron_ssd.rundir import RunDir
from megatron_ssd.serving.routing import key_digest, route
from megatron_ssd.serving.upstream import group_members

from embedded import SSD, ssd

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def served(embedded_sweep, tmp_path_factory):
    source = Path(embedded_sweep.points[1.1])
    run_dir = tmp_path_factory.mktemp("serve") / "run"
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("export", ".ssd.*", "wandb"))
    (run_dir / "export").symlink_to(source / "export", target_is_directory=True)
    run = RunDir(run_dir)
    log = open(run_dir / "serve_command.log", "w")
    started = time.monotonic()
    proc = subprocess.Popen([SSD, "serve", f"run_dir={run_dir}", "port=0", "kv_gib=1", "mode=shadow"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    while not run.serve_state_path.exists():
        if proc.poll() is not None or time.monotonic() - started > START_TIMEOUT_S:
            proc.kill()
            pytest.fail(f"ssd serve did not start:\n{(run_dir / 'serve_command.log').read_text()[-4000:]}")
        time.sleep(0.2)
    state = json.loads(run.serve_state_path.read_text())
    print(f"ssd serve ready after {time.monotonic() - started:.1f} s", file=sys.stderr)
    yield run, state, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    log.close()


def client(state):
    return openai.OpenAI(base_url=state["url"] + "/v1", api_key="unused", max_retries=0)


def chat(state, content, **kw):
    raw = client(state).chat.completions.with_raw_response.create(
        model=state["model_name"], messages=[{"role": "user", "content": content}], max_tokens=kw.pop("max_tokens", 4),
        **kw)
    return raw.headers, raw.parse()


def records(run, n, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        rows = run.telemetry([]) or []
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def serve_mode(run, *args):
    result = ssd("serve-mode", f"run_dir={run.path}", *args)
    assert result.returncode == 0, result.stderr
    return result


def _unused_scratch(run) -> list[str]:
    """Scratch files the run recorded that still exist but no live process uses."""
    registry = run.path / runlock.SCRATCH_FILE
    recorded = [p for p in registry.read_text().split() if Path(p).exists()] if registry.exists() else []
    busy = runlock.files_in_use()
    return [p for p in recorded if p not in busy]


def test_shadow_answers_come_from_base_and_both_answers_are_logged(served):
    run, state, _ = served
    headers, out = chat(state, "Write a Python function that adds two numbers.", max_tokens=8)
    assert headers["x-ssd-checkpoint"] == "base" and out.model_extra["ssd_checkpoint"] == "base"
    c = client(state)
    text = "".join(ch.choices[0].text for ch in c.completions.create(
        model=state["model_name"], prompt="def add(a, b):", max_tokens=4, stream=True) if ch.choices)
    rows = records(run, 2)
    chat_row = next(r for r in rows if r["request_id"] == headers["x-request-id"])
    stream_row = next(r for r in rows if r["stream"])
    assert chat_row["request_id"] == headers["x-request-id"] and chat_row["checkpoint"] == "base"
    assert chat_row["outputs"][0]["text"] == out.choices[0].message.content
    assert chat_row["completion_tokens"] == out.usage.completion_tokens and chat_row["finish_reason"]
    assert chat_row["shadow"]["checkpoint"] == "ssd" and chat_row["shadow"]["status"] == 200
    assert isinstance(chat_row["shadow"]["outputs"][0]["text"], str) and chat_row["shadow"]["completion_tokens"]
    assert stream_row["stream"] and stream_row["outputs"][0]["text"] == text and stream_row["completion_tokens"]


def test_canary_routes_each_key_to_one_checkpoint_and_a_flip_needs_no_restart(served):
    run, state, _ = served
    pids = {n: s["pid"] for n, s in state["servers"].items()}
    serve_mode(run, "mode=canary", "share=0.5", "reason=test ramp")
    salt = run.stored_config_hash()
    users = [f"user-{i}" for i in range(12)]
    got = {u: {chat(state, "hi", user=u, max_tokens=1)[0]["x-ssd-checkpoint"] for _ in range(2)} for u in users}
    assert all(len(v) == 1 for v in got.values())
    assert {u: v.pop() for u, v in got.items()} == {u: route("canary", 0.5, key_digest(u, salt)).primary
                                                    for u in users}
    serve_mode(run, "mode=base")
    assert {chat(state, "hi", user=u, max_tokens=1)[0]["x-ssd-checkpoint"] for u in users[:4]} == {"base"}
    assert json.loads(run.serve_state_path.read_text())["servers"]["ssd"]["pid"] == pids["ssd"]  # same servers
    modes = [e for e in run.serve_events() if e["event"] == "mode"]
    assert [m["mode"] for m in modes[-2:]] == ["canary", "base"] and modes[-2]["reason"] == "test ramp"
    serve_mode(run, "mode=shadow")


def test_malformed_requests_get_openai_style_4xx(served):
    _, state, _ = served
    url = state["url"] + "/v1/chat/completions"
    bad_json = httpx.post(url, content=b'{"model": ', headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.NotFoundError):
        client(state).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client(state).completions.create(model=state["model_name"], prompt="hi " * 1100, max_tokens=4)


def test_replayed_eval_problems_are_scored_into_the_promotion_section(served):
    run, _, _ = served
    replayed = ssd("canary-replay", f"run_dir={run.path}", "n=2", "max_tokens=48")
    assert replayed.returncode == 0, replayed.stderr
    reported = ssd("canary-report", f"run_dir={run.path}")
    assert reported.returncode == 0, reported.stderr
    report = run.canary_report()
    rates = report["pass_rates"]
    assert rates["status"] == "scored" and set(rates["by_checkpoint"]) == {"base", "ssd"}
    assert all(r["problems"] == 2 and r["ci_low"] <= r["estimate"] <= r["ci_high"]
               for r in rates["by_checkpoint"].values())
    assert report["shadow"]["pairs"] >= 3 and report["checkpoints"]["ssd"]["shadow"] >= 3
    md = (run.report_dir / "report.md").read_text()
    assert "## Promotion: shadow and canary serving" in md and "pass rate on the endpoint" in md


def test_killing_the_ssd_server_falls_back_to_base_and_logs_it(served):
    run, state, _ = served
    ssd_pid = state["servers"]["ssd"]["pid"]
    os.kill(ssd_pid, signal.SIGKILL)
    serve_mode(run, "mode=ssd")
    headers, out = chat(state, "hi")
    assert headers["x-ssd-checkpoint"] == "base" and headers["x-ssd-fallback"] == "ssd unavailable"
    row = records(run, 1)[-1]
    assert row["routed"] == "ssd" and row["checkpoint"] == "base" and row["fallback"]["from"] == "ssd"
    deadline = time.monotonic() + 10
    while not any(e["event"] == "upstream-down" for e in run.serve_events()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(e["event"] == "upstream-down" and e["checkpoint"] == "ssd" for e in run.serve_events())
    deadline = time.monotonic() + 15
    while group_members(ssd_pid) and time.monotonic() < deadline:  # its engine core, killed by the monitor
        time.sleep(0.1)
    assert not group_members(ssd_pid)
    # the monitor removes the dead server's shared memory once its group is gone: what is left is the base's
    deadline = time.monotonic() + 15
    while _unused_scratch(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _unused_scratch(run)


def test_kill_9_of_the_command_takes_its_servers_down(served):
    run, state, proc = served
    base_pid = state["servers"]["base"]["pid"]
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 30
    while group_members(base_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_members(base_pid)
    # what the servers left in /dev/shm is recorded for the run's next owner, which removes it (as we do here)
    registry = run.path / runlock.SCRATCH_FILE
    left = [Path(p) for p in registry.read_text().split()] if registry.exists() else []
    runlock.remove_scratch(run.path)
    assert not [p for p in left if p.exists()]
