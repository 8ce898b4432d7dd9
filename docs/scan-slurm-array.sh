#!/usr/bin/env bash
# A sharded scan as a Slurm job array: task I scans shard I of 8 (--shard env reads
# SLURM_ARRAY_TASK_ID, counted from SLURM_ARRAY_TASK_MIN, so --array=1-8 works as well as
# 0-7) into one dataset on the cluster's shared file system. Every task has the same --seed
# and --shards (the array's size).
#
#   sbatch docs/scan-slurm-array.sh
#   asdic recover /shared/scans      # per shard: complete, stopped early, or killed
#
# A task that was killed, preempted or requeued (sbatch --requeue, scontrol requeue) runs the
# same command again and resumes its shard where its durable parts end (--shard env); one
# that finished exits 0 at once, and a lock on the partition keeps a requeued task from
# running beside one still dying. `asdic recover --info /shared/scans` tells how far each got.
#
# asdic needs CAP_NET_RAW (raw sockets; the XDP engine more: README, "Without root") on the
# nodes: install it with scripts/install.sh, which sets the file capabilities.
#SBATCH --job-name=asdic-scan
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --output=asdic-scan-%A-%a.log
#SBATCH --requeue
set -euo pipefail
exec asdic scan 0.0.0.0/0 \
  --rate 100000 \
  --seed 20261203 \
  --shards 8 \
  --shard env \
  --dataset /shared/scans \
  --run-id "ipv4-$SLURM_ARRAY_JOB_ID" \
  --cooldown 8 \
  --sync-every 30s \
  --quiet
