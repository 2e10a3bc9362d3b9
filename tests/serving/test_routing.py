"""Routing (the canary hash), the telemetry writer, the router's control files and the serving commands' options:
pure functions and files, no server."""
import json
import math
import os

import pytest

from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.launch.options import parse
from megatron_ssd.launch.serve import ServeOptions, serve
from megatron_ssd.rundir import RunDir, append_jsonl, read_jsonl
from megatron_ssd.serving import control
from megatron_ssd.serving.routing import (BASE, SSD, bucket, check_mode, key_digest, route, routing_key)
from megatron_ssd.serving.telemetry import StreamAccumulator, Telemetry, answer_fields

SALT = "run-hash"


def test_canary_share_over_200_keys_is_within_binomial_bounds_and_stable():
    keys = [f"user-{i}" for i in range(200)]
    to_ssd = [route("canary", 0.5, key_digest(k, SALT)).primary == SSD for k in keys]
    # 99.9% two-sided binomial bounds for n=200, p=0.5: 100 ± 3.29·√50
    assert abs(sum(to_ssd) - 100) <= 3.29 * math.sqrt(50)
    again = [route("canary", 0.5, key_digest(k, SALT)).primary == SSD for k in keys]
    assert again == to_ssd  # a key always lands on the same checkpoint


def test_raising_the_share_only_adds_keys_and_salts_draw_independent_populations():
    keys = [f"k{i}" for i in range(500)]
    at = {s: {k for k in keys if route("canary", s, key_digest(k, SALT)).primary == SSD} for s in (0.05, 0.2, 0.6)}
    assert at[0.05] <= at[0.2] <= at[0.6]
    other = {k for k in keys if route("canary", 0.2, key_digest(k, "another-run")).primary == SSD}
    assert other != at[0.2] and len(other & at[0.2]) < len(at[0.2])
    assert all(0.0 <= bucket(key_digest(k, SALT)) < 1.0 for k in keys)


def test_modes_route_as_documented():
    d = key_digest("u", SALT)
    assert route("shadow", 0.5, d) == route("shadow", 0.0, d) and route("shadow", 0.5, d).primary == BASE
    assert route("shadow", 0.5, d).shadow and not route("canary", 0.5, d).shadow
    assert route("base", 1.0, d).primary == BASE and route("ssd", 0.0, d).primary == SSD
    assert route("canary", 0.0, d).primary == BASE and route("canary", 1.0, d).primary == SSD


def test_routing_key_prefers_user_then_header_then_request_id():
    assert routing_key({"user": "alice"}, {"x-ssd-routing-key": "s1"}, "r1") == ("alice", "user")
    assert routing_key({}, {"x-ssd-routing-key": "s1"}, "r1") == ("s1", "header")
    assert routing_key({"user": ""}, {}, "r1") == ("r1", "request_id")


@pytest.mark.parametrize("mode,share", [("sideways", 0.1), ("canary", 1.5), ("canary", "lots")])
def test_bad_modes_and_shares_are_refused(mode, share):
    with pytest.raises(ValueError, match="mode=|share="):
        check_mode(mode, share)


def test_answer_fields_and_stream_accumulation():
    body = {"choices": [{"index": 1, "message": {"content": "b"}, "finish_reason": "length"},
                        {"index": 0, "message": {"content": "a"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    f = answer_fields(body, "chat.completions", log_text=True)
    assert f["finish_reason"] == "stop" and [o["text"] for o in f["outputs"]] == ["a", "b"]
    assert answer_fields(body, "chat.completions", log_text=False)["outputs"][0] == {
        "chars": 1, "empty": False, "finish_reason": "stop"}
    acc = StreamAccumulator("completions")
    for chunk in ({"choices": [{"index": 0, "text": "de"}]}, {"choices": [{"index": 0, "text": "f", "finish_reason":
                                                                          "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}):
        acc.add(chunk)
    assert acc.fields(True) == {"prompt_tokens": 1, "completion_tokens": 2, "finish_reason": "stop",
                                "outputs": [{"text": "def", "finish_reason": "stop"}]}


def test_a_record_is_written_once_when_answer_and_shadow_are_both_in(tmp_path):
    t = Telemetry(tmp_path / "calls.jsonl", tmp_path / "events.jsonl")
    rec = t.call(request_id="r1", shadow=None)
    rec.expect_shadow()
    rec.finish_primary(status=200)
    assert not (tmp_path / "calls.jsonl").exists()  # still waiting for the shadow
    rec.finish_shadow({"status": 200})
    rec.finish_shadow({"status": 500})  # a second finish is ignored
    rows = read_jsonl(tmp_path / "calls.jsonl")
    assert rows == [{"time": rows[0]["time"], "request_id": "r1", "shadow": {"status": 200}, "status": 200}]
    pending = t.call(request_id="r2")
    pending.expect_shadow()
    pending.finish_primary(status=200)
    assert t.flush_pending("stopped") == 1
    assert read_jsonl(tmp_path / "calls.jsonl")[1]["shadow"] == {"skipped": "stopped"}


def test_a_partial_last_line_is_skipped_with_a_note(tmp_path):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"a": 2, "trunc')  # a router killed mid-write
    notes: list[str] = []
    assert read_jsonl(path, notes) == [{"a": 1}] and notes


def run_dir(tmp_path) -> RunDir:
    from megatron_ssd.config import SSDConfig

    return RunDir.open(SSDConfig(run_dir=str(tmp_path / "run")))


def test_the_mode_resumes_from_the_last_recorded_one(tmp_path):
    run = run_dir(tmp_path)
    assert control.starting_mode(run, None, None) == ("shadow", 0.05, "command line")
    result = control.set_mode(run, "canary", 0.2, "ramp")  # no router running: recorded for the next start
    assert result == {"live": False, "mode": "canary", "share": 0.2}
    assert control.starting_mode(run, None, None)[:2] == ("canary", 0.2)
    assert control.starting_mode(run, "base", None)[:2] == ("base", 0.2)  # the command line wins, share kept
    with pytest.raises(SSDError, match="choose one of"):
        control.set_mode(run, "everything", None)


def test_state_file_is_private_and_ignored_once_its_process_is_gone(tmp_path):
    run = run_dir(tmp_path)
    control.write_state(run, {"pid": os.getpid(), "url": "http://127.0.0.1:1", "admin_token": "t"})
    assert oct(run.serve_state_path.stat().st_mode & 0o777) == "0o600"
    assert control.read_state(run)["url"] == "http://127.0.0.1:1"
    control.write_state(run, {"pid": 2 ** 22 + 12345, "url": "x"})  # no such process
    assert control.read_state(run) is None
    control.clear_state(run, 2 ** 22 + 12345)
    assert not run.serve_state_path.exists()


def test_options_name_unknown_keys_and_bad_types():
    opts = parse(ServeOptions, ["run_dir=r", "mode=canary", "share=0.1", "port=0"], "ssd serve")
    assert (opts.mode, opts.share, opts.port, opts.host) == ("canary", 0.1, 0, "127.0.0.1")
    with pytest.raises(ConfigError, match="Did you mean share"):
        parse(ServeOptions, ["run_dir=r", "shares=0.1"], "ssd serve")
    with pytest.raises(ConfigError, match="port"):
        parse(ServeOptions, ["port=eighty"], "ssd serve")


def test_serve_refuses_a_public_bind_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("SSD_SERVE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="needs an API key"):
        serve(ServeOptions(run_dir=str(tmp_path), host="0.0.0.0"), console=None)
    empty = tmp_path / "key"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        serve(ServeOptions(run_dir=str(tmp_path), host="0.0.0.0", api_key_file=str(empty)), console=None)


def test_serve_refuses_a_run_without_an_export(tmp_path):
    run = run_dir(tmp_path)
    with pytest.raises(SSDError, match="no exported model"):
        serve(ServeOptions(run_dir=str(run.path)), console=None)
    assert json.loads(run.manifest_path.read_text())  # nothing was broken


def test_a_record_that_cannot_be_written_is_counted_not_fatal(tmp_path):
    (tmp_path / "calls.jsonl").mkdir()  # writing it fails with an OSError, as a full disk would
    t = Telemetry(tmp_path / "calls.jsonl", tmp_path / "events.jsonl")
    t.call(request_id="r1").finish_primary(status=200)
    assert t.lost == 1
