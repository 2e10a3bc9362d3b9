#!/usr/bin/env bash
#SBATCH --job-name=ssd-qwen3-4b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=slurm/logs/%x-%j.out
# Qwen3-4B-Instruct SSD at the paper's settings on one 8-GPU node (TP2 x CP2, DP2; 64K packed sequences). Submit
# from the repository root; extra args are Hydra overrides:
#   sbatch slurm/ssd_4b.sh  |  EXP=ssd_qwen3_4b_thinking sbatch slurm/ssd_4b.sh  |  DRY_RUN=1 bash slurm/ssd_4b.sh
#   EXP=cpu_default sbatch --gpus-per-node=0 slurm/ssd_4b.sh   the same chain on a CPU partition (no GPU asked)
# USR1 arrives 10 minutes before the time limit; the job checkpoints, requeues itself and continues.
export EXP=${EXP:-ssd_qwen3_4b_instruct}
export SAMPLE_TP=${SAMPLE_TP:-1}
export NODES=${NODES:-1}
export SUBMIT_SCRIPT=slurm/ssd_4b.sh
SLURM_SCRIPTS="$(dirname "${BASH_SOURCE[0]}")"
[[ -f $SLURM_SCRIPTS/ssd_pipeline.sh ]] || SLURM_SCRIPTS="${SLURM_SUBMIT_DIR:-.}/slurm"  # sbatch runs a spool copy
# shellcheck source=slurm/ssd_pipeline.sh
source "$SLURM_SCRIPTS/ssd_pipeline.sh" "$@"
