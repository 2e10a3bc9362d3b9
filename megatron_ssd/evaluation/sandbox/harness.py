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
- ``humaneval`` and ``assert``: the test code must run in the candidate's process, so C itself says "tests
  completed", with a per-child random token P generated before the fork (a line written to the status pipe without
  it is reported as tampering). Exiting before the tests finish (``sys.exit``, ``os._exit``, closing fds) yields no
  completion record and is scored as a failure; the tests run in a namespace whose builtins are a pristine copy; the
  harness detects monkeypatched builtins/stdlib modules and returned objects whose classes (defined by the program)
  override comparison ("always-equal" objects). A program written *specifically against this harness* that digs the
  token out of the interpreter (frame introspection) could still forge the completion message; that affects only
  its own score, never containment, and is recorded as the residual risk in `megatron_ssd/evaluation/sandbox.py`.

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
        capture_stdout = job["style"] == "stdin"
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
                    if out_bytes > job["output_limit_bytes"]:
                        killed_for = "output-limit"
                elif fd == err_r:
                    err_bytes += len(data)
                    err_tail = (err_tail + data)[-STDERR_TAIL:]
                    if err_bytes > job["stderr_limit_bytes"]:
                        killed_for = "output-limit"
                else:
                    st_bytes += len(data)
                    st_buf += data
                    if st_bytes > MAX_STATUS_BYTES:
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
        budget = job["output_limit_bytes"] + job["stderr_limit_bytes"] + MAX_STATUS_BYTES
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
                elif fd == st_r and st_bytes <= MAX_STATUS_BYTES:
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

    def __init__(self, token):
        self._token = token

    def completed(self):
        self.send(ev="completed", token=self._token)

    def send(self, **msg):
        try:
            data = (json.dumps(msg) + "\n").encode("utf-8", "replace")
            view = memoryview(data)
            while view:
                view = view[os.write(STATUS_FD, view):]
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

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("<program>", "<tests>")]
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
_COMPARISON = ("__eq__", "__ne__", "__bool__", "__len__", "__hash__", "__lt__", "__gt__", "__le__", "__ge__")


def _program_class(cls):
    if getattr(cls, "__module__", None) == "__candidate__":
        return True
    for klass in getattr(cls, "__mro__", ()):
        for name in _COMPARISON:
            fn = vars(klass).get(name)
            code = getattr(fn, "__code__", None)
            if code is not None and code.co_filename == "<program>":
                return True
    return False


def _suspicious(value, depth=0, budget=None):
    """The first returned object whose class the program defined (it could fake equality or truth), else None."""
    budget = budget if budget is not None else [2000]
    budget[0] -= 1
    if budget[0] < 0 or depth > 4:
        return None
    cls = type(value)
    if cls in (int, float, str, bool, bytes, type(None), complex):
        return None
    if _program_class(cls):
        return cls.__name__
    if cls in (list, tuple, set, frozenset):
        for item in value:
            hit = _suspicious(item, depth + 1, budget)
            if hit:
                return hit
    elif cls is dict:
        for k, v in value.items():
            hit = _suspicious(k, depth + 1, budget) or _suspicious(v, depth + 1, budget)
            if hit:
                return hit
    return None


class _Tampered(Exception):
    pass


def _guard(fn, flags):
    def guarded(*args, **kwargs):
        result = fn(*args, **kwargs)
        hit = _suspicious(result)
        if hit:
            flags.append(f"returned an object of program-defined class {hit!r} (it could fake equality)")
            raise _Tampered(flags[-1])
        return result

    guarded.__name__ = getattr(fn, "__name__", "candidate")
    guarded.__doc__ = getattr(fn, "__doc__", None)
    return guarded


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

    namespace = {"__name__": name, "__builtins__": builtins}
    _remember_source("<program>", job["program"])
    try:
        code = compile(job["program"], "<program>", "exec")
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
    """humaneval / assert: load the program, then run the tests in a namespace with pristine builtins."""
    import builtins

    pristine = dict(vars(builtins))
    snapshot = _snapshot()
    namespace = _load_program(job, status, "__candidate__")
    changed = _tampering(snapshot)
    if changed:
        status.send(ev="tampered", detail="the program replaced " + ", ".join(changed[:5]))
        _finish(1)
    flags = []
    tests = dict(namespace)
    tests["__builtins__"] = dict(pristine)
    tests["__name__"] = "__tests__"
    _remember_source("<tests>", job["test_code"])
    try:
        code = compile(job["test_code"], "<tests>", "exec")
        if job["style"] == "humaneval":
            entry = job["entry_point"]
            if entry not in namespace:
                raise NameError(f"the program does not define {entry!r}")
            exec(code, tests)
            check = tests.get("check")
            if not callable(check):
                raise NameError("the test code does not define check(candidate)")
            check(_guard(namespace[entry], flags))
        else:
            for key, value in list(tests.items()):
                fn_code = getattr(value, "__code__", None)
                if fn_code is not None and fn_code.co_filename == "<program>":
                    tests[key] = _guard(value, flags)
            exec(code, tests)
    except MemoryError:
        status.send(ev="memory", phase="tests")
        _finish(1)
    except _Tampered:
        pass
    except SystemExit as exc:
        status.send(ev="exit-requested", phase="tests", code=str(exc.code)[:100])
        _finish(1)
    except BaseException as exc:
        if not flags:
            status.send(**_describe(exc, "tests"))
            _finish(1)
    changed = _tampering(snapshot)
    if flags or changed:
        detail = flags[0] if flags else "the program replaced " + ", ".join(changed[:5])
        status.send(ev="tampered", detail=detail)
        _finish(1)
    status.completed()
    _finish(0)


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
        if style in ("humaneval", "assert"):
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
