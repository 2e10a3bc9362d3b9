#!/usr/bin/env bash
# The GPU check: one command that turns minutes on one GPU into JSON results (benchmarks/gpu/README.md).
#
#   benchmarks/gpu/check.sh OUT_DIR              # on the GPU machine, after installing .whl/ (README)
#   benchmarks/gpu/check.sh --dry-run [OUT_DIR]  # anywhere: wheel list, imports, arguments; runs nothing heavy
#                                                # (flags and OUT_DIR in any order; no OUT_DIR: a temporary folder)
#
# Parts, each under its own time limit so one slow part cannot eat the others (about 7.5 minutes in all):
#   preflight   environment.json: device, date, versions; the wheel list and every import checked
#   gpu tests   gpu_tests.json: the `gpu`-marked tests that can run on one GPU (Triton kernels compiled)
#   linear CE   linear_ce_*.json/csv: bench_linear_ce.py at Qwen3-4B and Llama-3.1-8B shapes
#   train step  train_step.json: bench_train_step.py --gpu-check (~1B Qwen3 shape, both CE heads)
# summary.json lists each part's exit status and seconds; logs go to $CHECK_LOGS (default OUT_DIR). Exit status: 0 when every part succeeded.
set -uo pipefail
usage() { echo "usage: $0 OUT_DIR [--dry-run]   (or: $0 --dry-run [OUT_DIR])${1:+: $1}" >&2; exit 2; }
out="" dry=0
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    -h|--help) usage ;;
    -*) usage "unknown option $a" ;;
    *) [ -z "$out" ] || usage "one OUT_DIR only (got $out and $a)"; out="$a" ;;
  esac
done
if [ -z "$out" ]; then
  [ "$dry" = 1 ] || usage "OUT_DIR is required for a real run"
  out="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_dry_run.XXXXXX")"
  echo "dry run: no OUT_DIR given; writing to $out"
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-python3}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
logs="${CHECK_LOGS:-$out}"  # part logs and the tests' JUnit XML (the device tool returns at most 8 files)
mkdir -p "$logs" && logs="$(cd "$logs" && pwd)"
export PYTHONPATH="$repo:$repo/benchmarks/gpu/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The kernels compiled by Triton, not interpreted (tests/training/conftest.py defaults it to 1 for CPUs).
export TRITON_INTERPRET=0
[ "$dry" = 1 ] && export TRITON_INTERPRET=1
cd "$repo" || exit 2

# Seconds per part (override for a longer lease, e.g. BUDGET_LINEAR_CE=400).
b_pre="${BUDGET_PREFLIGHT:-60}" b_tests="${BUDGET_TESTS:-90}" b_lce="${BUDGET_LINEAR_CE:-170}" b_train="${BUDGET_TRAIN:-140}"
parts=()
part() {  # part NAME BUDGET_S CMD...: run with a hard timeout, record status and seconds
  local name="$1" budget="$2"; shift 2
  local t0=$SECONDS rc
  echo "== $name (limit ${budget}s)"
  timeout -k 15 "$budget" "$@" 2>&1 | tee "$logs/$name.log"
  rc=${PIPESTATUS[0]}
  parts+=("{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"limit_s\": $budget}")
  echo "== $name: rc=$rc in $((SECONDS - t0))s"
}
lce_args=(--shapes qwen3-4b llama3.1-8b --tokens 16K 32K 64K --masked 0 0.5
          --impls ours torch_eager torch_compile_chunked liger --out "$out")
gpu_tests=(tests/kernels tests/training/test_cp_sp.py tests/training/test_optimizer_async_save.py
           tests/training/test_gpu.py tests/models/test_te_gpu.py)

if [ "$dry" = 1 ]; then
  part preflight "$b_pre" "$py" benchmarks/gpu/check_tools.py preflight "$out" --dry-run
  part gpu_tests "$b_tests" "$py" -m pytest -q -m gpu --collect-only "${gpu_tests[@]}"
  part linear_ce "$b_lce" "$py" benchmarks/bench_linear_ce.py --dry-run "${lce_args[@]}"
  part train_step "$b_train" "$py" benchmarks/bench_train_step.py --gpu-check --dry-run
else
  part preflight "$b_pre" "$py" benchmarks/gpu/check_tools.py preflight "$out"
  part gpu_tests "$b_tests" "$py" -m pytest -q -m gpu -p no:cacheprovider --junitxml "$logs/gpu_tests.xml" "${gpu_tests[@]}"
  "$py" benchmarks/gpu/check_tools.py tests-json "$logs/gpu_tests.xml" "$out/gpu_tests.json"
  part linear_ce "$b_lce" "$py" benchmarks/bench_linear_ce.py --budget-s $((b_lce - 45)) "${lce_args[@]}"
  part train_step "$b_train" "$py" benchmarks/bench_train_step.py --gpu-check --budget-s $((b_train - 15)) \
       --out "$out/train_step.json"
fi

status=0
for p in "${parts[@]}"; do case "$p" in *'"rc": 0,'*) ;; *) status=1 ;; esac; done
( IFS=,; echo "{\"dry_run\": $([ "$dry" = 1 ] && echo true || echo false), \"status\": $status, \"parts\": [${parts[*]}]}" ) \
  > "$out/summary.json"
cat "$out/summary.json"
exit $status
