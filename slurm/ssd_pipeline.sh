#!/usr/bin/env bash
# The SSD stages in order inside a Slurm allocation; sourced by slurm/ssd_*.sh, which set EXP and the #SBATCH lines.
#   DRY_RUN=1 bash slurm/ssd_30b.sh   prints every command, the train stage's srun/torchrun line, its parallel
#                                     layout and rank map, and runs nothing (outside Slurm: NODES=<n> sets the size)
# Sampling: one srun task per vLLM engine (SAMPLE_TP GPUs each), shards split round-robin by sample.engine_rank; a
# final single-process `ssd sample` checks every shard exists and writes the stats. Training: the train stage runs
# `srun torchrun` with the rendezvous taken from the Slurm variables (cluster=slurm).
# Preemption: the #SBATCH lines ask for `--requeue` and `--signal=B:USR1@<secs>`. On USR1 during training this
# script writes <run>/train/stop.request: the ranks checkpoint at the end of the current step and exit
# (megatron_ssd/training/preemption.py); then, or at once during any other stage (sampling and evaluation resume
# from their finished shards), it requeues the job. The run directory defaults to runs/<experiment>-<config hash>,
# so a requeued job, or a second sbatch with the same EXP/ARM/NODES/overrides, continues the same run.
set -euo pipefail
: "${EXP:?set EXP to an experiment preset}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=${DRY_RUN:-0}
SSD=${SSD:-ssd}
SSD_BIN="$(command -v "$SSD" || true)"
PYTHON=${PYTHON:-$(if [[ -n $SSD_BIN && -x "$(dirname "$SSD_BIN")/python" ]]; then
                     echo "$(dirname "$SSD_BIN")/python"; else echo python3; fi)}

if [[ -z ${SLURM_JOB_ID:-} && $DRY_RUN != 1 ]]; then
  echo "error: $0 runs the SSD stages inside a Slurm allocation, but SLURM_JOB_ID is not set (this is not a" \
       "batch job). Submit it with \`sbatch $0\`, run it inside \`salloc\`, or preview the commands with" \
       "\`DRY_RUN=1 NODES=<nodes> bash $0\`; on a single machine use \`ssd run experiment=$EXP cluster=local\`." \
       "Nothing was started." >&2
  exit 2
fi

NODES=${SLURM_JOB_NUM_NODES:-${NODES:-1}}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
SAMPLE_TP=${SAMPLE_TP:-1}
ARM=${ARM:-minimal}
ENGINES=$(( NODES * GPUS_PER_NODE / SAMPLE_TP ))
OVERRIDES=(experiment="$EXP" arm="$ARM" cluster=slurm sample.tensor_parallel_size="$SAMPLE_TP"
           parallel.nnodes="$NODES" parallel.nproc_per_node="$GPUS_PER_NODE" "$@")
if [[ -z ${RUN_DIR:-} ]]; then
  RUN_DIR="$("$PYTHON" "$HERE/describe_train.py" --print-run-dir "${OVERRIDES[@]}")"
fi
COMMON=("${OVERRIDES[@]}" run_dir="$RUN_DIR")
STOP_REQUEST="$RUN_DIR/train/stop.request"  # megatron_ssd.training.preemption.STOP_REQUEST
echo "# run directory: $RUN_DIR  (nodes $NODES x $GPUS_PER_NODE GPUs, $ENGINES sampling engines of TP $SAMPLE_TP)"

PREEMPTED=0
CURRENT_STAGE=""

requeue_and_exit() {
  echo "ssd_pipeline: requeueing job $SLURM_JOB_ID; it resumes from $RUN_DIR" >&2
  if ! scontrol requeue "$SLURM_JOB_ID"; then
    echo "error: \`scontrol requeue $SLURM_JOB_ID\` failed (was the job submitted with --requeue?). Nothing is" \
         "lost: \`sbatch $0\` with the same settings continues from $RUN_DIR." >&2
    exit 1
  fi
  exit 0
}

on_usr1() {
  PREEMPTED=1
  echo "ssd_pipeline: USR1 (the time limit or a preemption is near) during stage '${CURRENT_STAGE:-none}'" >&2
  if [[ $CURRENT_STAGE == train ]]; then
    mkdir -p "$(dirname "$STOP_REQUEST")"
    : > "$STOP_REQUEST"  # the ranks checkpoint after the current step and exit; run() then requeues
  else
    requeue_and_exit
  fi
}
trap on_usr1 USR1

# run STAGE CMD...: print CMD; unless DRY_RUN, run it in the background so the USR1 trap fires while it runs
# (bash defers traps until a foreground child exits), and wait for it to really end.
run() {
  local stage=$1 pid rc
  shift
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY_RUN == 1 ]]; then return 0; fi
  CURRENT_STAGE=$stage
  "$@" &
  pid=$!
  while :; do
    rc=0
    wait "$pid" || rc=$?
    if ! kill -0 "$pid" 2>/dev/null; then break; fi  # still running: the wait was interrupted by the trap
  done
  CURRENT_STAGE=""
  if [[ $PREEMPTED == 1 ]]; then requeue_and_exit; fi
  return "$rc"
}

if [[ $DRY_RUN != 1 ]]; then rm -f "$STOP_REQUEST"; fi  # a request left by an earlier job is not for this one
run prompts "$SSD" prompts "${COMMON[@]}"
run diagnose "$SSD" diagnose "${COMMON[@]}"
# shellcheck disable=SC2016  # $SLURM_PROCID and "$@" expand in each srun task, not here
run sample srun --ntasks="$ENGINES" --gpus-per-task="$SAMPLE_TP" --kill-on-bad-exit=1 \
  bash -c 'exec "$0" sample "$@" sample.num_engines='"$ENGINES"' sample.engine_rank=$SLURM_PROCID' \
  "$SSD" "${COMMON[@]}"
run sample "$SSD" sample "${COMMON[@]}"
if [[ $ARM == verifier_aware ]]; then run filter "$SSD" filter "${COMMON[@]}"; fi
if [[ $ARM != decode_only ]]; then
  run pack "$SSD" pack "${COMMON[@]}"
  run train "$SSD" train "${COMMON[@]}"
  if [[ $DRY_RUN == 1 ]]; then "$PYTHON" "$HERE/describe_train.py" "${COMMON[@]}"; fi
  run export "$SSD" export "${COMMON[@]}"
fi
run evaluate "$SSD" evaluate "${COMMON[@]}"
run report "$SSD" report "${COMMON[@]}"
