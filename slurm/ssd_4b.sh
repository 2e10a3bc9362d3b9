#!/usr/bin/env bash
#SBATCH --job-name=ssd-qwen3-4b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
# Qwen3-4B-Instruct SSD at the paper's settings on one 8-GPU node. Extra args are Hydra overrides:
#   sbatch slurm/ssd_4b.sh  |  EXP=ssd_qwen3_4b_thinking sbatch slurm/ssd_4b.sh  |  DRY_RUN=1 bash slurm/ssd_4b.sh
export EXP=${EXP:-ssd_qwen3_4b_instruct}
export SAMPLE_TP=${SAMPLE_TP:-1}
source "$(dirname "${BASH_SOURCE[0]}")/ssd_pipeline.sh" "$@"
