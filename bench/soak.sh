#!/usr/bin/env bash
# Soak: asdic sweep of 10,000 targets (IPv4, the speed bed) every second for 30 minutes with
# Parquet output rotated each minute, sampled every minute: RSS, CPU, rounds done and round
# lag; at the end memory at 1 minute and at the end, rounds done against rounds expected,
# replies matched against the responder's count (bench/sweep-scale.sh does the work).
#
# usage: sudo bench/soak.sh        [SECS=1800] [TARGETS=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=${TARGETS:-10000} SECS=${SECS:-1800} SAMPLE=60 OUTPUT=1 EVERY=1s exec bench/sweep-scale.sh
