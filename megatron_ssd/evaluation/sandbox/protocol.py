"""Turning the harness's record stream into one outcome per sample.

Outcomes and how each is detected (the harness protocol is described in `harness.py`):

- ``passed``: humaneval/assert: the child reported that the tests completed, exited 0, no tampering was seen and the
  harness's final record carries the run's nonce. functional/stdin: every test case's return value / stdout matched
  the expected output (compared here, outside the sandbox) and the final record carries the nonce.
- ``failed``: a wrong answer, an exception (assertion or other) in the program or the tests, a syntax error, a
  non-zero exit, ``sys.exit``/``os._exit`` before the tests completed, a value that is not JSON, or an output flood
  (stdout/stderr over the cap: the child is killed at the cap).
- ``timeout``: the harness killed a child at the per-case wall-clock limit, the kernel stopped it at RLIMIT_CPU
  (SIGXCPU), or the evaluator's outer wall clock fired and the whole sandbox was killed.
- ``memory``: the program raised ``MemoryError`` under RLIMIT_AS (reported by the child, or seen in its stderr
  when it died of it).
- ``crash``: the child died of a signal (SIGSEGV from a stack overflow, SIGABRT, SIGKILL it sent itself ...), the
  harness hit an internal error, or the sandbox could not be started after retries.
- ``sandbox-violation``: the program tampered with the harness: it replaced builtins or stdlib functions, returned a
  program-defined object that could fake equality, wrote garbage to the harness's status pipe, or the harness
  ended without its nonce-carrying final record (e.g. the program killed its parent).

Graders of stdin/functional problems (`SandboxJob.grader`): ``native`` (each stdin test in a fresh process, stdout
read from fd 1; `compare.stdout_matches` / `json_value_matches`) and ``livecodebench`` (LiveCodeBench's `run_test`:
all tests in one process, its sys.stdout captured and sent on the status pipe, return values as exact tagged
values; `compare.lcb_stdout_matches` / `lcb_value_matches`). The outcomes above mean the same under both.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from .compare import json_value_matches, lcb_stdout_matches, lcb_value_matches, lcb_value_text, preview, stdout_matches

OUTCOMES = ("passed", "failed", "timeout", "memory", "crash", "sandbox-violation")
NO_TESTS = "no-tests"  # not executed: the problem has no tests (counted, never part of pass@k)
NATIVE, LIVECODEBENCH = "native", "livecodebench"
GRADERS = (NATIVE, LIVECODEBENCH)  # how stdin/functional problems are scored (see above)


@dataclass
class SampleOutcome:
    outcome: str
    reason: str = ""
    failed_case: int | None = None
    infra: bool = False  # the sandbox itself failed to start: worth a retry

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass
class ProtocolDecoder:
    """Consumes harness records as they stream in; `feed` returns True once the outcome is final."""

    style: str
    expected: list[str] = field(default_factory=list)
    nonce: str = ""
    case_timeout_s: float = 0.0
    sample_outcome: SampleOutcome | None = None
    ready: bool = False
    done: bool = False
    completed: bool = False
    cases_ok: set = field(default_factory=set)
    harness_error: str | None = None
    harness_error_retryable: bool = False
    pgids: list = field(default_factory=list)  # process groups the harness created (host pids in fallback mode)
    cpu_s: float | None = None  # CPU seconds inside the sandbox (harness + children), from the final record
    program_exit: dict | None = None  # humaneval/assert: how the program's process ended while the tests waited
    grader: str = NATIVE  # stdin/functional: native | livecodebench (GRADERS)

    # -------------------------------------------------------------------------------------------- feeding
    def feed(self, rec: dict[str, Any]) -> bool:
        ev = rec.get("ev")
        if ev == "spawned" and isinstance(rec.get("pgid"), int):
            self.pgids.append(rec["pgid"])
        if self.sample_outcome is not None:
            return True
        if ev == "ready":
            self.ready = True
        elif ev == "spawned":
            pass
        elif ev == "msg":
            self._message(rec.get("msg") or {})
        elif ev == "exit":
            self._exit(rec)
        elif ev == "harness-error":
            self.harness_error = str(rec.get("message", ""))[:300]
            self.harness_error_retryable = bool(rec.get("retryable"))
        elif ev == "done":
            if rec.get("nonce") != self.nonce:
                self._decide("sandbox-violation", "the harness's final record does not carry this run's nonce "
                                                  "(forged or corrupted result channel)")
            else:
                self.done = True
                if isinstance(rec.get("cpu_s"), (int, float)):
                    self.cpu_s = float(rec["cpu_s"])
        else:
            self._decide("sandbox-violation", f"unexpected record on the result channel: {preview(str(rec), 80)}")
        return self.sample_outcome is not None

    def _decide(self, outcome: str, reason: str, case: int | None = None, infra: bool = False) -> None:
        if self.sample_outcome is None:
            self.sample_outcome = SampleOutcome(outcome, reason, case, infra)

    def _message(self, m: dict[str, Any]) -> None:
        ev, i = m.get("ev"), m.get("i")
        at = f" on test {i}" if isinstance(i, int) else ""
        if ev == "completed":
            self.completed = True
        elif ev == "start":
            pass
        elif ev == "value":
            self._functional_value(m)
        elif ev == "stdout" and self.grader == LIVECODEBENCH and self.style == "stdin":
            self._lcb_stdout(m)
        elif ev == "error" and m.get("phase") == "prompt":
            self._decide("crash", f"the problem's own prompt code failed: {_error_reason(m, at)}; fix the problem")
        elif ev == "error":
            self._decide("failed", _error_reason(m, at), i if isinstance(i, int) else None)
        elif ev == "program-exit":
            self.program_exit = dict(m)  # decided with the tests process's exit record (its stderr tail)
        elif ev == "memory":
            self._decide("memory", f"MemoryError{at} (address-space limit reached while {m.get('phase', 'running')})",
                         i if isinstance(i, int) else None)
        elif ev == "tampered":
            self._decide("sandbox-violation", f"harness tampering: {preview(str(m.get('detail', '')), 200)}")
        elif ev == "exit-requested":
            self._decide("failed", f"the program called sys.exit({preview(str(m.get('code')), 40)}){at} before the "
                                   "tests completed", i if isinstance(i, int) else None)
        elif ev == "unserializable":
            self._decide("failed", f"test {i}: the return value ({m.get('type')}) is not JSON-serialisable", i)
        elif ev == "not-a-value":
            self._decide("failed", f"test {i}: the return value ({preview(str(m.get('type')), 40)}) is not a plain "
                                   "value (builtin types, numpy scalars, Fraction, Decimal): "
                                   f"{preview(str(m.get('message', '')), 80)}", i if isinstance(i, int) else None)
        elif ev == "value-too-large":
            self._decide("failed", f"test {i}: the return value is {m.get('bytes')} bytes of JSON (over the output "
                                   "limit)", i)
        elif ev == "bad-case":
            self._decide("crash", f"test {i} of the problem has malformed JSON input ({m.get('message')}); fix the "
                                  "problem's test cases", i)
        else:
            self._decide("sandbox-violation", f"the program wrote to the harness's status pipe "
                                              f"({preview(str(m), 80)})")

    def _functional_value(self, m: dict[str, Any]) -> None:
        i = m.get("i")
        if self.style != "functional" or not isinstance(i, int) or not 0 <= i < len(self.expected):
            self._decide("sandbox-violation", f"unexpected return-value message for test {i}")
            return
        got = str(m.get("value", ""))
        lcb = self.grader == LIVECODEBENCH
        if (lcb_value_matches if lcb else json_value_matches)(got, self.expected[i]):
            self.cases_ok.add(i)
        else:
            shown = lcb_value_text(got) if lcb else got
            self._decide("failed", f"wrong answer on test {i}: expected {preview(self.expected[i], 60)}, got "
                                   f"{preview(shown, 60)}", i)

    def _lcb_stdout(self, m: dict[str, Any]) -> None:
        i = m.get("i")
        if not isinstance(i, int) or not 0 <= i < len(self.expected) or i in self.cases_ok:
            self._decide("sandbox-violation", f"unexpected output message for test {i}")
            return
        got = str(m.get("text", ""))
        if lcb_stdout_matches(got, self.expected[i]):
            self.cases_ok.add(i)
        else:
            self._decide("failed", f"wrong answer on test {i}: expected {preview(self.expected[i], 60)!r}, got "
                                   f"{preview(got, 60)!r}", i)

    def _exit(self, rec: dict[str, Any]) -> None:
        case = rec.get("case")
        at = f" on test {case}" if isinstance(case, int) else ""
        sig, code, killed = rec.get("signal"), rec.get("exit_code"), rec.get("killed_for")
        stderr = str(rec.get("stderr_tail") or "")
        if killed == "timeout":
            limit = f"{self.case_timeout_s:g} s " if self.case_timeout_s else ""
            self._decide("timeout", f"exceeded the {limit}wall-clock limit{at}", case)
        elif killed == "output-limit":
            self._decide("failed", f"output limit exceeded{at} ({rec.get('stdout_bytes', 0)} bytes on stdout; "
                                   "the program was killed)", case)
        elif sig is not None:
            self._signal(int(sig), stderr, at, case)
        elif "MemoryError" in stderr and code not in (0, None):
            self._decide("memory", f"MemoryError{at}: {preview(stderr.strip().splitlines()[-1], 120)}", case)
        elif self.style == "stdin" and self.grader != LIVECODEBENCH:
            self._stdin_case(rec, case, code, stderr)
        elif not self.completed and self.program_exit is not None:
            self._program_exit(self.program_exit, stderr)
        elif not self.completed:
            hint = ("os._exit()/sys.exit() in the program?" if code == 0 else
                    preview(stderr.strip().splitlines()[-1], 120) if stderr.strip() else "no error message")
            self._decide("failed", f"the program exited with code {code} before the tests completed ({hint})")

    def _program_exit(self, m: dict[str, Any], stderr: str) -> None:
        sig, code = m.get("signal"), m.get("exit_code")
        if m.get("reason") == "timeout":
            self._decide("timeout", "CPU-time limit reached (SIGXCPU)")
        elif isinstance(sig, int):
            self._signal(sig, stderr, "", None)
        elif "MemoryError" in stderr:
            self._decide("memory", f"MemoryError: {preview(stderr.strip().splitlines()[-1], 120)}")
        else:
            how = f"exited with code {code}" if code is not None else preview(str(m.get("reason", "ended")), 60)
            hint = ("os._exit()/sys.exit() in the program?" if code == 0 else
                    preview(stderr.strip().splitlines()[-1], 120) if stderr.strip() else "no error message")
            self._decide("failed", f"the program {how} before the tests completed ({hint})")

    def _signal(self, sig: int, stderr: str, at: str, case: int | None) -> None:
        name = _signal_name(sig)
        if sig == signal.SIGXCPU:
            self._decide("timeout", f"CPU-time limit reached{at} (SIGXCPU)", case)
        elif "MemoryError" in stderr or "Cannot allocate memory" in stderr or "out of memory" in stderr.lower():
            self._decide("memory", f"killed by {name}{at} after running out of memory", case)
        elif sig == signal.SIGSEGV:
            self._decide("crash", f"segmentation fault{at} (SIGSEGV; e.g. a stack overflow from deep recursion)", case)
        else:
            self._decide("crash", f"killed by {name}{at}", case)

    def _stdin_case(self, rec: dict[str, Any], case: Any, code: Any, stderr: str) -> None:
        if not isinstance(case, int) or not 0 <= case < len(self.expected):
            self._decide("sandbox-violation", f"result for unknown test {case!r}")
            return
        if code != 0:
            tail = preview(stderr.strip().splitlines()[-1], 120) if stderr.strip() else "no error message"
            self._decide("failed", f"runtime error on test {case}: exit code {code} ({tail})", case)
            return
        got = str(rec.get("stdout") or "")
        if stdout_matches(got, self.expected[case]):
            self.cases_ok.add(case)
        else:
            self._decide("failed", f"wrong answer on test {case}: expected {preview(self.expected[case], 60)!r}, got "
                                   f"{preview(got, 60)!r}", case)

    # ------------------------------------------------------------------------------------------ finishing
    def finish(self, *, timed_out: bool, returncode: int | None, start_error: str = "") -> SampleOutcome:
        if self.sample_outcome is not None:
            return self.sample_outcome
        if timed_out:
            return SampleOutcome("timeout", "the evaluator's wall-clock limit fired; the whole sandbox was killed")
        if not self.ready:
            return SampleOutcome("crash", f"the sandbox did not start: {start_error or 'no output'}", infra=True)
        if self.harness_error:
            return SampleOutcome("crash", f"harness error: {self.harness_error}", infra=self.harness_error_retryable)
        if not self.done:
            return SampleOutcome("sandbox-violation", "the harness ended without its final record (exit status "
                                                f"{returncode}); the program probably killed or starved it")
        if self.style in ("humaneval", "assert"):
            if self.completed:
                return SampleOutcome("passed")
            return SampleOutcome("failed", "the tests did not complete")
        missing = [i for i in range(len(self.expected)) if i not in self.cases_ok]
        if not self.expected:
            return SampleOutcome("crash", "the problem has no test cases to run")
        if missing:
            return SampleOutcome("failed", f"test {missing[0]} produced no result", missing[0])
        if (self.style == "functional" or self.grader == LIVECODEBENCH) and not self.completed:
            return SampleOutcome("failed", "the program did not finish the test cases")
        return SampleOutcome("passed")


def _error_reason(m: dict[str, Any], at: str) -> str:
    etype, msg, where = m.get("type", "Error"), preview(str(m.get("message", "")), 160), m.get("where", "")
    if m.get("phase") == "compile":
        return f"{etype} while compiling the program: {msg}" + (f" ({where})" if where else "")
    if etype == "AssertionError":
        return f"assertion failed{at}" + (f" ({where})" if where else "") + (f": {msg}" if msg else "")
    return f"{etype}{at}: {msg}" + (f" ({where})" if where else "")


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
