#!/usr/bin/env bash
# The SSD stages in order inside a Slurm allocation; sourced by slurm/ssd_*.sh, which set EXP and the #SBATCH lines.
#   DRY_RUN=1 bash slurm/ssd_30b.sh    prints the exact commands without running them (works outside Slurm)
# Sampling: one srun task per vLLM engine (TP GPUs each), shards split round-robin by sample.engine_rank; a final
# single-process `ssd sample` checks every shard exists and writes the stats. Training: the train stage itself runs
# `srun torchrun` with the rendezvous taken from the Slurm variables (cluster=slurm).
set -euo pipefail
: "${EXP:?set EXP to an experiment preset}"
DRY_RUN=${DRY_RUN:-0}
NODES=${SLURM_JOB_NUM_NODES:-${NODES:-1}}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
SAMPLE_TP=${SAMPLE_TP:-1}
RUN_DIR=${RUN_DIR:-runs/${EXP}-${SLURM_JOB_ID:-dryrun}}
ARM=${ARM:-minimal}
ENGINES=$(( NODES * GPUS_PER_NODE / SAMPLE_TP ))
COMMON=(experiment="$EXP" run_dir="$RUN_DIR" arm="$ARM" cluster=slurm sample.tensor_parallel_size="$SAMPLE_TP"
        parallel.nnodes="$NODES" parallel.nproc_per_node="$GPUS_PER_NODE" "$@")

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY_RUN != 1 ]]; then "$@"; fi
}

run ssd prompts "${COMMON[@]}"
run ssd diagnose "${COMMON[@]}"
run srun --ntasks="$ENGINES" --gpus-per-task="$SAMPLE_TP" --kill-on-bad-exit=1 \
  bash -c 'exec ssd sample "$@" sample.num_engines='"$ENGINES"' sample.engine_rank=$SLURM_PROCID' _ "${COMMON[@]}"
run ssd sample "${COMMON[@]}"
if [[ $ARM == verifier_aware ]]; then run ssd filter "${COMMON[@]}"; fi
if [[ $ARM != decode_only ]]; then
  run ssd pack "${COMMON[@]}"
  run ssd train "${COMMON[@]}"
  run ssd export "${COMMON[@]}"
fi
run ssd evaluate "${COMMON[@]}"
run ssd report "${COMMON[@]}"
