#!/usr/bin/env bash
# The SSD stages in order inside a Slurm allocation; sourced by slurm/ssd_*.sh, which set EXP and the #SBATCH lines.
#   DRY_RUN=1 bash slurm/ssd_30b.sh   prints every command, the train stage's srun/torchrun line, its parallel
#                                     layout and rank map, and runs nothing (outside Slurm: NODES=<n> sets the size)
# Sampling: one srun task per vLLM engine (SAMPLE_TP GPUs each), shards split round-robin by sample.engine_rank; a
# final single-process `ssd sample` checks every shard exists and writes the stats. Training: the train stage runs
# `srun torchrun` with the rendezvous taken from the Slurm variables (cluster=slurm).
# GPUs per node: GPUS_PER_NODE, else what the allocation got (SLURM_GPUS_ON_NODE / SLURM_GPUS_PER_NODE), else 8.
# A CPU partition: `EXP=cpu_default sbatch --gpus-per-node=0 [--partition=<cpu>] slurm/ssd_4b.sh` (the flag replaces
# the #SBATCH GPU request, and the job then sees 0 GPUs): nothing GPU-specific is asked of Slurm, torchrun starts
# CPU_RANKS_PER_NODE gloo ranks per node (default 1) and CPU_ENGINES_PER_NODE vLLM CPU engines per node (default 1)
# share the node's CPUs; the stage chain and the run directory are the same as on GPUs.
# Preemption: the #SBATCH lines ask for `--requeue` and `--signal=B:USR1@<secs>`. On USR1 during training this
# script writes <run>/train/stop.request: the ranks checkpoint at the end of the current step and exit
# (megatron_ssd/training/preemption.py); then, or at once during any other stage (sampling and evaluation resume
# from their finished shards), it requeues the job. The run directory defaults to runs/<experiment>-<config hash>,
# so a requeued job, or a second sbatch with the same EXP/ARM/NODES/overrides, continues the same run.
set -euo pipefail
: "${EXP:?set EXP to an experiment preset}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUBMIT_SCRIPT=${SUBMIT_SCRIPT:-$0}  # set by slurm/ssd_*.sh: under sbatch, $0 is Slurm's spool copy
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
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-8}}}
GPUS_PER_NODE=${GPUS_PER_NODE##*:}  # a typed request (--gpus-per-node=h100:8) is exported as "h100:8"
if [[ ! $GPUS_PER_NODE =~ ^[0-9]+$ ]]; then
  echo "error: GPUS_PER_NODE=$GPUS_PER_NODE is not a number of GPUs per node (0 on a CPU partition). Nothing was" \
       "started." >&2
  exit 2
fi
SAMPLE_TP=${SAMPLE_TP:-1}
ARM=${ARM:-minimal}
if (( GPUS_PER_NODE > 0 )); then
  RANKS_PER_NODE=$GPUS_PER_NODE
  ENGINES_PER_NODE=$(( GPUS_PER_NODE / SAMPLE_TP ))
  ENGINE_RESOURCES=(--gpus-per-task="$SAMPLE_TP")
  HARDWARE="$GPUS_PER_NODE GPUs, $(( NODES * ENGINES_PER_NODE )) sampling engines of TP $SAMPLE_TP"
else  # a CPU partition: gloo ranks, vLLM CPU engines that split the node's CPUs
  RANKS_PER_NODE=${CPU_RANKS_PER_NODE:-1}
  ENGINES_PER_NODE=${CPU_ENGINES_PER_NODE:-1}
  CPUS_PER_ENGINE=$(( ${SLURM_CPUS_ON_NODE:-$(nproc)} / ENGINES_PER_NODE ))
  ENGINE_RESOURCES=(--cpus-per-task="$(( CPUS_PER_ENGINE > 0 ? CPUS_PER_ENGINE : 1 ))")
  HARDWARE="$RANKS_PER_NODE CPU ranks, no GPU, $(( NODES * ENGINES_PER_NODE )) CPU sampling engines"
fi
ENGINES=$(( NODES * ENGINES_PER_NODE ))
OVERRIDES=(experiment="$EXP" arm="$ARM" cluster=slurm sample.tensor_parallel_size="$SAMPLE_TP"
           parallel.nnodes="$NODES" parallel.nproc_per_node="$RANKS_PER_NODE" "$@")
if [[ -z ${RUN_DIR:-} ]]; then
  RUN_DIR="$("$PYTHON" "$HERE/describe_train.py" --print-run-dir "${OVERRIDES[@]}")"
fi
# A requeued job resumes the run directory its first run chose: the name is a hash of the composed config, which a
# code or preset update while the job waited (git pull) would change, and the job would start over in a new one.
# The first run records it in <runs_root>/.slurm-job-<id>; with SLURM_RESTART_COUNT > 0 the record wins.
if [[ -n ${SLURM_JOB_ID:-} && $DRY_RUN != 1 ]]; then
  JOB_RECORD="$(dirname "$RUN_DIR")/.slurm-job-$SLURM_JOB_ID"
  if (( ${SLURM_RESTART_COUNT:-0} > 0 )) && [[ -s $JOB_RECORD ]]; then
    FIRST_RUN_DIR="$(<"$JOB_RECORD")"
    if [[ $FIRST_RUN_DIR != "$RUN_DIR" ]]; then
      echo "ssd_pipeline: the config now names $RUN_DIR; run ${SLURM_RESTART_COUNT} of job $SLURM_JOB_ID" \
           "continues $FIRST_RUN_DIR, where its first run started (recorded in $JOB_RECORD)." >&2
      RUN_DIR=$FIRST_RUN_DIR
    fi
  else
    mkdir -p "$(dirname "$RUN_DIR")" && printf '%s\n' "$RUN_DIR" > "$JOB_RECORD"
  fi
fi
COMMON=("${OVERRIDES[@]}" run_dir="$RUN_DIR")
STOP_REQUEST="$RUN_DIR/train/stop.request"  # megatron_ssd.training.preemption.STOP_REQUEST
echo "# run directory: $RUN_DIR  (nodes $NODES x $HARDWARE)"

PREEMPTED=0
CURRENT_STAGE=""

# After `scontrol requeue` the job is PENDING again and Slurm ends this script (SIGTERM, then SIGKILL after
# KillWait); the script ignores the SIGTERM for the few milliseconds it takes to check the requeued job. A requeue
# normally leaves the job eligible (Reason=BeginTime: it may start after AuthInfo's cred_expire, 120 s by default).
# Held instead (Priority=0, or JobState REQUEUE_HOLD/SPECIAL_EXIT: a `requeuehold`, RequeueExitHold, the
# MaxBatchRequeue limit) it would wait forever, so it is released, and the log says so either way.
requeue_and_exit() {
  echo "ssd_pipeline: requeueing job $SLURM_JOB_ID; it resumes from $RUN_DIR" >&2
  trap '' TERM
  if ! scontrol requeue "$SLURM_JOB_ID"; then
    echo "error: \`scontrol requeue $SLURM_JOB_ID\` failed (was the job submitted with --requeue, and does the" \
         "cluster allow requeues: JobRequeue?). Nothing is lost: \`sbatch $SUBMIT_SCRIPT\` with the same settings" \
         "continues from $RUN_DIR." >&2
    exit 1
  fi
  release_if_held
  exit 0
}

# release_if_held: one line on what the requeued job waits for; a held job is released (`scontrol release`).
release_if_held() {
  local info state reason="" priority=""
  info=" $(scontrol show job --oneliner "$SLURM_JOB_ID" 2>/dev/null || true) "
  [[ $info =~ \ JobState=([^ ]*) ]] || return 0  # Slurm no longer knows the job: nothing to release
  state=${BASH_REMATCH[1]}
  [[ $info =~ \ Reason=([^ ]*) ]] && reason=${BASH_REMATCH[1]}
  [[ $info =~ \ Priority=([0-9]*) ]] && priority=${BASH_REMATCH[1]}
  if [[ $priority == 0 || $state == REQUEUE_HOLD || $state == SPECIAL_EXIT ]]; then
    if scontrol release "$SLURM_JOB_ID"; then
      echo "ssd_pipeline: job $SLURM_JOB_ID was requeued held (JobState=$state Reason=$reason Priority=$priority);" \
           "released it, so it resumes without \`scontrol release\`." >&2
    else
      echo "warning: job $SLURM_JOB_ID is requeued but held (JobState=$state Reason=$reason) and \`scontrol" \
           "release $SLURM_JOB_ID\` failed; run it (or ask an operator) to let the job resume from $RUN_DIR." >&2
    fi
  else
    echo "ssd_pipeline: job $SLURM_JOB_ID is requeued (JobState=$state Reason=$reason), not held; it starts" \
         "again when Slurm schedules it." >&2
  fi
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
  if (( rc != 0 )); then
    echo "ssd_pipeline: stage '$stage' ended with exit status $rc$([[ $rc == 4 ]] && echo " (stopped by the" \
         "precondition verdict: diagnose/verdict.json; force_train=true overrides)"); the job ends FAILED and is" \
         "not requeued. Once fixed, \`scontrol requeue $SLURM_JOB_ID\` (a failed job requeued by hand is not held)" \
         "or \`sbatch $SUBMIT_SCRIPT\` with the same settings continues from $RUN_DIR, skipping finished stages." >&2
  fi
  return "$rc"
}

if [[ $DRY_RUN != 1 ]]; then rm -f "$STOP_REQUEST"; fi  # a request left by an earlier job is not for this one
run prompts "$SSD" prompts "${COMMON[@]}"
run diagnose "$SSD" diagnose "${COMMON[@]}"
# shellcheck disable=SC2016  # $SLURM_PROCID and "$@" expand in each srun task, not here
run sample srun --ntasks="$ENGINES" "${ENGINE_RESOURCES[@]}" --kill-on-bad-exit=1 \
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
