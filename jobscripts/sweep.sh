#!/usr/bin/env bash
# weft/jobscripts/sweep.sh v1 — a learning-rate sweep: one Slurm job per value, each logging to its own folder.
#
#   jobscripts/sweep.sh inputs/demo.ini 1e-3 3e-3 1e-2
set -euo pipefail
DECK=${1:?usage: jobscripts/sweep.sh DECK LR [LR ...]}
shift
for lr in "$@"; do
  sbatch --job-name="weft-lr$lr" jobscripts/train.sbatch "$DECK" --train.lr="$lr" --log.dir="runs/sweep-lr$lr"
done
