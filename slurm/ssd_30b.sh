#!/usr/bin/env bash
#SBATCH --job-name=ssd-qwen3-30b-a3b
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=72:00:00
#SBATCH --output=logs/%x-%j.out
# Qwen3-30B-A3B-Instruct SSD at the paper's settings (EP=8, 64K packed sequences). Extra args are Hydra overrides:
#   sbatch slurm/ssd_30b.sh                  |  EXP=ssd_qwen3_30b_a3b_thinking sbatch slurm/ssd_30b.sh
#   DRY_RUN=1 NODES=4 bash slurm/ssd_30b.sh  prints the commands
export EXP=${EXP:-ssd_qwen3_30b_a3b_instruct}
export SAMPLE_TP=${SAMPLE_TP:-2}
source "$(dirname "${BASH_SOURCE[0]}")/ssd_pipeline.sh" "$@"
