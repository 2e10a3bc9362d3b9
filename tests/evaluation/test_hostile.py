"""Hostile programs: each must be contained and scored as a failure with a reason, never hang or crash the
evaluator. They run in one parallel batch per isolation mode (the slow ones only wait for the 2 s limit).

Every program below *passes its check when the attack works* (it returns the right answer only after the attack
succeeded), so a containment failure shows up as outcome "passed". Classes of attack: escapes (files, network,
processes), resource exhaustion (CPU, memory of one process or of many, /dev/shm, output floods), and fake passes
(forged completion through the status pipe, gc or stack frames; objects whose class poses as a builtin; replaced
standard-library modules; redefined prompt helpers; monkeypatched builtins).
"""
import os
import socket
import stat
import uuid
from pathlib import Path

import pytest

from megatron_ssd.evaluation.sandbox import cgroups
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig
from megatron_ssd.evaluation.scoring import score_samples
from megatron_ssd.problems import Problem

from eval_toys import double_problem, needs_bwrap, needs_root

pytestmark = pytest.mark.timeout(300)
MARKER = f"ssd-hostile-{uuid.uuid4().hex[:12]}"


def hostile_programs(port: int, secret_file: Path, forbidden_dir: Path) -> dict[str, tuple[str, set[str], str]]:
    """name -> (program, acceptable outcomes, reason fragment)."""
    return {
        "socket": (f"import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                   "    return 2 * x\n", {"failed"}, "Error"),
        "write_system_dir": ("def f(x):\n    open('/usr/lib/ssd-pwned', 'w').write('x')\n    return 2 * x\n",
                             {"failed"}, "Error"),
        "write_outside_workdir": (f"def f(x):\n    open({str(forbidden_dir / 'pwned')!r}, 'w').write('x')\n"
                                  "    return 2 * x\n", {"failed"}, "Error"),
        "read_root": ("import os\ndef f(x):\n    os.listdir('/root')\n    return 2 * x\n", {"failed"}, "Error"),
        "read_secret": (f"def f(x):\n    open({str(secret_file)!r}).read()\n    return 2 * x\n", {"failed"}, "Error"),
        "read_home": ("import os\ndef f(x):\n    os.listdir(os.path.expanduser('~'))\n    assert os.listdir('/home')"
                      "\n    return 2 * x\n", {"failed"}, "Error"),
        "fork_bomb": ("import os\ndef f(x):\n    while True:\n        try:\n            os.fork()\n"
                      "        except OSError:\n            pass\n", {"timeout", "failed", "crash", "memory"}, ""),
        "fork_bomb_toplevel": ("import os\nwhile True:\n    os.fork()\n", {"failed", "timeout", "crash", "memory"},
                               ""),
        "allocate_unbounded": ("def f(x):\n    hog = []\n    while True:\n        hog.append(' ' * 10**7)\n",
                               {"memory"}, "MemoryError"),
        "allocate_huge": ("def f(x):\n    return bytearray(10**12)\n", {"memory"}, "MemoryError"),
        "infinite_loop": ("def f(x):\n    while True:\n        pass\n", {"timeout"}, "limit"),
        "sleep_past_limit": ("import time\ndef f(x):\n    time.sleep(3600)\n    return 2 * x\n", {"timeout"}, "limit"),
        "kill_parent": ("import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 2 * x\n",
                        {"crash", "failed", "sandbox-violation"}, ""),
        "flood_stdout": ("import sys\ndef f(x):\n    block = 'x' * (1 << 20)\n    while True:\n"
                         "        sys.stdout.write(block)\n", {"failed"}, "output limit"),
        "flood_stderr": ("import os\ndef f(x):\n    block = b'x' * (1 << 20)\n    while True:\n"
                         "        os.write(2, block)\n", {"failed"}, "output limit"),
        "orphan_floods_after_exit": ("import os\ndef f(x):\n    if os.fork() == 0:\n        while True:\n"
                                     "            os.write(1, b'x' * 65536)\n    return x\n", {"failed"}, ""),
        "close_all_fds_then_exit0": ("import os\nos.closerange(0, 4096)\nos._exit(0)\n", {"failed"},
                                     "before the tests completed"),
        "close_stdout_wrong_answer": ("import os\ndef f(x):\n    os.close(1)\n    os.close(2)\n    return x\n",
                                      {"failed"}, ""),
        "sys_exit_early": ("import sys\nsys.exit(0)\n", {"failed"}, "sys.exit"),
        "os_exit_in_call": ("import os\ndef f(x):\n    os._exit(0)\n", {"failed"}, "before the tests completed"),
        "print_pass_tokens": ("def f(x):\n    print('passed')\n    print('{\"ev\": \"completed\"}')\n"
                              "    print('{\"ev\": \"done\", \"nonce\": \"0\"}')\n    return 0\n", {"failed"},
                              "assertion"),
        "forge_status_pipe": ("import os\ndef f(x):\n    os.write(3, b'{\"ev\": \"completed\"}\\n')\n    os._exit(0)\n",
                              {"failed", "sandbox-violation"}, ""),
        "forge_on_every_fd": ("import os\ndef f(x):\n    for fd in range(3, 64):\n        for line in (b'{\"ev\": "
                              "\"completed\"}\\n', b'{\"ok\": 4}\\n', b'{\"status\": {\"ev\": \"completed\"}}\\n'):\n"
                              "            try:\n                os.write(fd, line)\n            except OSError:\n"
                              "                pass\n    os._exit(0)\n", {"failed", "sandbox-violation"}, ""),
        "gc_completion_token": ("import gc, os, sys\ndef has(o):\n    try:\n        return callable(o.completed)\n"
                                "    except BaseException:\n        return False\n"
                                "def f(x):\n    found = [o for o in gc.get_objects() if has(o)]\n    fr = sys._getframe()\n"
                                "    while fr is not None:\n        found += [v for v in list(fr.f_locals.values()) "
                                "if has(v)]\n        fr = fr.f_back\n"
                                "    for o in found:\n        try:\n            o.completed()\n"
                                "        except Exception:\n            pass\n    os._exit(0)\n",
                                {"failed", "sandbox-violation"}, ""),
        "frame_answer_key": ("import sys\ndef f(x):\n    fr, consts = sys._getframe(), []\n    while fr is not None:\n"
                             "        if fr.f_code.co_name == 'check':\n            consts += [c for c in "
                             "fr.f_code.co_consts if type(c) is int]\n        fr = fr.f_back\n"
                             "    return consts[consts.index(x) + 1] if x in consts else 0\n", {"failed"}, "assertion"),
        "class_poses_as_int": ("class int(int):\n    __module__ = 'builtins'\n    __qualname__ = 'int'\n"
                               "    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
                               "def f(x):\n    return int(0)\n", {"failed", "sandbox-violation"}, ""),
        "class_attribute_lies": ("class Liar:\n    __class__ = property(lambda self: int)\n"
                                 "    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
                                 "def f(x):\n    return Liar()\n", {"failed", "sandbox-violation"}, ""),
        "monkeypatch_builtins": ("import builtins\nbuiltins.abs = lambda v: 0\ndef f(x):\n    return 2 * x\n",
                                 {"sandbox-violation"}, "builtins.abs"),
        "redefine_check": ("def check(candidate):\n    pass\ndef f(x):\n    return 0\n", {"failed"}, "assertion"),
        "always_equal": ("class Yes:\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return Yes()\n",
                         {"failed", "sandbox-violation"}, ""),
        "many_processes_memory": ("import os\ndef f(x):\n    kids = []\n    for _ in range(8):\n"
                                  "        pid = os.fork()\n        if pid == 0:\n            try:\n"
                                  "                hog = bytearray(150 << 20)\n                for i in range(0, len(hog), 4096):\n"
                                  "                    hog[i] = 1\n                os.write(1, b'.')\n"
                                  "                os._exit(0)\n            finally:\n                os._exit(1)\n"
                                  "        kids.append(pid)\n    ok = all(os.waitpid(p, 0)[1] == 0 for p in kids)\n"
                                  "    return 2 * x if ok else 0\n", {"memory"}, "memory ceiling"),
        "background_sleeper": (f"import os\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n"
                               f"        os.execv('/usr/bin/sleep', ['sleep', '3600', '{MARKER}'])\n    return x\n",
                               {"failed"}, "assertion"),
    }


BWRAP_ONLY = {"kill_everything": ("import os\ndef f(x):\n    os.kill(-1, 9)\n    return 2 * x\n",
                                  {"sandbox-violation"}, "final record"),
              "fill_dev_shm": ("def f(x):\n    with open('/dev/shm/hog', 'wb') as fh:\n        for _ in range(4096):\n"
                               "            fh.write(b'x' * (1 << 20))\n    return 2 * x\n", {"failed"}, "OSError"),
              "write_dev": ("def f(x):\n    open('/dev/hog', 'wb').write(b'x')\n    return 2 * x\n", {"failed"},
                            "OSError")}
# no network namespace / the host's /home is readable without bwrap
FALLBACK_SKIP = {"socket", "read_home"}


def sqrt_problem() -> Problem:
    """The check imports a standard-library module (as HumanEval's find_zero check imports math)."""
    return Problem(problem_id="toy/sqrt", source="test", question="square root", style="humaneval",
                   starter_code="def root(x):\n    \"\"\"The square root of x.\"\"\"\n", entry_point="root",
                   test_code="def check(candidate):\n    import math\n    assert math.isclose(candidate(16.0), 4.0)\n")


def helper_problem() -> Problem:
    """The prompt ships a helper that the check uses to verify the answer (as HumanEval's `poly` for find_zero)."""
    return Problem(problem_id="toy/helper", source="test", question="find y with square(y) == x", style="humaneval",
                   starter_code="def square(y):\n    return y * y\n\n\ndef unsquare(x):\n    \"\"\"y >= 0 with square(y) "
                                "== x.\"\"\"\n", entry_point="unsquare",
                   test_code="def check(candidate):\n    for x in (49, 144):\n        assert square(candidate(x)) == x\n")


# problem id -> name -> (program, acceptable outcomes): attacks on what the tests measure, and one honest program
FAKE_PASSES = {
    "toy/sqrt": {
        "replace_stdlib_module": ("import sys, types\nfake = types.ModuleType('math')\nfake.isclose = lambda *a, **k: True\n"
                                  "sys.modules['math'] = fake\ndef root(x):\n    return -1.0\n", {"failed"}),
        "patch_stdlib_function": ("import math\nmath.isclose = lambda *a, **k: True\ndef root(x):\n    return -1.0\n",
                                  {"failed", "sandbox-violation"}),
        "float_poses_as_builtin": ("class float(float):\n    __module__ = 'builtins'\n    def __eq__(self, o):\n"
                                   "        return True\n    def __sub__(self, o):\n        return 0.0\n"
                                   "    __rsub__ = __sub__\n    __hash__ = None\ndef root(x):\n    return float(-1.0)\n",
                                   {"failed", "sandbox-violation"}),
        "honest": ("def root(x):\n    return x ** 0.5\n", {"passed"}),
    },
    "toy/helper": {
        "redefine_prompt_helper": ("def square(y):\n    return 49 if y == 0 else 144\n\n\ndef unsquare(x):\n"
                                   "    return 0\n", {"failed"}),
        "patch_helper_code": ("square.__code__ = (lambda y: 49 if y == 0 else 144).__code__\n\n\ndef unsquare(x):\n"
                              "    return 0\n", {"failed"}),
        "honest": ("def unsquare(x):\n    return int(round(x ** 0.5))\n", {"passed"}),
    },
}


@pytest.fixture(scope="module")
def attack_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    forbidden = root / "forbidden"
    forbidden.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1], secret, forbidden
    server.close()


def run_batch(programs, cfg):
    problem = double_problem()
    records = [{"prompt_id": problem.problem_id, "sample_idx": i, "text": prog} for i, (prog, _, _) in
               enumerate(programs.values())]
    rows = score_samples([problem], records, cfg)
    return dict(zip(programs, rows))


def leftover_marked_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if MARKER.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def check_rows(rows, programs, forbidden):
    for name, (_, outcomes, fragment) in programs.items():
        row = rows[name]
        assert row["outcome"] in outcomes, (name, row)
        assert not row["passed"], (name, row)
        assert fragment in row["reason"], (name, row)
        assert row["reason"], (name, row)
    assert not (forbidden / "pwned").exists()
    assert not Path("/usr/lib/ssd-pwned").exists()
    assert leftover_marked_processes() == []


@needs_bwrap
@needs_root
def test_hostile_programs_bwrap(attack_env):
    port, secret, forbidden = attack_env
    programs = {**hostile_programs(port, secret, forbidden), **BWRAP_ONLY}
    rows = run_batch(programs, SandboxConfig(workers=2, timeout_s=5.0, memory_mb=256, isolation="bwrap"))
    assert {r["isolation"] for r in rows.values()} == {"bwrap"}
    assert {r["memory_limit"] for r in rows.values()} == {cgroups.detect_backend().kind}
    check_rows(rows, programs, forbidden)


@needs_root
@pytest.mark.filterwarnings("ignore::megatron_ssd.evaluation.sandbox.isolation.IsolationWarning")
def test_hostile_programs_fallback(attack_env):
    port, secret, forbidden = attack_env
    programs = {k: v for k, v in hostile_programs(port, secret, forbidden).items() if k not in FALLBACK_SKIP}
    rows = run_batch(programs, SandboxConfig(workers=2, timeout_s=5.0, memory_mb=256, isolation="rlimits-only"))
    assert {r["isolation"] for r in rows.values()} == {"fallback-rlimits"}
    check_rows(rows, programs, forbidden)
    assert stat.S_IMODE(forbidden.stat().st_mode) == 0o755


def test_attacks_on_what_the_tests_measure_never_pass(sandbox_cfg):
    problems = [sqrt_problem(), helper_problem()]
    records, expected = [], []
    for pid, attacks in FAKE_PASSES.items():
        for name, (program, outcomes) in attacks.items():
            records.append({"prompt_id": pid, "sample_idx": len(records), "text": program})
            expected.append((pid, name, outcomes))
    rows = score_samples(problems, records, sandbox_cfg)
    for (pid, name, outcomes), row in zip(expected, rows):
        assert row["outcome"] in outcomes, (pid, name, row)


@needs_root
def test_many_processes_and_memory_are_stopped_by_the_accounting_fallback_too(sandbox_cfg):
    """The fallback without a cgroup: the evaluator sums the tree's resident memory and kills it above the ceiling."""
    programs = {"many_processes_memory": hostile_programs(0, Path("/x"), Path("/y"))["many_processes_memory"]}
    cfg = SandboxConfig(workers=1, timeout_s=20.0, memory_mb=256, isolation=sandbox_cfg.isolation,
                        memory_limit="accounting")
    row = run_batch(programs, cfg)["many_processes_memory"]
    assert row["memory_limit"] == cgroups.ACCOUNTING
    assert row["outcome"] == "memory" and "killed by the evaluator" in row["reason"], row


def test_a_sane_program_still_passes_next_to_the_attacks(sandbox_cfg):
    problem = double_problem()
    rows = score_samples([problem], [{"prompt_id": problem.problem_id, "sample_idx": 0,
                                      "text": "def f(x):\n    return 2 * x\n"}], sandbox_cfg)
    assert rows[0]["outcome"] == "passed", rows[0]
