"""Hostile programs: each must be contained and scored as a failure with a reason, never hang or crash the
evaluator. They run in one parallel batch per isolation mode (the slow ones only wait for the 2 s limit).

Every program below *passes its check when the attack works* (it returns the right answer only after the attack
succeeded), so a containment failure shows up as outcome "passed".
"""
import os
import socket
import stat
import uuid
from pathlib import Path

import pytest

from megatron_ssd.evaluation.scoring import score_samples
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig

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
                      "        except OSError:\n            pass\n", {"timeout", "failed", "crash"}, ""),
        "fork_bomb_toplevel": ("import os\nwhile True:\n    os.fork()\n", {"failed", "timeout", "crash"}, ""),
        "allocate_unbounded": ("def f(x):\n    hog = []\n    while True:\n        hog.append(' ' * 10**7)\n",
                               {"memory"}, "MemoryError"),
        "allocate_huge": ("def f(x):\n    return bytearray(10**12)\n", {"memory"}, "MemoryError"),
        "infinite_loop": ("def f(x):\n    while True:\n        pass\n", {"timeout"}, "limit"),
        "sleep_past_limit": ("import time\ndef f(x):\n    time.sleep(3600)\n    return 2 * x\n", {"timeout"}, "limit"),
        "kill_parent": ("import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 2 * x\n",
                        {"sandbox-violation"}, "final record"),
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
                              {"sandbox-violation"}, "status pipe"),
        "monkeypatch_builtins": ("import builtins\nbuiltins.abs = lambda v: 0\ndef f(x):\n    return 2 * x\n",
                                 {"sandbox-violation"}, "builtins.abs"),
        "redefine_check": ("def check(candidate):\n    pass\ndef f(x):\n    return 0\n", {"failed"}, "assertion"),
        "always_equal": ("class Yes:\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return Yes()\n",
                         {"sandbox-violation"}, "equality"),
        "background_sleeper": (f"import os\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n"
                               f"        os.execv('/usr/bin/sleep', ['sleep', '3600', '{MARKER}'])\n    return x\n",
                               {"failed"}, "assertion"),
    }


BWRAP_ONLY = {"kill_everything": ("import os\ndef f(x):\n    os.kill(-1, 9)\n    return 2 * x\n",
                                  {"sandbox-violation"}, "final record")}
FALLBACK_SKIP = {"socket", "read_home"}  # no network namespace / the host's /home is readable without bwrap


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
    check_rows(rows, programs, forbidden)


@needs_root
@pytest.mark.filterwarnings("ignore::megatron_ssd.evaluation.sandbox.isolation.IsolationWarning")
def test_hostile_programs_fallback(attack_env):
    port, secret, forbidden = attack_env
    programs = {k: v for k, v in hostile_programs(port, secret, forbidden).items() if k not in FALLBACK_SKIP}
    rows = run_batch(programs, SandboxConfig(workers=2, timeout_s=5.0, memory_mb=256, isolation="fallback"))
    assert {r["isolation"] for r in rows.values()} == {"fallback-rlimits"}
    check_rows(rows, programs, forbidden)
    assert stat.S_IMODE(forbidden.stat().st_mode) == 0o755


def test_a_sane_program_still_passes_next_to_the_attacks(sandbox_cfg):
    problem = double_problem()
    rows = score_samples([problem], [{"prompt_id": problem.problem_id, "sample_idx": 0,
                                      "text": "def f(x):\n    return 2 * x\n"}], sandbox_cfg)
    assert rows[0]["outcome"] == "passed", rows[0]
