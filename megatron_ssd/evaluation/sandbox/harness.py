"""The in-sandbox harness: the only code that runs inside the sandbox besides the candidate program.

It is executed by the *system* interpreter as
``/usr/bin/python3 -I -S -c <this file's text> JOB_FD NONCE_FD RESULT_FD``
and therefore uses the standard library only and never imports `megatron_ssd`.

Privilege separation inside the sandbox
----------------------------------------
The harness process ("P") never executes model-written code. For every run it forks a child ("C") that closes every
file descriptor except its own stdin/stdout/stderr and a status pipe back to P, lowers its rlimits, and only then
compiles and runs the candidate. P supervises C (per-case wall clock, output caps, exit status) and reports to the
evaluator over RESULT_FD, a pipe C does not hold. Consequences, by style:

- ``stdin`` and ``functional``: the expected outputs never enter the sandbox. C returns raw stdout (captured by P) or
  JSON-encoded return values and the evaluator compares them outside, so a program cannot forge a pass by printing
  tokens, exiting early or tampering with the harness: it has to produce the right answers.
- ``humaneval`` and ``assert``: C is split in two. T (forked from P, so it never saw program code) forks the
  program's process first, closes nothing of its own but gives that process only stdin/stdout/stderr and a call/reply
  pipe pair, then runs the problem's helper code (the HumanEval prompt) and tests itself. Every call of the program's
  function is sent over the pipe and its answer rebuilt as values of exact builtin types (`encode_value`), so
  objects that pose as builtins, replaced standard-library modules, monkeypatched builtins, redefined prompt helpers
  and interpreter introspection (gc, frames) in the program cannot change what the tests see or report: the
  "tests completed" message comes from T's status pipe, which the program's process never holds. Exiting early
  (``sys.exit``, ``os._exit``, closing fds) ends the program's process and the tests fail. Monkeypatched builtins and
  stdlib functions are still reported (``tampered``) so that the attempt is visible.

``grader: livecodebench`` (stdin and functional only): C runs all of a problem's tests in one process, as
LiveCodeBench's `run_test` does, with its prelude, its program rewriting and its stdin/stdout stand-ins (the "C: the
LiveCodeBench grader" section). C sends each test's return value (tagged exact values) or captured sys.stdout on the
status pipe; the evaluator compares them with LiveCodeBench's rules, outside.

The final record carries a nonce that P reads from NONCE_FD only after every child has exited, so the nonce is
never in the memory of a process that ran candidate code.

Records written to RESULT_FD (one JSON object per line):
  {"ev": "ready"}                                  P is up (anything before this is a sandbox start-up failure)
  {"ev": "spawned", "child": j, "pgid": pid}       child j leads process group `pid` (host pid in fallback mode)
  {"ev": "msg", "child": j, "msg": {...}}          a status message from child j (`_Status.send` calls)
  {"ev": "exit", "child": j, "case": i|None, "exit_code": int|None, "signal": int|None,
   "killed_for": None|"timeout"|"output-limit", "stdout": str|None, "stdout_bytes": int,
   "stderr_tail": str, "time_s": float}
  {"ev": "harness-error", "message": str, "retryable": bool}   P could not do its job (e.g. fork failed)
  {"ev": "done", "nonce": str, "cpu_s": float}     P finished normally (cpu_s: P + its children, user + sys)
"""
import fcntl
import json
import os
import resource
import selectors
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
STATUS_FD = 3  # the status pipe's number inside C
STDERR_TAIL = 4096
MAX_STATUS_BYTES = 1 << 26  # a child's status messages in total (functional return values live here)
GUARDED_MODULES = ("math", "operator", "copy", "itertools", "functools", "collections", "re", "string",
                   "random", "heapq", "bisect", "json")


def _libc():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except Exception:  # pragma: no cover - ctypes is part of every CPython build we support
        return None


LIBC = _libc()


def _prctl(option, value):
    if LIBC is not None:
        LIBC.prctl(option, value, 0, 0, 0)


# ------------------------------------------------------------------------------------------ P: reporting
class Reporter:
    def __init__(self, fd):
        self.fd = fd

    def emit(self, record):
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            view = view[n:]


def _read_fd(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# ------------------------------------------------------------------------------------------ P: supervision
class ChildRun:
    """Fork C, run `target(job, case)` in it, and supervise it until it exits or is killed."""

    def __init__(self, job, reporter, index, deadline_total):
        self.job = job
        self.reporter = reporter
        self.index = index
        self.deadline_total = deadline_total

    def run(self, target, case=None, stdin_data=None, cpu_seconds=1):
        job = self.job
        stdin_fd = self._stdin_fd(stdin_data)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        st_r, st_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        token = os.urandom(16).hex()  # proves a "completed" message came from the harness code in C
        pid = os.fork()
        if pid == 0:  # ---- C
            try:
                _child_setup(job, stdin_fd, out_w, err_w, st_w, cpu_seconds)
                target(job, case, _Status(token))
            except BaseException:
                pass
            os._exit(70)
        try:
            os.setpgid(pid, pid)  # C leads its own process group (also done in C: whichever runs first)
        except OSError:
            pass
        for fd in (stdin_fd, out_w, err_w, st_w):
            os.close(fd)
        self.reporter.emit({"ev": "spawned", "child": self.index, "pgid": pid})
        self.token = token
        return self._supervise(pid, out_r, err_r, st_r, case)

    @staticmethod
    def _stdin_fd(data):
        if data is None:
            return os.open("/dev/null", os.O_RDONLY)
        try:
            fd = os.memfd_create("stdin", 0)
        except (AttributeError, OSError):  # very old kernels: an unlinked file in the work dir
            path = f".stdin-{os.getpid()}-{time.monotonic_ns()}"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.unlink(path)
        payload = data.encode("utf-8")
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _supervise(self, pid, out_r, err_r, st_r, case):
        job = self.job
        start = time.monotonic()
        case_deadline = start + job["case_timeout_s"]
        lcb = job.get("grader") == LCB
        # grader=livecodebench: what the program prints reaches the tests through sys.stdout (C sends it); fd 1 and
        # fd 2 are LiveCodeBench's terminal, drained and dropped without a volume limit (its runs have none).
        capture_stdout = job["style"] == "stdin" and not lcb
        # ... and every test's output or value may use the whole output limit on the status pipe.
        status_cap = MAX_STATUS_BYTES + (job["output_limit_bytes"] * len(job["cases"]) if lcb else 0)
        out, out_bytes, err_tail, err_bytes, st_buf, st_bytes = [], 0, b"", 0, b"", 0
        killed_for = None
        sel = selectors.DefaultSelector()
        for fd in (out_r, err_r, st_r):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        try:
            pidfd = os.pidfd_open(pid)
            sel.register(pidfd, selectors.EVENT_READ)
        except (AttributeError, OSError):
            pidfd = None
        status = None
        while status is None:
            now = time.monotonic()
            limit = min(case_deadline, self.deadline_total)
            if now >= limit:
                killed_for = "timeout"
                break
            for key, _ in sel.select(min(limit - now, 0.05 if pidfd is None else limit - now)):
                fd = key.fd
                if fd == pidfd:
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                if fd == out_r:
                    out_bytes += len(data)
                    if capture_stdout:
                        out.append(data)
                    if out_bytes > job["output_limit_bytes"] and not lcb:
                        killed_for = "output-limit"
                elif fd == err_r:
                    err_bytes += len(data)
                    err_tail = (err_tail + data)[-STDERR_TAIL:]
                    if err_bytes > job["stderr_limit_bytes"] and not lcb:
                        killed_for = "output-limit"
                else:
                    st_bytes += len(data)
                    st_buf += data
                    if st_bytes > status_cap:
                        killed_for = "output-limit"
                    st_buf, restart = self._forward(st_buf)
                    if restart:
                        case_deadline = time.monotonic() + job["case_timeout_s"]
            if killed_for:
                break
            status = _reap(pid)
        if status is None:
            _kill(pid)
            status = _wait(pid)
        # Kill C's descendants first (they may hold the pipes open and keep writing), then drain what is buffered,
        # never blocking and never reading more than a bounded amount.
        _cleanup_descendants(job, pid)
        budget = job["output_limit_bytes"] + job["stderr_limit_bytes"] + status_cap
        for fd in (out_r, err_r, st_r):
            while budget > 0:
                try:
                    data = os.read(fd, 1 << 16)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                budget -= len(data)
                if fd == out_r and capture_stdout and out_bytes <= job["output_limit_bytes"]:
                    out.append(data)
                    out_bytes += len(data)
                elif fd == err_r:
                    err_tail = (err_tail + data)[-STDERR_TAIL:]
                elif fd == st_r and st_bytes <= status_cap:
                    st_bytes += len(data)
                    st_buf, _ = self._forward(st_buf + data)
        sel.close()
        for fd in (out_r, err_r, st_r) + ((pidfd,) if pidfd is not None else ()):
            os.close(fd)
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if killed_for and sig == signal.SIGKILL:
            sig = None  # our own kill: `killed_for` says why
        stdout = None
        if capture_stdout:
            stdout = b"".join(out)[: job["output_limit_bytes"]].decode("utf-8", "replace")
        record = {"ev": "exit", "child": self.index, "case": case, "exit_code": exit_code, "signal": sig,
                  "killed_for": killed_for, "stdout": stdout, "stdout_bytes": out_bytes,
                  "stderr_tail": err_tail.decode("utf-8", "replace"), "time_s": round(time.monotonic() - start, 4)}
        self.reporter.emit(record)
        return record

    def _forward(self, buf):
        """Forward complete status lines from C; returns (rest, a functional case started)."""
        restart = False
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                msg = {"ev": "garbled", "bytes": len(line)}
            if not isinstance(msg, dict):
                msg = {"ev": "garbled", "bytes": len(line)}
            if msg.get("ev") == "start":
                restart = True
            if msg.get("ev") == "completed":
                if msg.get("token") != self.token:
                    msg = {"ev": "forged-completion"}
                else:
                    msg = {"ev": "completed"}
            self.reporter.emit({"ev": "msg", "child": self.index, "msg": msg})
        return buf, restart


def _reap(pid):
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if got == pid else None


def _wait(pid):
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _cleanup_descendants(job, pgid):
    """Kill whatever C left behind before the next case starts (and reap it)."""
    if job["isolation"] == "bwrap":
        # Inside the sandbox's own pid namespace this reaches exactly the processes C created: init ignores it
        # and the caller is never signalled by kill(-1).
        try:
            os.kill(-1, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    else:
        # No pid namespace. C's process group dies at once (a group kill cannot race with fork); processes that
        # left the group (setsid/setpgid) were re-parented to P, a child subreaper: kill P's children until none
        # is left (a few rounds catch grandchildren as they are re-parented).
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        me = os.getpid()
        for _ in range(50):
            _reap_all()
            if not _has_children():
                break
            for kid in _children_of(me):
                _kill(kid)
            time.sleep(0.01)
    _reap_all()


def _has_children():
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _children_of(pid):
    kids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def _reap_all():
    while True:
        try:
            got, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if got == 0:
            return


# ------------------------------------------------------------------------------------------ C: set-up
def _child_setup(job, stdin_fd, out_w, err_w, st_w, cpu_seconds):
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.dup2(stdin_fd, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    if st_w != STATUS_FD:
        os.dup2(st_w, STATUS_FD)
    os.closerange(STATUS_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    for fd in (0, 1, 2, STATUS_FD):
        os.set_inheritable(fd, True)
    # CPython ignores SIGPIPE and SIGXFSZ at start-up, so a closed pipe or RLIMIT_FSIZE surfaces as an OSError in
    # the program instead of a silent signal death; keep it that way.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = (
        (resource.RLIMIT_AS, job["memory_bytes"]),
        (resource.RLIMIT_CPU, max(1, int(cpu_seconds))),
        (resource.RLIMIT_FSIZE, job["fsize_bytes"]),
        (resource.RLIMIT_CORE, 0),
    )
    for which, value in limits:
        resource.setrlimit(which, (value, value))


class _Status:
    """C's side of the status pipe: one JSON line per message; a closed pipe is the program's own doing."""

    def __init__(self, token, fd=STATUS_FD):
        self._token = token
        self._fd = fd

    def completed(self):
        self.send(ev="completed", token=self._token)

    def send(self, **msg):
        try:
            data = (json.dumps(msg) + "\n").encode("utf-8", "replace")
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except (OSError, ValueError, TypeError):
            pass


def _finish(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _describe(exc, phase):
    """Type, message and the innermost program/test line of an exception (for the failure reason)."""
    where = ""
    try:
        import traceback

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("<program>", "<tests>", "<prompt>")]
        if frames:
            f = frames[-1]
            where = f"{f.filename.strip('<>')} line {f.lineno}"
            if f.line:
                where += f": {f.line.strip()[:200]}"
        if isinstance(exc, SyntaxError) and exc.lineno:
            where = f"{str(exc.filename).strip('<>')} line {exc.lineno}: {(exc.text or '').strip()[:200]}"
    except Exception:
        pass
    try:
        message = str(exc)[:500]
    except Exception:
        message = "<unprintable>"
    return {"ev": "error", "phase": phase, "type": type(exc).__name__, "message": message, "where": where}


# ------------------------------------------------------------------------------- C: tamper detection
def _snapshot():
    import builtins
    import importlib

    mods = {"builtins": builtins}
    for name in GUARDED_MODULES:
        try:
            mods[name] = importlib.import_module(name)
        except ImportError:
            pass
    return {name: (mod, dict(vars(mod))) for name, mod in mods.items()}


def _tampering(snapshot):
    changed = []
    for name, (mod, before) in snapshot.items():
        now = vars(mod)
        for attr, value in before.items():
            if attr.startswith("__") and attr.endswith("__"):
                continue
            if now.get(attr, _MISSING) is not value:
                changed.append(f"{name}.{attr}")
    return changed


_MISSING = object()


class _Tampered(Exception):
    pass


# ------------------------------------------------------------------------------------ C: the styles
def _remember_source(filename, source):
    """Let tracebacks show the failing line of the program/tests (they have no file on disk)."""
    try:
        import linecache

        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    except Exception:
        pass


def _load_program(job, status, name):
    import builtins

    return _exec_program(job["program"], status, {"__name__": name, "__builtins__": builtins})


def _exec_program(source, status, namespace):
    """Compile and run `source` in `namespace`; any failure is reported on `status` and ends this process."""
    _remember_source("<program>", source)
    try:
        code = compile(source, "<program>", "exec")
    except MemoryError:
        status.send(ev="memory", phase="compile")
        _finish(1)
    except BaseException as exc:
        status.send(**_describe(exc, "compile"))
        _finish(1)
    try:
        exec(code, namespace)
    except MemoryError:
        status.send(ev="memory", phase="program")
        _finish(1)
    except SystemExit as exc:
        status.send(ev="exit-requested", phase="program", code=str(exc.code)[:100])
        _finish(1)
    except BaseException as exc:
        status.send(**_describe(exc, "program"))
        _finish(1)
    return namespace


def child_tests(job, _case, status):
    """humaneval / assert, in T: run the tests here; the program runs in C, a child that T forks first.

    T never executes program code. It execs the problem's own helper code (the HumanEval prompt: `poly`,
    `encode_cyclic`, ...) and the test code, and binds each name the tests may call to a `_Remote` proxy that sends
    the arguments to C and rebuilds C's answer from JSON as values of exact builtin types. So the tests compare
    values the program computed, with the problem's own helpers and standard library, in a process whose modules,
    builtins, frames and heap the program never saw. T's status pipe (fd 3) is closed in C before any program code
    runs, so only T can report "completed".
    """
    sys.set_int_max_str_digits(0)
    call_r, call_w = os.pipe()
    reply_r, reply_w = os.pipe()
    tests_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # ---- C: the program
        # Dies with T, as T dies with P and P with the evaluator: nobody else ends a program stuck in a call when a
        # killed evaluator takes P and T with it (the rlimits-only fallback has no bwrap --die-with-parent).
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != tests_pid:
            os._exit(70)
        try:
            high_call, high_reply = (fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in (call_r, reply_w))
            os.dup2(high_call, CALL_FD)
            os.dup2(high_reply, REPLY_FD)
            os.closerange(STATUS_FD, CALL_FD)  # T's status pipe among them: only T can report "completed"
            os.closerange(REPLY_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            _program_server(job)
        except BaseException as exc:  # a failure of this process's set-up (e.g. no memory left for it)
            _Status(None, REPLY_FD).send(status=_describe(exc, "program"))
        os._exit(70)
    os.close(call_r)
    os.close(reply_w)
    conn = _Connection(call_w, reply_r, job["output_limit_bytes"] + (1 << 16), pid)
    names, modules = conn.hello(status)
    tests = {"__name__": "__tests__", "__builtins__": dict(vars(_builtins_module()))}
    helper = job.get("helper_code") or ""
    if helper:
        _remember_source("<prompt>", helper)
        try:
            exec(compile(helper, "<prompt>", "exec"), tests)
        except BaseException as exc:
            status.send(**_describe(exc, "prompt"))
            _finish(1)
    entry = job.get("entry_point") or ""
    if job["style"] == "humaneval":
        if entry not in names:
            status.send(ev="error", phase="tests", type="NameError", where="",
                        message=f"the program does not define {entry!r}")
            _finish(1)
        tests[entry] = _Remote(conn, entry)
    else:
        for name in names:  # assert style: the tests call the program's functions and classes by name
            tests[name] = _Remote(conn, name)
        import importlib

        for name, module in modules.items():  # and may use the modules it imported (`math.isclose`): T's own copy
            try:
                tests[name] = importlib.import_module(module)
            except Exception:
                pass
    _remember_source("<tests>", job["test_code"])
    import random

    random.seed(TEST_SEED)  # tests that draw random inputs (HumanEval 32, 38, 50) see the same inputs every run
    try:
        exec(compile(job["test_code"], "<tests>", "exec"), tests)
        if job["style"] == "humaneval":
            check = tests.get("check")
            if not callable(check):
                raise NameError("the test code does not define check(candidate)")
            check(tests[entry])
    except _ProgramGone:
        status.send(**conn.gone_message())
        _finish(1)
    except _Tampered as exc:
        status.send(ev="tampered", detail=str(exc))
        _finish(1)
    except MemoryError:
        status.send(ev="memory", phase="tests")
        _finish(1)
    except BaseException as exc:
        status.send(**(getattr(exc, "_ssd_program", None) or _describe(exc, "tests")))
        _finish(1)
    conn.close()
    status.completed()
    _finish(0)


def _builtins_module():
    import builtins

    return builtins


TEST_SEED = 20240601
CALL_FD, REPLY_FD = 5, 6  # C's ends of the call and reply pipes (fd 3 stays closed: writes to it fail)
MAX_DEPTH = 100


class _ProgramGone(Exception):
    """C exited (or closed its reply pipe) while T waited for an answer."""


class _Handle:
    """A program object that is not a builtin value (e.g. an instance of a class the tests construct).

    It can only be passed back to the program: it has no value, no truth value and compares by identity, so it
    cannot fake a test's comparison.
    """

    __slots__ = ("ref",)

    def __init__(self, ref):
        self.ref = ref

    def __bool__(self):
        raise TypeError("an object of a program-defined class has no truth value in the tests")

    def __repr__(self):
        return f"<program object #{self.ref}>"


def encode_value(value, handles=None, depth=0, numbers=False):
    """A builtin value as JSON-able data; lists are tags, so the decoder knows every type exactly.

    In C, `handles` (a list) receives the objects that are not builtin values; subclasses of builtin types are read
    through the base type's own methods, so an overridden __eq__/__iter__/__index__ never decides what is sent.
    numbers=True (the LiveCodeBench grader) also sends the number types LiveCodeBench compares by value: numpy
    scalars as their `.item()`, `fractions.Fraction` and `decimal.Decimal` exactly (tags "fraction", "decimal").
    """
    if depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply")
    t = type(value)
    if value is None or t is bool or t is str or t is int or t is float:
        return value
    if t is _Handle:
        return ["handle", value.ref]
    d = depth + 1
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, tuple):
        return ["tuple", [encode_value(v, handles, d, numbers) for v in tuple.__iter__(value)]]
    if isinstance(value, list):
        return ["list", [encode_value(v, handles, d, numbers) for v in list.__iter__(value)]]
    if isinstance(value, dict):
        return ["dict", [[encode_value(k, handles, d, numbers), encode_value(v, handles, d, numbers)]
                         for k, v in dict.items(value)]]
    if isinstance(value, frozenset):
        return ["frozenset", [encode_value(v, handles, d, numbers) for v in frozenset.__iter__(value)]]
    if isinstance(value, set):
        return ["set", [encode_value(v, handles, d, numbers) for v in set.__iter__(value)]]
    if isinstance(value, (bytes, bytearray)):
        return ["bytearray" if isinstance(value, bytearray) else "bytes", bytes.hex(bytes(value))]
    if isinstance(value, complex):
        return ["complex", [complex.real.__get__(value), complex.imag.__get__(value)]]
    if numbers:
        number = _number_value(value, d)
        if number is not None:
            return number
    if handles is None:
        raise TypeError(f"a value of type {t.__name__} cannot be sent between the tests and the program")
    handles.append(value)
    return ["handle", len(handles) - 1]


def _number_value(value, depth):
    """numbers=True: the encoding of a numpy scalar, Fraction or Decimal, else None (modules the program loaded)."""
    np = sys.modules.get("numpy")
    generic = getattr(np, "generic", None) if np is not None else None
    if isinstance(generic, type) and isinstance(value, generic):
        plain = value.item()
        return None if isinstance(plain, generic) else encode_value(plain, None, depth, True)
    fractions = sys.modules.get("fractions")
    fraction = getattr(fractions, "Fraction", None) if fractions is not None else None
    if isinstance(fraction, type) and isinstance(value, fraction):
        return ["fraction", [int.__index__(value.numerator), int.__index__(value.denominator)]]
    decimal = sys.modules.get("decimal")
    dec = getattr(decimal, "Decimal", None) if decimal is not None else None
    if isinstance(dec, type) and isinstance(value, dec):
        return ["decimal", str.__str__(dec.__str__(value))]
    return None


_CONTAINERS = {"tuple": tuple, "list": list, "set": set, "frozenset": frozenset}


def decode_value(data, handles=None, depth=0, numbers=False):
    """The inverse of `encode_value`: values of exact builtin types (or `_Handle`s in T, program objects in C);
    numbers=True also accepts the "fraction" and "decimal" tags (only the evaluator, outside the sandbox, asks)."""
    if depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply")
    t = type(data)
    if data is None or t is bool or t is str or t is int or t is float:
        return data
    if t is not list or len(data) != 2 or type(data[0]) is not str:
        raise ValueError(f"malformed value of type {t.__name__}")
    tag, body = data
    d = depth + 1
    if tag in _CONTAINERS and type(body) is list:
        return _CONTAINERS[tag](decode_value(v, handles, d, numbers) for v in body)
    if tag == "dict" and type(body) is list:
        return {decode_value(k, handles, d, numbers): decode_value(v, handles, d, numbers) for k, v in body}
    if tag in ("bytes", "bytearray") and type(body) is str:
        return (bytes if tag == "bytes" else bytearray).fromhex(body)
    if tag == "complex" and type(body) is list and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag == "handle" and type(body) is int:
        if handles is None:
            return _Handle(body)
        return handles[body]
    if numbers and tag == "fraction" and type(body) is list and len(body) == 2 and all(type(x) is int for x in body):
        import fractions

        if body[1] == 0:
            raise ValueError("a fraction with denominator 0")
        return fractions.Fraction(body[0], body[1])
    if numbers and tag == "decimal" and type(body) is str:
        import decimal

        try:
            return decimal.Decimal(body)
        except (decimal.InvalidOperation, ValueError):
            raise ValueError("a malformed decimal") from None
    raise ValueError(f"malformed value tagged {tag!r}")


class _Connection:
    """T's side of the call/reply pipes to C (one JSON line each way per call)."""

    def __init__(self, call_fd, reply_fd, max_line, pid):
        self.call_fd, self.reply_fd, self.max_line, self.pid = call_fd, reply_fd, max_line, pid
        self.buf = b""
        self.status = None

    def hello(self, status):
        """Wait for C to load the program: the names it defines, or its failure (forwarded to P as is)."""
        try:
            msg = self._read()
        except _ProgramGone:
            status.send(**self.gone_message())
            _finish(1)
        except _Tampered as exc:
            status.send(ev="tampered", detail=str(exc))
            _finish(1)
        if "status" in msg:
            status.send(**_program_status(msg["status"]))
            _finish(1)
        names, modules = msg.get("loaded"), msg.get("modules")
        if (type(names) is not list or not all(type(n) is str and n.isidentifier() for n in names)
                or type(modules) is not dict or not all(type(m) is str for m in modules.values())):
            status.send(ev="tampered", detail="malformed start-up message on the program's reply pipe")
            _finish(1)
        return names, {k: v for k, v in modules.items() if type(k) is str and k.isidentifier()}

    def call(self, name, args, kwargs):
        try:
            request = json.dumps({"fn": name, "args": encode_value(list(args)),
                                  "kwargs": encode_value(dict(kwargs))})
        except (TypeError, ValueError) as exc:
            raise _TestsError(f"the tests pass an argument that cannot be sent to the program ({exc})") from None
        data = (request + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.call_fd, view):]
        except OSError:
            raise _ProgramGone() from None
        msg = self._read()
        if "ok" in msg:
            try:
                return decode_value(msg["ok"])
            except (ValueError, TypeError, RecursionError) as exc:
                raise _Tampered(f"malformed return value on the program's reply pipe ({exc})") from None
        if "raise" in msg:
            raise _program_exception(msg["raise"])
        if "status" in msg:  # e.g. MemoryError or sys.exit inside the call: the program's run ends here
            exc = _TestsError("the program stopped")
            exc._ssd_program = _program_status(msg["status"])
            raise exc
        raise _Tampered("unexpected message on the program's reply pipe")

    def _read(self):
        while b"\n" not in self.buf:
            if len(self.buf) > self.max_line:
                raise _Tampered("a reply over the output limit on the program's reply pipe")
            try:
                chunk = os.read(self.reply_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                raise _ProgramGone()
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _Tampered("garbage on the program's reply pipe") from None
        if type(msg) is not dict:
            raise _Tampered("garbage on the program's reply pipe")
        return msg

    def gone_message(self):
        """What became of C after its reply pipe closed (it is killed if it lingers without the pipe)."""
        status = None
        for _ in range(50):
            status = _reap(self.pid)
            if status is not None:
                break
            time.sleep(0.01)
        if status is None:
            _kill(self.pid)
            return {"ev": "program-exit", "reason": "closed its reply pipe"}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                return {"ev": "program-exit", "signal": sig, "reason": "timeout"}
            return {"ev": "program-exit", "signal": sig}
        return {"ev": "program-exit", "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}

    def close(self):
        for fd in (self.call_fd, self.reply_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        _kill(self.pid)
        _wait(self.pid)


class _TestsError(Exception):
    pass


_PROGRAM_STATUS = {"error": ("phase", "type", "message", "where", "i"), "memory": ("phase", "i"),
                   "exit-requested": ("phase", "code", "i"), "tampered": ("detail",)}


def _program_status(msg):
    """A status message from C, reduced to the kinds and fields C may report (never "completed")."""
    if type(msg) is not dict or msg.get("ev") not in _PROGRAM_STATUS:
        return {"ev": "tampered", "detail": "an unexpected status message from the program"}
    ev = msg["ev"]
    out = {"ev": ev}
    for key in _PROGRAM_STATUS[ev]:
        value = msg.get(key)
        if value is not None:
            out[key] = value if type(value) is int else str(value)[:500]
    return out


def _program_exception(info):
    """The exception C's call raised, rebuilt in T as a builtin exception class (or RuntimeError)."""
    info = info if type(info) is dict else {}
    name, message = str(info.get("type", "Exception")), str(info.get("message", ""))[:500]
    cls = vars(_builtins_module()).get(name)
    exc = None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(message)
        except Exception:
            exc = None
    if exc is None:
        exc = RuntimeError(f"{name}: {message}")
    exc._ssd_program = {"ev": "error", "phase": "call", "type": name[:100], "message": message,
                        "where": str(info.get("where", ""))[:300]}
    return exc


class _Remote:
    """In T: the program's function `name`; calling it asks C and returns C's answer as exact builtin values."""

    def __init__(self, conn, name):
        self._conn, self.__name__ = conn, name

    def __call__(self, *args, **kwargs):
        return self._conn.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<program function {self.__name__}>"


def _program_server(job):
    """C: load the program, report the names it defines, then answer T's calls until T closes the pipe."""
    sys.set_int_max_str_digits(0)
    reply = _Status(None, REPLY_FD)
    snapshot = _snapshot()
    namespace = _load_program(job, _Wrapped(reply), "__candidate__")
    changed = _tampering(snapshot)
    if changed:
        reply.send(status={"ev": "tampered", "detail": "the program replaced " + ", ".join(changed[:5])})
        _finish(1)
    names = sorted(k for k, v in namespace.items() if k.isidentifier() and not k.startswith("__") and callable(v)
                   and not isinstance(v, type(os)))
    modules = {k: v.__name__ for k, v in namespace.items() if isinstance(v, type(os)) and isinstance(v.__name__, str)}
    reply.send(loaded=names, modules=modules)
    handles = []
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = os.read(CALL_FD, 1 << 16)
            if not chunk:
                _finish(0)
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        request = json.loads(line.decode("utf-8"))
        fn = namespace.get(request["fn"])
        try:
            args = decode_value(request["args"], handles)
            kwargs = decode_value(request["kwargs"], handles)
            value = fn(*args, **kwargs)
            encoded = encode_value(value, handles)
        except MemoryError:
            reply.send(status={"ev": "memory", "phase": "call"})
            _finish(1)
        except SystemExit as exc:
            reply.send(status={"ev": "exit-requested", "phase": "call", "code": str(exc.code)[:100]})
            _finish(1)
        except BaseException as exc:
            reply.send(**{"raise": _describe(exc, "call")})
            continue
        changed = _tampering(snapshot)
        if changed:
            reply.send(status={"ev": "tampered", "detail": "the program replaced " + ", ".join(changed[:5])})
            _finish(1)
        reply.send(ok=encoded)


class _Wrapped:
    """`_load_program`'s status interface in C: its messages travel to T inside {"status": ...}."""

    def __init__(self, reply):
        self._reply = reply

    def send(self, **msg):
        self._reply.send(status=msg)


def child_functional(job, _case, status):
    """functional: call `Solution().<entry_point>(*args)` (or the function) per case; send JSON return values."""
    namespace = _load_program(job, status, "__candidate__")
    entry = job["entry_point"]
    solution = namespace.get("Solution") if job.get("use_solution_class") else None
    if solution is None and not callable(namespace.get(entry)):
        if isinstance(namespace.get("Solution"), type) and hasattr(namespace["Solution"], entry):
            solution = namespace["Solution"]
        else:
            status.send(ev="error", phase="program", type="NameError", where="",
                        message=f"the program defines neither class Solution with {entry}() nor function {entry}()")
            _finish(1)
    for i, case in enumerate(job["cases"]):
        status.send(ev="start", i=i)
        try:
            args = [json.loads(line) for line in case.split("\n") if line.strip()]
        except ValueError as exc:
            status.send(ev="bad-case", i=i, message=str(exc)[:200])
            _finish(1)
        try:
            target = getattr(solution(), entry) if solution is not None else namespace[entry]
            value = target(*args)
            encoded = json.dumps(value)
        except MemoryError:
            status.send(ev="memory", phase="call", i=i)
            _finish(1)
        except SystemExit as exc:
            status.send(ev="exit-requested", phase="call", i=i, code=str(exc.code)[:100])
            _finish(1)
        except (TypeError, ValueError) as exc:
            if "JSON serializable" in str(exc) or "Circular reference" in str(exc):
                status.send(ev="unserializable", i=i, type=type(value).__name__)
            else:
                msg = _describe(exc, "call")
                msg["i"] = i
                status.send(**msg)
            _finish(1)
        except BaseException as exc:
            msg = _describe(exc, "call")
            msg["i"] = i
            status.send(**msg)
            _finish(1)
        if len(encoded) > job["output_limit_bytes"]:
            status.send(ev="value-too-large", i=i, bytes=len(encoded))
            _finish(1)
        status.send(ev="value", i=i, value=encoded)
    status.completed()
    _finish(0)


def child_stdin(job, case, status):
    """stdin: run the program as __main__ with the case's input on stdin; P captures stdout."""
    import builtins

    code = 0
    _remember_source("<program>", job["program"])
    try:
        program = compile(job["program"], "<program>", "exec")
        exec(program, {"__name__": "__main__", "__builtins__": builtins})
    except MemoryError:
        status.send(ev="memory", phase="program", i=case)
        code = 1
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xFF or 1
        else:
            try:
                print(exc.code, file=sys.stderr)
            except Exception:
                pass
            code = 1
    except BaseException as exc:
        msg = _describe(exc, "compile" if isinstance(exc, SyntaxError) else "program")
        msg["i"] = case
        status.send(**msg)
        try:
            import traceback

            traceback.print_exc()
        except Exception:
            pass
        code = 1
    _finish(code)


# ------------------------------------------------------------------ C: the LiveCodeBench grader
# LiveCodeBench's own scorer, `run_test` in lcb_runner/evaluation/testing_util.py (the lines cited here), runs every
# program after a fixed prelude, all of a problem's tests in one process, with its own stand-ins for stdin and
# stdout. Its verdicts depend on those details (a starter code's bare `List`, `from sys import stdin` bound before
# the stand-in exists, `quit` removed, `exit(1)` after a correct answer), so the grader="livecodebench" children below
# re-create them inside C; none of LiveCodeBench's code is copied. What LiveCodeBench does that would let a program
# fake a pass (its timeout is an exception the program can catch, the expected value's __eq__ is the program's, the
# expected outputs are parsed with the program's json.loads) is left out: docs/SANDBOX.md lists each difference.
LCB = "livecodebench"
# import_string (testing_util.py:27): these star imports in this order, the same modules but builtins and typing as
# plain imports, then the recursion limit.
LCB_STAR_IMPORTS = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
LCB_PRELUDE = ("".join(f"from {m} import *\n" for m in LCB_STAR_IMPORTS)
               + "".join(f"import {m}\n" for m in LCB_STAR_IMPORTS if m not in ("builtins", "typing"))
               + "sys.setrecursionlimit(50000)\n")
LCB_INT_DIGITS = 50000  # compute_code_generation_metrics.py:7, inherited by the process run_test forks
# reliability_guard (testing_util.py:509-592): what it sets to None before a program runs, and the modules it blocks.
LCB_GUARD = (("os", ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                     "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                     "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir")),
             ("shutil", ("rmtree", "move", "chown")), ("subprocess", ("Popen",)))
LCB_BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")
# Loaded in LiveCodeBench's process before reliability_guard runs (testing_util.py:13, the multiprocessing of
# compute_code_generation_metrics.py:11-13), whose import the guard would break (numpy sets os.environ). Imported
# here before the guard when the program's text names them: loading numpy for every program would cost ~50 ms.
LCB_PRELOADED = ("numpy", "multiprocessing", "concurrent.futures")
_DUMPS, _LOADS = json.dumps, json.loads  # the harness's own, whatever the program does to the json module


def _lcb_environment(program):
    """The interpreter LiveCodeBench runs a program in (this one starts with -I -S): site's exit() and site-packages
    (numpy, where the system has it; `LCB_PRELOADED`), the 50000-digit int limit, and reliability_guard's removals
    (testing_util.py:540-592: a program calling quit() or os.getcwd() fails there, so it fails here)."""
    import builtins
    import importlib
    import site

    site.setquit()
    for path in site.getsitepackages():
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)
    for name in LCB_PRELOADED:
        if name.split(".")[0] in program:
            try:
                importlib.import_module(name)
            except Exception:  # not installed: the program's own import fails as it would without it
                pass
    sys.set_int_max_str_digits(LCB_INT_DIGITS)
    os.environ["OMP_NUM_THREADS"] = "1"
    builtins.quit = None
    builtins.help = None
    for module, names in LCB_GUARD:
        mod = importlib.import_module(module)
        for name in names:
            setattr(mod, name, None)
    for name in LCB_BLOCKED_MODULES:
        sys.modules[name] = None


def _lcb_load(source, status):
    """The program's module as compile_code makes it (testing_util.py:192-211): a fresh module named tmp_sol, so an
    `if __name__ == "__main__":` block it still has does not run. Its loading has its own time limit (the "start")."""
    import types

    module = types.ModuleType("tmp_sol", "")
    status.send(ev="start", phase="load")
    _exec_program(source, status, module.__dict__)
    return module


def _report_failure(exc, status, i, phase="call"):
    """A test that ended in an exception: MemoryError, sys.exit or any other error; ends this process."""
    if isinstance(exc, MemoryError):
        status.send(ev="memory", phase=phase, i=i)
    elif isinstance(exc, SystemExit):
        status.send(ev="exit-requested", phase=phase, i=i, code=str(exc.code)[:100])
    else:
        msg = _describe(exc, phase)
        if i is not None:
            msg["i"] = i
        status.send(**msg)
    _finish(1)


def child_lcb_functional(job, _case, status):
    """grade_call_based (testing_util.py:229-307): the prelude, then the program, in one module; one Solution()
    instance for every test when the text "class Solution" occurs in the code; each test's input lines are JSON
    arguments. Each return value leaves as exact builtin values (`encode_value`, numbers=True) and is compared
    outside (compare.lcb_value_matches); the expected values never enter the sandbox."""
    inputs = []
    for i, case in enumerate(job["cases"]):  # parsed before any program code runs, with the harness's json.loads
        try:
            inputs.append([_LOADS(line) for line in case.split("\n")])
        except ValueError as exc:  # a blank or malformed line: LiveCodeBench fails every program (line 245)
            status.send(ev="bad-case", i=i, message=str(exc)[:200])
            _finish(1)
    _lcb_environment(job["program"])
    source = LCB_PRELUDE + "\n\n" + job["program"]
    module = _lcb_load(source, status)
    target = module
    if "class Solution" in source:
        try:
            target = module.Solution()
        except BaseException as exc:
            _report_failure(exc, status, None, "program")
    entry = job["entry_point"]
    try:
        method = getattr(target, entry)
    except BaseException:
        status.send(ev="error", phase="program", type="NameError", where="",
                    message=f"the program's {'Solution()' if target is not module else 'module'} has no {entry!r}")
        _finish(1)
    limit = job["output_limit_bytes"]
    for i, args in enumerate(inputs):
        status.send(ev="start", i=i)
        try:
            value = method(*args)
        except BaseException as exc:
            _report_failure(exc, status, i)
        try:
            encoded = _DUMPS(encode_value(value, numbers=True))
        except (TypeError, ValueError, RecursionError) as exc:
            status.send(ev="not-a-value", i=i, type=type(value).__name__[:80], message=str(exc)[:200])
            _finish(1)
        if len(encoded) > limit:
            status.send(ev="value-too-large", i=i, bytes=len(encoded))
            _finish(1)
        status.send(ev="value", i=i, value=encoded)
    status.completed()
    _finish(0)


def lcb_stdin_module(program):
    """The module source LiveCodeBench runs for a stdin program, or None where its AST round trip fails (there
    `wrapped_function` is then missing and every test fails).

    clean_if_name (testing_util.py:106-119): a last top-level `if __name__ == '__main__':` is replaced by its body
    (any other such block stays, and never runs: the module is tmp_sol). make_function (lines 122-151): top-level
    imports stay at module level after the prelude; every other top-level statement becomes the body of
    `wrapped_function()`, called once per test, so top-level names are that function's locals (a `global` statement
    in a nested function finds no such global) and a top-level `return` is legal.
    """
    import ast

    try:
        tree = ast.parse(program)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            program = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    try:
        hoisted, body = [], []
        for stmt in ast.parse(program).body:
            (hoisted if isinstance(stmt, (ast.Import, ast.ImportFrom)) else body).append(stmt)
        no_args = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
        wrapper = ast.FunctionDef(name="wrapped_function", args=no_args, body=body, decorator_list=[], lineno=-1)
        return "\n".join((LCB_PRELUDE, ast.unparse(hoisted), ast.unparse(wrapper)))
    except Exception:
        return None


def child_lcb_stdin(job, _case, status):
    """grade_stdio (testing_util.py:310-425): every test in this one process, in order; `wrapped_function()` runs
    with the stand-ins of `_LcbTestIO` and what it printed to sys.stdout is sent out (compared outside by
    compare.lcb_stdout_matches; the expected outputs never enter the sandbox)."""
    source = lcb_stdin_module(job["program"])
    _lcb_environment(job["program"])
    if source is None:  # a syntax error, reported as compiling the program reports it, or an AST LCB cannot unparse
        _remember_source("<program>", job["program"])
        try:
            compile(job["program"], "<program>", "exec")
            exc = SyntaxError("LiveCodeBench's AST rewrite of the program failed (clean_if_name/make_function)")
        except BaseException as error:
            exc = error
        status.send(**_describe(exc, "compile"))
        _finish(1)
    main = _lcb_load(source, status).wrapped_function
    limit = job["output_limit_bytes"]
    for i, text in enumerate(job["cases"]):
        status.send(ev="start", i=i)
        io_ = _LcbTestIO(text)
        try:
            with io_:
                try:
                    main()
                except SystemExit:  # call_method (testing_util.py:174-177): the exit code is never looked at
                    pass
        except BaseException as exc:
            _report_failure(exc, status, i)
        out = io_.output
        size = len(out.encode("utf-8", "replace"))
        if size > limit:
            status.send(ev="value-too-large", i=i, bytes=size)
            _finish(1)
        status.send(ev="stdout", i=i, text=out)
    status.completed()
    _finish(0)


class _LcbTestIO:
    """One stdin test's stand-ins, set and undone as LiveCodeBench's are.

    Capturing (testing_util.py:59-70) replaces sys.stdout by a StringIO whose close() needs an argument. call_method
    (lines 154-181) stacks unittest.mock patches, which mock enters bottom first: read, readlines and readline of the
    stdin object in place at that moment (the real one, an empty stream here as there: `from sys import stdin`, bound
    by the prelude or the program, sees these three and nothing else), then sys.stdin itself (`_LcbStdin`), then
    builtins.open (mock_open; the program's bare `open` is the real one the prelude's `from io import *` bound).
    Hand-written rather than unittest.mock: importing it costs ~50 ms a sample; it is imported only for mock_open,
    when a program calls builtins.open.
    """

    def __init__(self, text):
        self.text = text
        self.output = ""
        self._undo = []

    def __enter__(self):
        import builtins
        import io

        text = self.text
        self._stdout = sys.stdout
        self._captured = io.StringIO()
        self._captured.close = lambda _unused: 1
        sys.stdout = self._captured
        lines = iter(text.split("\n"))
        try:
            real = sys.stdin
            self._set(real, "read", lambda *a: text)
            self._set(real, "readlines", lambda *a: text.split("\n"))
            self._set(real, "readline", lambda *a: next(lines))
            self._set(sys, "stdin", _LcbStdin(text))
            self._set(builtins, "open", _lcb_mock_open(text))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _set(self, obj, name, value):
        getattr(obj, name)  # mock.patch needs the attribute to exist (AttributeError otherwise)
        try:
            before = vars(obj).get(name, _MISSING)
        except TypeError:
            before = _MISSING
        setattr(obj, name, value)
        self._undo.append((obj, name, before))

    def __exit__(self, *exc):
        while self._undo:
            obj, name, before = self._undo.pop()
            try:
                if before is _MISSING:
                    delattr(obj, name)
                else:
                    setattr(obj, name, before)
            except Exception:
                pass
        self.output = self._captured.getvalue()
        sys.stdout = self._stdout
        return False


class _LcbStdin:
    """sys.stdin during a test (MockStdinWithBuffer, testing_util.py:74-91): read() returns the whole input at every
    call, readline() consumes it line by line, readlines() is input.split("\\n"); anything else is a StringIO's (so
    `for line in sys.stdin` raises TypeError: no __iter__)."""

    def __init__(self, text):
        import io

        self._stream = io.StringIO(text)
        self._text = text
        self.buffer = _LcbStdinBuffer(text.encode("utf-8"))

    def read(self, *args):
        return self._text

    def readline(self, *args):
        return self._stream.readline(*args)

    def readlines(self, *args):
        return self._text.split("\n")

    def __getattr__(self, name):
        return getattr(self.__dict__["_stream"], name)


class _LcbStdinBuffer:
    """sys.stdin.buffer during a test (MockBuffer, testing_util.py:94-103): read() is the whole input as bytes,
    readline() its first line at every call; nothing else."""

    def __init__(self, data):
        self._data = data

    def read(self, *args):
        return self._data

    def readline(self, *args):
        return self._data.split(b"\n")[0] + b"\n"


def _lcb_mock_open(text):
    """builtins.open during a test: unittest.mock.mock_open(read_data=<the input>) (testing_util.py:167), made on
    first use."""
    made = []

    def mocked_open(*args, **kwargs):
        if not made:
            from unittest import mock

            made.append(mock.mock_open(read_data=text))
        return made[0](*args, **kwargs)

    return mocked_open


# --------------------------------------------------------------------------------------------- P: main
def main(argv):
    job_fd, nonce_fd, result_fd = (int(x) for x in argv[1:4])
    with os.fdopen(job_fd, "rb") as f:
        job = json.loads(f.read().decode("utf-8"))
    reporter = Reporter(result_fd)
    _prctl(PR_SET_DUMPABLE, 0)
    if job["isolation"] != "bwrap":
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for which, value in ((resource.RLIMIT_NPROC, job["nproc"]), (resource.RLIMIT_NOFILE, job["nofile"])):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    os.set_inheritable(result_fd, False)
    os.set_inheritable(nonce_fd, False)
    reporter.emit({"ev": "ready", "python": sys.version.split()[0]})
    deadline = time.monotonic() + job["total_timeout_s"]
    style = job["style"]
    try:
        if job.get("grader") == LCB and style in ("functional", "stdin"):
            target = child_lcb_functional if style == "functional" else child_lcb_stdin
            ChildRun(job, reporter, 0, deadline).run(target, cpu_seconds=job["total_timeout_s"] + 1)
        elif style in ("humaneval", "assert"):
            ChildRun(job, reporter, 0, deadline).run(child_tests, cpu_seconds=job["case_timeout_s"] + 1)
        elif style == "functional":
            cpu = min(job["total_timeout_s"], job["case_timeout_s"] * max(1, len(job["cases"]))) + 1
            ChildRun(job, reporter, 0, deadline).run(child_functional, cpu_seconds=cpu)
        elif style == "stdin":
            for i, case in enumerate(job["cases"]):
                if time.monotonic() >= deadline:
                    break
                rec = ChildRun(job, reporter, i, deadline).run(child_stdin, case=i, stdin_data=case,
                                                               cpu_seconds=job["case_timeout_s"] + 1)
                if rec["killed_for"] or rec["signal"] or rec["exit_code"] != 0:
                    break
        else:
            reporter.emit({"ev": "harness-error", "message": f"unknown style {style!r}"})
    except Exception as exc:
        # EAGAIN from fork: the process budget is exhausted by *other* sandboxes (this one's leftovers are killed
        # before every fork), e.g. a fork bomb being torn down in fallback mode; the evaluator retries the sample.
        # Anything else is a harness bug, reported as such instead of being blamed on the program.
        reporter.emit({"ev": "harness-error", "message": f"{type(exc).__name__}: {exc}",
                       "retryable": isinstance(exc, BlockingIOError)})
    nonce = _read_fd(nonce_fd).decode("ascii", "replace").strip()
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    reporter.emit({"ev": "done", "nonce": nonce, "cpu_s": round(sum(u.ru_utime + u.ru_stime for u in usage), 4)})
    os.close(result_fd)


if __name__ == "__main__":
    main(sys.argv)
