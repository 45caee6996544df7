#!/usr/bin/env bash
# weft/jobscripts/sweep.sh v2 — a learning-rate sweep: one Slurm job per value; each job logs and checkpoints into
# its own runs/JOBID/ (train.sbatch), and the table of which value went to which job is runs/sweep-DATE.txt.
#
#   jobscripts/sweep.sh inputs/demo.ini 1e-3 3e-3 1e-2
set -euo pipefail
DECK=${1:?usage: jobscripts/sweep.sh DECK LR [LR ...]}
shift
mkdir -p runs
table=runs/sweep-$(date +%Y%m%d-%H%M%S).txt
for lr in "$@"; do
  job=$(sbatch --parsable --job-name="weft-lr$lr" jobscripts/train.sbatch "$DECK" --train.lr="$lr")
  echo "train.lr=$lr runs/$job" | tee -a "$table"
done
