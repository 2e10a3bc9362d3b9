"""grader=livecodebench gives LiveCodeBench's own verdict (lcb_runner's `run_test`) on every program below.

The rows in `lcb_rows/parity.jsonl` are LiveCodeBench `code_generation_lite` rows (AtCoder/Codeforces stdin problems
with metadata "{}", LeetCode functional ones with metadata.func_name and starter code), private tests in both
encodings LiveCodeBench reads (plain JSON text and base64(zlib(pickle(JSON text)))); they are loaded through the
real source loader. Each program is scored in the sandbox (bubblewrap; SSD_REQUIRE_BWRAP=1 in CI) and must get:

- `lcb`: LiveCodeBench's verdict (pass = every test True). Derived by reading
  lcb_runner/evaluation/testing_util.py, then confirmed by running lcb_runner's `check_correctness` on these rows
  and programs (in bubblewrap, fd 0 = /dev/null, timeout 2 s, outside this repository; its code is not part of it).
  Where running it contradicted the first reading, the case says "oracle:".
- `ours`: our outcome (protocol.OUTCOMES); it passes exactly when `lcb` does, except for the cases marked
  `LOOPHOLE`, where LiveCodeBench passes a program that did not produce the answer (docs/SANDBOX.md lists them).
- `pins`: the testing_util.py function/lines whose semantics the case pins.

Programs are given verbatim (completion=True: no code extraction, which is prompting's business).
"""
from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from megatron_ssd.evaluation.scoring import score_samples
from megatron_ssd.prompts.sources import load_source

pytestmark = pytest.mark.timeout(300)

ROWS = Path(__file__).with_name("lcb_rows") / "parity.jsonl"
LCB_TIMEOUT_S = 2  # the oracle ran with timeout=2 too; nothing here runs close to it but the timeout cases
LOOPHOLE = "loophole"


def _system_numpy() -> bool:
    """numpy for the sandbox's interpreter (scripts/bootstrap.sh installs python3-numpy); LiveCodeBench has it."""
    try:
        probe = subprocess.run(["/usr/bin/python3", "-c", "import numpy"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


NUMPY = _system_numpy()

# (id, problem, program, lcb passes, our outcome, pins)
CASES = [
    # ---------------------------------------------------------------- stdin: how the program reads its input
    ("input-split", "abc001_a", "a, b = map(int, input().split())\nprint(a + b)\n", True, "passed",
     "call_method 154-181: builtins.input reads the mocked sys.stdin line by line"),
    ("sys-stdin-read", "abc001_a", "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n", True, "passed",
     "MockStdinWithBuffer.read 80-81"),
    ("sys-stdin-readline", "abc001_a", "import sys\na, b = map(int, sys.stdin.readline().split())\nprint(a + b)\n",
     True, "passed", "MockStdinWithBuffer.readline 83-84"),
    ("sys-stdin-readlines", "abc001_b",
     "import sys\nlines = sys.stdin.readlines()\nn = int(lines[0])\nfor i in range(n):\n"
     "    print(2 * int(lines[1 + i]))\n",
     True, "passed", "MockStdinWithBuffer.readlines 86-87: input.split('\\n')"),
    ("readlines-trailing-empty", "abc001_b",
     "import sys\nfor x in sys.stdin.readlines()[1:]:\n    print(2 * int(x))\n", False, "failed",
     "readlines 86-87: the input's final newline leaves an empty last element (int('') raises)"),
    ("read-whole-again", "abc001_b",
     "import sys\nn = int(sys.stdin.readline())\nrest = sys.stdin.read().split()\nfor x in rest[:n]:\n"
     "    print(2 * int(x))\n", False, "failed",
     "MockStdinWithBuffer.read 80-81: read() returns the whole input at every call, not the rest"),
    ("toplevel-input-alias", "abc001_b",
     "import sys\ninput = sys.stdin.readline\nn = int(input())\nfor _ in range(n):\n    print(2 * int(input()))\n",
     True, "passed", "make_function 122-151: the assignment runs inside wrapped_function, after sys.stdin is mocked"),
    ("stdin-buffer-read", "abc001_a", "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))\n", True,
     "passed", "MockBuffer.read 98-100"),
    ("stdin-buffer-readline", "abc001_b",
     "import sys\nn = int(sys.stdin.buffer.readline())\nfor _ in range(n):\n"
     "    print(2 * int(sys.stdin.buffer.readline()))\n", False, "failed",
     "MockBuffer.readline 102-103: always the first line"),
    ("for-line-in-sys-stdin", "abc001_b",
     "import sys\nfor i, line in enumerate(sys.stdin):\n    if i:\n        print(2 * int(line))\n", False, "failed",
     "MockStdinWithBuffer 74-91 has no __iter__ (__getattr__ does not serve it): TypeError"),
    ("from-sys-import-stdin-readline", "abc001_a",
     "from sys import stdin\na, b = map(int, stdin.readline().split())\nprint(a + b)\n", True, "passed",
     "oracle: the hoisted import binds the real stdin, whose readline call_method 169 patched (mock enters the "
     "stacked patches bottom first, before sys.stdin is replaced)"),
    ("from-sys-import-stdin-read", "abc001_a",
     "from sys import stdin\nprint(sum(map(int, stdin.read().split())))\n", True, "passed",
     "call_method 171 patches read on the real stdin object"),
    ("from-sys-import-stdin-iter", "abc001_b",
     "from sys import stdin\nfor i, line in enumerate(stdin):\n    if i:\n        print(2 * int(line))\n", False,
     "failed", "oracle: iterating the real stdin object reads the process's own (empty) stdin: no output"),
    ("from-sys-import-stdin-buffer", "abc001_a",
     "from sys import stdin\nprint(sum(map(int, stdin.buffer.read().split())))\n", False, "failed",
     "the real stdin's buffer is not patched (168-171): empty input, prints 0"),
    ("open-0", "abc001_a", "print(sum(map(int, open(0).read().split())))\n", False, "failed",
     "oracle: import_string 27's `from io import *`/`from builtins import *` bind the real open before call_method "
     "167 patches builtins.open"),
    ("builtins-open-0", "abc001_a", "import builtins\nprint(sum(map(int, builtins.open(0).read().split())))\n", True,
     "passed", "call_method 167: mock_open(read_data=inputs)"),
    ("input-past-eof", "abc001_a", "a, b = map(int, input().split())\nc = input()\nprint(a + b)\n", False, "failed",
     "MockStdinWithBuffer.readline 83-84 at EOF: input() raises EOFError"),
    # ---------------------------------------------------------------- stdin: program rewriting and exits
    ("name-main-last", "abc001_a",
     "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n\nif __name__ == \"__main__\":\n"
     "    main()\n",
     True, "passed", "clean_if_name 106-119: a last `if __name__ == '__main__':` is unwrapped"),
    ("name-main-not-last", "abc001_a",
     "def main():\n    a, b = map(int, input().split())\n    print(a + b)\n\nif __name__ == '__main__':\n"
     "    main()\nDONE = True\n", False, "failed",
     "clean_if_name 109-110 looks at the last statement only; the module is tmp_sol (195): no output"),
    ("global-in-nested-function", "abc001_a",
     "total = 0\ndef add(x):\n    global total\n    total += x\nfor x in map(int, input().split()):\n    add(x)\n"
     "print(total)\n", False, "failed",
     "make_function 133-141: top-level names become wrapped_function's locals; `global total` finds none (NameError)"),
    ("global-declared-at-top", "abc001_a",
     "global total\ntotal = 0\ndef add(x):\n    global total\n    total += x\nfor x in map(int, input().split()):\n"
     "    add(x)\nprint(total)\n", True, "passed",
     "make_function 133-141: a top-level `global` becomes the wrapper's own declaration"),
    ("toplevel-return", "abc001_a", "a, b = map(int, input().split())\nprint(a + b)\nreturn\nprint('never')\n", True,
     "passed", "oracle: make_function 133-141 makes a top-level return legal (ast.parse accepts it)"),
    ("future-import", "abc001_a", "from __future__ import annotations\na, b = map(int, input().split())\n"
     "print(a + b)\n",
     False, "failed", "make_function 142-148: the hoisted __future__ import follows import_string: SyntaxError"),
    ("empty-program", "abc001_a", "", False, "failed",
     "make_function 133-148: an empty wrapped_function body does not compile (what an extraction without code gives)"),
    ("only-imports", "abc001_a", "import sys\n", False, "failed", "make_function 128-141: the same, imports hoisted"),
    ("sys-exit-1-after-output", "abc001_a", "import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.exit(1)\n",
     True, "passed", "call_method 176-177: SystemExit is swallowed, its code never looked at"),
    ("exit-after-output", "abc001_a", "a, b = map(int, input().split())\nprint(a + b)\nexit()\n", True, "passed",
     "site's exit() exists (reliability_guard 539 keeps it); SystemExit swallowed 176-177"),
    ("quit-after-output", "abc001_a", "a, b = map(int, input().split())\nprint(a + b)\nquit()\n", False, "failed",
     "reliability_guard 540: builtins.quit = None (TypeError)"),
    ("os-exit-after-output", "abc001_a", "import os\na, b = map(int, input().split())\nprint(a + b)\nos._exit(0)\n",
     False, "failed", "the process ends inside run_test: check_correctness 47-50 (all tests fail)"),
    ("error-after-output", "abc001_a", "a, b = map(int, input().split())\nprint(a + b)\nraise ValueError('late')\n",
     False, "failed", "grade_stdio 345-364: an exception is a runtime error whatever was printed"),
    ("os-getcwd", "abc001_a", "import os\nos.getcwd()\na, b = map(int, input().split())\nprint(a + b)\n", False,
     "failed", "reliability_guard 571: os.getcwd = None"),
    ("state-across-tests", "abc001_a",
     "import sys\nsys.calls = getattr(sys, 'calls', 0) + 1\na, b = map(int, input().split())\n"
     "print(a + b if sys.calls == 1 else a - b)\n", False, "failed",
     "grade_stdio 333-341: every test runs in the same process (state survives between tests)"),
    ("recursion-30000", "abc001_e",
     "def s(n):\n    return 0 if n == 0 else n + s(n - 1)\nprint(s(int(input())))\n", True, "passed",
     "import_string 27: sys.setrecursionlimit(50000)"),
    ("int-over-4300-digits", "abc001_d", "print(2 ** int(input()))\n", True, "passed",
     "compute_code_generation_metrics.py 7: sys.set_int_max_str_digits(50000)"),
    ("thread-with-big-stack", "abc001_a",
     "import threading\nthreading.stack_size(1 << 26)\ndef main():\n    a, b = map(int, input().split())\n"
     "    print(a + b)\nt = threading.Thread(target=main)\nt.start()\nt.join()\n", True, "passed",
     "Capturing 59-70 replaces sys.stdout for every thread"),
    # ---------------------------------------------------------------- stdin: where the output goes
    ("sys-stdout-write", "abc001_a", "import sys\na, b = map(int, input().split())\nsys.stdout.write(f'{a + b}\\n')\n",
     True, "passed", "Capturing 61-62: sys.stdout is a StringIO"),
    ("bare-stdout-write", "abc001_a", "a, b = map(int, input().split())\nstdout.write(f'{a + b}\\n')\n", False,
     "failed", "import_string 27's `from sys import *` binds the real stdout before Capturing: not captured"),
    ("from-sys-import-stdout", "abc001_a",
     "from sys import stdout\na, b = map(int, input().split())\nstdout.write(str(a + b))\n", False, "failed",
     "make_function 128-129 hoists the import: the real stdout, bound before Capturing"),
    ("os-write-fd-1", "abc001_a", "import os\na, b = map(int, input().split())\nos.write(1, f'{a + b}\\n'.encode())\n",
     False, "failed", "Capturing 59-70 captures sys.stdout only"),
    ("stdout-buffer-write", "abc001_a",
     "import sys\na, b = map(int, input().split())\nsys.stdout.buffer.write(f'{a + b}\\n'.encode())\n", False,
     "failed", "Capturing 62: a StringIO has no buffer (AttributeError)"),
    ("fd-1-flood", "abc001_a",
     "import os\na, b = map(int, input().split())\nfor _ in range(160):\n    os.write(1, b'x' * 65536)\nprint(a + b)\n",
     True, "passed", "only sys.stdout is compared (370); what reaches the real fd 1 has no limit there"),
    ("stderr-flood", "abc001_a",
     "import sys\na, b = map(int, input().split())\nfor _ in range(40):\n    sys.stderr.write('e' * 65536)\n"
     "print(a + b)\n", True, "passed", "stderr is not looked at, nor limited"),
    ("stderr-noise", "abc001_a",
     "import sys\na, b = map(int, input().split())\nprint('debug', a, b, file=sys.stderr)\nprint(a + b)\n", True,
     "passed", "only sys.stdout is compared (370)"),
    # ---------------------------------------------------------------- stdin: comparing the output
    ("float-repr-and-3.0", "abc001_c", "a, b = map(int, input().split())\nprint(a / b)\n", True, "passed",
     "grade_stdio 407-419: elements equal as Decimal ('3.0' == '3')"),
    ("ten-decimals", "abc001_c", "a, b = map(int, input().split())\nprint(f'{a / b:.10f}')\n", False, "failed",
     "grade_stdio 418: Decimal equality, no tolerance"),
    ("exponent-notation", "abc001_c", "a, b = map(int, input().split())\nprint(repr(a / b) if a % b else '3E0')\n",
     True, "passed", "convert_line_to_decimals 214-219: Decimal('3E0') == Decimal('3')"),
    ("count-up", "1900_a", "n = int(input())\nprint(*range(1, n + 1))\nprint('all done')\n", True, "passed",
     "grade_stdio 398: exact line match"),
    ("number-spacing", "1900_a", "n = int(input())\nprint('  '.join(map(str, range(1, n + 1))) + '\\t')\n"
     "print('all done')\n", True, "passed", "convert_line_to_decimals 216: line.split() (numbers only)"),
    ("text-spacing", "1900_a", "n = int(input())\nprint(*range(1, n + 1))\nprint('all  done')\n", False, "failed",
     "grade_stdio 398-416: a text line must match exactly after strip"),
    ("outer-blank-lines-crlf", "1900_a",
     "import sys\nn = int(input())\nsys.stdout.write('\\n\\n' + ' '.join(map(str, range(1, n + 1))) + '  \\r\\n'"
     " + 'all done\\r\\n\\n\\n')\n", True, "passed", "get_stripped_lines 222-226: strip, split('\\n'), strip"),
    ("inner-blank-line", "1900_a", "n = int(input())\nprint(*range(1, n + 1))\nprint()\nprint('all done')\n", False,
     "failed", "grade_stdio 384-387: line counts must be equal"),
    ("one-number-per-line", "1900_a", "n = int(input())\nfor i in range(1, n + 1):\n    print(i)\nprint('all done')\n",
     False, "failed", "grade_stdio 384-387: line counts must be equal"),
    # ---------------------------------------------------------------- stdin: time limits
    ("stdin-timeout", "abc001_a", "while True:\n    pass\n", False, "timeout", "grade_stdio 334-355: alarm(timeout)"),
    ("stdin-catches-timeout", "abc001_a",
     "import time\na, b = map(int, input().split())\ntry:\n    time.sleep(30)\nexcept Exception:\n    pass\n"
     "print(a + b)\n", False, "timeout",
     "oracle: timeout_handler 51-53 prints into the captured output, so the caught timeout still fails (line count)"),
    # ---------------------------------------------------------------- functional
    ("list-without-import", "weekly1_a",
     "class Solution:\n    def sumList(self, nums: List[int]) -> int:\n        return sum(nums)\n", True, "passed",
     "grade_call_based 234: import_string 27 (from typing import *) before the program"),
    ("prelude-names", "weekly1_a",
     "class Solution:\n    def sumList(self, nums: List[int]) -> int:\n        c = Counter(nums)\n"
     "        h = []\n        for x in nums:\n            heappush(h, x)\n"
     "        return sum(k * v for k, v in c.items()) + 0 * len(list(accumulate(h))) + 0 * gcd(4, 6)\n", True,
     "passed", "import_string 27: collections, heapq, itertools, math star-imported"),
    ("module-function", "weekly1_a", "def sumList(nums):\n    return sum(nums)\n", True, "passed",
     "compile_code 197-205: without 'class Solution' the module's function is called"),
    ("class-solution-in-comment", "weekly1_a",
     "# no class Solution needed here\ndef sumList(nums):\n    return sum(nums)\n", False, "failed",
     "compile_code 197-202: the substring 'class Solution' anywhere means tmp_sol.Solution() (AttributeError)"),
    ("one-solution-instance", "weekly1_a",
     "class Solution:\n    def __init__(self):\n        self.total = 0\n    def sumList(self, nums):\n"
     "        self.total += sum(nums)\n        return self.total\n", False, "failed",
     "compile_code 202: one Solution() for every test (state carries over)"),
    ("memo-on-instance", "weekly1_a",
     "class Solution:\n    memo = {}\n    def sumList(self, nums):\n        key = tuple(nums)\n"
     "        if key not in self.memo:\n            self.memo[key] = sum(nums)\n        return self.memo[key]\n", True,
     "passed", "compile_code 202: a shared instance is harmless to a correct cache"),
    ("one-for-true", "weekly1_b", "class Solution:\n    def isEven(self, n):\n        return 1 if n % 2 == 0 else 0\n",
     True, "passed", "grade_call_based 268: prediction == json.loads(output); 1 == True"),
    ("string-true", "weekly1_b", "class Solution:\n    def isEven(self, n):\n"
     "        return 'true' if n % 2 == 0 else 'false'\n",
     False, "failed", "grade_call_based 268: 'true' != True"),
    ("top-level-tuple", "weekly1_c",
     "class Solution:\n    def pairs(self, n):\n        return tuple([i, i + 1] for i in range(n))\n", True, "passed",
     "grade_call_based 265-266: a returned tuple becomes a list"),
    ("nested-tuples", "weekly1_c", "class Solution:\n    def pairs(self, n):\n"
     "        return [(i, i + 1) for i in range(n)]\n",
     False, "failed", "grade_call_based 265-268: only the top level is converted; (0, 1) != [0, 1]"),
    ("float-average", "weekly1_d", "class Solution:\n    def average(self, nums):\n"
     "        return sum(nums) / len(nums)\n",
     True, "passed", "grade_call_based 268: 2.5 == 2.5"),
    ("int-for-float", "weekly1_d",
     "class Solution:\n    def average(self, nums):\n        s = sum(nums)\n"
     "        return s // len(nums) if s % len(nums) == 0 "
     "else s / len(nums)\n", True, "passed", "grade_call_based 268: 2 == 2.0"),
    ("fraction", "weekly1_d",
     "from fractions import Fraction\nclass Solution:\n    def average(self, nums):\n"
     "        return Fraction(sum(nums), len(nums))\n",
     True, "passed", "grade_call_based 268: Fraction(5, 2) == 2.5"),
    ("numpy-scalar", "weekly1_a",
     "import numpy as np\nclass Solution:\n    def sumList(self, nums):\n"
     "        return np.int64(np.sum(np.array(nums, dtype=np.int64)))\n",
     True, "passed", "grade_call_based 268: np.int64(6) == 6 (numpy is in LiveCodeBench's environment)"),
    ("numpy-array", "weekly1_c",
     "import numpy as np\nclass Solution:\n    def pairs(self, n):\n"
     "        return np.array([[i, i + 1] for i in range(n)])\n",
     False, "failed", "grade_call_based 268-274: an element-wise == whose truth value raises"),
    ("mutates-arguments", "weekly1_a", "class Solution:\n    def sumList(self, nums):\n        nums.append(0)\n"
     "        return sum(nums)\n", True, "passed", "grade_call_based 245-247: each test's arguments are its own"),
    ("prints-in-method", "weekly1_a", "class Solution:\n    def sumList(self, nums):\n        print('noise', nums)\n"
     "        return sum(nums)\n", True, "passed", "grade_call_based 229-307: stdout is not looked at"),
    ("raises", "weekly1_a", "class Solution:\n    def sumList(self, nums):\n        return nums[0] + sum(nums[1:])\n",
     False, "failed", "grade_call_based 293-301: an exception is a runtime error (nums[0] of [])"),
    ("sys-exit-in-method", "weekly1_a", "import sys\nclass Solution:\n    def sumList(self, nums):\n"
     "        sys.exit(0)\n",
     False, "failed", "SystemExit is no Exception (282): the process ends, check_correctness 47-50"),
    ("future-import-functional", "weekly1_a",
     "from __future__ import annotations\nclass Solution:\n    def sumList(self, nums):\n        return sum(nums)\n",
     False, "failed", "grade_call_based 234: the import follows import_string (SyntaxError)"),
    ("functional-timeout", "weekly1_a", "class Solution:\n    def sumList(self, nums):\n        while True:\n"
     "            pass\n",
     False, "timeout", "grade_call_based 254, 284-292: alarm(timeout) per test"),
    ("blank-input-line", "weekly1_e", "class Solution:\n    def add(self, a, b):\n"
     "        return a + b\n", False, "crash",
     "grade_call_based 245-247: json.loads('') of the input's blank last line fails every program"),
    # ---------------------------------------------------------------- loopholes: LiveCodeBench passes, we do not
    ("catches-timeout-functional", "weekly1_a",
     "import time\nclass Solution:\n    def sumList(self, nums):\n        try:\n            time.sleep(30)\n"
     "        except Exception:\n            pass\n        return sum(nums)\n", LOOPHOLE, "timeout",
     "timeout_handler 51-53 raises TimeoutException inside the program, which may catch it (282-292)"),
    ("lying-eq-object", "weekly1_a",
     "class Anything:\n    def __eq__(self, other):\n        return True\nclass Solution:\n"
     "    def sumList(self, nums):\n"
     "        return Anything()\n", LOOPHOLE, "failed", "grade_call_based 268: the prediction's own __eq__ decides"),
    ("lying-eq-str-subclass", "weekly1_b",
     "class S(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\nclass Solution:\n"
     "    def isEven(self, n):\n        return S('no idea')\n", LOOPHOLE, "failed",
     "grade_call_based 268: a subclass's __eq__ decides (we send the str itself)"),
    ("patched-json-loads", "weekly1_a",
     "import json\njson.loads = lambda text, *a, **k: 0\nclass Solution:\n    def sumList(self, *args):\n"
     "        return 0\n",
     LOOPHOLE, "failed",
     "grade_call_based 245-249: inputs and expected outputs are parsed after the program ran, with its json.loads"),
]

# Our defences under grader=livecodebench (no LiveCodeBench verdict: these attack our harness, not its rules).
# (id, problem, program, our outcome, what it tries)
DEFENCES = [
    ("forged-completion", "abc001_a", "import os\nos.write(3, b'{\"ev\": \"completed\"}\\n')\n", "sandbox-violation",
     "a completion message without the harness's token"),
    ("garbage-on-status-pipe", "weekly1_a", "import os\nos.write(3, b'garbage\\n')\nclass Solution:\n"
     "    def sumList(self, nums):\n        return sum(nums)\n", "sandbox-violation", "garbage on the status pipe"),
    ("kills-the-harness", "abc001_a", "import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)\nprint(3)\n",
     "sandbox-violation", "no final record with the nonce"),
    ("captured-output-over-limit", "abc001_a", "print('x' * (9 << 20))\n", "failed", "8 MB of captured stdout"),
    ("memory-hog", "abc001_a", "x = bytearray(1 << 30)\nprint(3)\n", "memory",
     "over RLIMIT_AS (LiveCodeBench has none)"),
]

IDS = [c[0] for c in CASES]
assert len(set(IDS + [d[0] for d in DEFENCES])) == len(IDS) + len(DEFENCES)


@pytest.fixture(scope="module")
def scored(sandbox_cfg):
    problems = load_source("livecodebench", str(ROWS))
    programs = [(c[0], c[1], c[2]) for c in CASES] + [(d[0], d[1], d[2]) for d in DEFENCES]
    records = [{"prompt_id": pid, "sample_idx": i, "text": program} for i, (_, pid, program) in enumerate(programs)]
    cfg = dataclasses.replace(sandbox_cfg, memory_mb=512, lcb_timeout_s=LCB_TIMEOUT_S)
    rows = score_samples(problems, records, cfg, completion=True)
    return {name: row for (name, _, _), row in zip(programs, rows)}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_verdict_matches_livecodebench(scored, case):
    name, _pid, _program, lcb, ours, pins = case
    if "numpy" in name and not NUMPY:
        pytest.skip("the sandbox's /usr/bin/python3 has no numpy (scripts/bootstrap.sh installs python3-numpy)")
    row = scored[name]
    assert row["grader"] == "livecodebench", row
    assert row["outcome"] == ours, (pins, row)
    if lcb == LOOPHOLE:
        assert not row["passed"], pins
    else:
        assert row["passed"] is lcb, (pins, row)


def test_reasons_say_what_happened(scored):
    assert "wrong answer on test 0" in scored["nested-tuples"]["reason"]
    assert "[(0, 1), (1, 2)]" in scored["nested-tuples"]["reason"]
    assert "TypeError" in scored["for-line-in-sys-stdin"]["reason"]
    assert "NameError" in scored["global-in-nested-function"]["reason"]
    assert "malformed JSON input" in scored["blank-input-line"]["reason"]
    assert "not a plain value" in scored["lying-eq-object"]["reason"]
    assert "test 1" in scored["state-across-tests"]["reason"]
    assert "test 1" in scored["one-solution-instance"]["reason"]


@pytest.mark.parametrize("case", DEFENCES, ids=[d[0] for d in DEFENCES])
def test_defences_hold_under_the_livecodebench_grader(scored, case):
    name, _pid, _program, outcome, what = case
    row = scored[name]
    assert row["outcome"] == outcome and not row["passed"], (what, row)


def test_the_native_grader_is_still_there_and_differs(scored, sandbox_cfg):
    """eval.grader=native on the same rows: the programs of issue 25 that LiveCodeBench passes fail there."""
    names = ("list-without-import", "one-for-true", "sys-exit-1-after-output", "int-over-4300-digits")
    picked = [c for c in CASES if c[0] in names]
    records = [{"prompt_id": pid, "sample_idx": i, "text": program} for i, (_, pid, program, *_r) in enumerate(picked)]
    rows = score_samples(load_source("livecodebench", str(ROWS)), records,
                         dataclasses.replace(sandbox_cfg, grader="native"), completion=True)
    assert [r["grader"] for r in rows] == ["native"] * 4 and not any(r["passed"] for r in rows), rows
    assert all(scored[name]["passed"] for name in names)
