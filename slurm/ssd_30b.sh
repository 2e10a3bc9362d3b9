#!/usr/bin/env bash
#SBATCH --job-name=ssd-qwen3-30b-a3b
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@900
#SBATCH --open-mode=append
#SBATCH --output=slurm/logs/%x-%j.out
# Qwen3-30B-A3B-Instruct SSD at the paper's settings: EP=8 (TP2 x CP2 for attention, DP8) on 4 x 8 GPUs, 64K packed
# sequences, global batch 32, 2,500 iterations (hydra_conf/experiment/ssd_qwen3_30b_a3b_instruct.yaml). Submit from
# the repository root; extra args are Hydra overrides:
#   sbatch slurm/ssd_30b.sh        |  EXP=ssd_qwen3_30b_a3b_thinking sbatch slurm/ssd_30b.sh
#   DRY_RUN=1 bash slurm/ssd_30b.sh   prints every command (4 nodes unless NODES=... or inside an allocation)
# USR1 arrives 15 minutes before the time limit: enough for one 64K step (~2 min) and a checkpoint of the 30B
# model's weights and optimizer state. The job then requeues itself and continues (docs/REPRODUCING.md).
export EXP=${EXP:-ssd_qwen3_30b_a3b_instruct}
export SAMPLE_TP=${SAMPLE_TP:-2}
export NODES=${NODES:-4}
export SUBMIT_SCRIPT=slurm/ssd_30b.sh
SLURM_SCRIPTS="$(dirname "${BASH_SOURCE[0]}")"
[[ -f $SLURM_SCRIPTS/ssd_pipeline.sh ]] || SLURM_SCRIPTS="${SLURM_SUBMIT_DIR:-.}/slurm"  # sbatch runs a spool copy
# shellcheck source=slurm/ssd_pipeline.sh
source "$SLURM_SCRIPTS/ssd_pipeline.sh" "$@"
