"""Outcome classification from harness record streams (no processes involved)."""
import signal

from megatron_ssd.evaluation.sandbox.protocol import ProtocolDecoder


def run(style, records, expected=(), nonce="n0", **finish):
    judge = ProtocolDecoder(style, list(expected), nonce, 2.0)
    for rec in records:
        if judge.feed(rec):
            break
    return judge.finish(timed_out=finish.get("timed_out", False), returncode=finish.get("returncode", 0))


READY, DONE = {"ev": "ready"}, {"ev": "done", "nonce": "n0"}


def ok_exit(case=None, stdout=None, code=0):
    return {"ev": "exit", "child": 0, "case": case, "exit_code": code, "signal": None, "killed_for": None,
            "stdout": stdout, "stdout_bytes": len(stdout or ""), "stderr_tail": "", "time_s": 0.1}


def test_humaneval_pass_needs_completion_and_nonce():
    completed = {"ev": "msg", "child": 0, "msg": {"ev": "completed"}}
    assert run("humaneval", [READY, completed, ok_exit(), DONE]).outcome == "passed"
    forged = run("humaneval", [READY, completed, ok_exit(), {"ev": "done", "nonce": "guess"}])
    assert forged.outcome == "sandbox-violation" and "nonce" in forged.reason
    no_done = run("humaneval", [READY, completed, ok_exit()], returncode=-9)
    assert no_done.outcome == "sandbox-violation"
    early = run("humaneval", [READY, ok_exit(code=0), DONE])
    assert early.outcome == "failed" and "before the tests completed" in early.reason


def test_not_started_is_retryable_crash():
    v = run("humaneval", [], returncode=1)
    assert v.outcome == "crash" and v.infra


def test_timeouts_memory_and_signals():
    timeout = dict(ok_exit(), killed_for="timeout", exit_code=None)
    assert run("humaneval", [READY, timeout, DONE]).outcome == "timeout"
    xcpu = dict(ok_exit(), exit_code=None, signal=int(signal.SIGXCPU))
    assert run("humaneval", [READY, xcpu, DONE]).outcome == "timeout"
    segv = dict(ok_exit(), exit_code=None, signal=int(signal.SIGSEGV))
    assert run("humaneval", [READY, segv, DONE]).outcome == "crash"
    mem = {"ev": "msg", "child": 0, "msg": {"ev": "memory", "phase": "tests"}}
    assert run("humaneval", [READY, mem, DONE]).outcome == "memory"
    assert run("humaneval", [READY], timed_out=True).outcome == "timeout"


def test_status_pipe_garbage_is_a_violation():
    for msg in ({"ev": "forged-completion"}, {"ev": "garbled", "bytes": 3}, {"ev": "whatever"}):
        v = run("humaneval", [READY, {"ev": "msg", "child": 0, "msg": msg}, DONE])
        assert v.outcome == "sandbox-violation"


def test_stdin_cases_compared_outside():
    recs = [READY, ok_exit(0, "3\n"), ok_exit(1, " 30 "), DONE]
    assert run("stdin", recs, ["3", "30\n"]).outcome == "passed"
    wrong = run("stdin", [READY, ok_exit(0, "3\n"), ok_exit(1, "31\n"), DONE], ["3", "30"])
    assert wrong.outcome == "failed" and wrong.failed_case == 1 and "wrong answer on test 1" in wrong.reason
    crashed = run("stdin", [READY, ok_exit(0, "", code=1), DONE], ["3"])
    assert crashed.outcome == "failed" and "exit code 1" in crashed.reason
    missing = run("stdin", [READY, ok_exit(0, "3"), DONE], ["3", "4"])
    assert missing.outcome == "failed" and missing.failed_case == 1


def test_functional_values_compared_outside():
    def value(i, v):
        return {"ev": "msg", "child": 0, "msg": {"ev": "value", "i": i, "value": v}}

    done = {"ev": "msg", "child": 0, "msg": {"ev": "completed"}}
    good = [READY, value(0, "[0, 1]"), value(1, "[1, 2]"), done, ok_exit(), DONE]
    assert run("functional", good, ["[0,1]", "[1,2]"]).outcome == "passed"
    bad = [READY, value(0, "[0, 1]"), value(1, "[2, 1]"), done, ok_exit(), DONE]
    v = run("functional", bad, ["[0,1]", "[1,2]"])
    assert v.outcome == "failed" and v.failed_case == 1
    stray = [READY, value(5, "[0, 1]"), DONE]
    assert run("functional", stray, ["[0,1]"]).outcome == "sandbox-violation"
