#!/usr/bin/env bash
# Runs asdic's raw-socket engine on the veth test bed at increasing rates and prints, per
# rate: probes/s actually sent, replies/s matched, reply loss against the bed's ground truth
# (replies the far side sent vs replies matched) and peak RSS. Rates are also given as a
# ratio to the first (lowest) rate's achieved send rate measured in the same run.
#
# usage: bench/raw-rates.sh [RATE...]   (default: 10000 25000 50000 100000 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -p asdic-cli >&2
rates=("$@")
((${#rates[@]})) || rates=(10000 25000 50000 100000 200000)
id=bench$$
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true' EXIT
scripts/bed.sh up "$id" >/dev/null
printf '%-10s %12s %12s %12s %10s %10s %10s\n' rate_asked sent_pps matched_pps reply_loss peak_rss_mb elapsed_s vs_first
base=""
for r in "${rates[@]}"; do
  before=$(scripts/bed.sh truth "$id" | sed -n 's/.*"replied":\([0-9]*\).*/\1/p')
  log=$(mktemp)
  # 198.19.0.0/16, 2 rounds: 131,072 probes per rate.
  ip netns exec "asdic-$id-scan" /usr/bin/time -f 'RSS %M' target/release/asdic ping 198.19.0.0/16 \
    -c 2 -i 0 --rate "$r" -W 1s -q --no-progress >/dev/null 2>"$log" || true
  after=$(scripts/bed.sh truth "$id" | sed -n 's/.*"replied":\([0-9]*\).*/\1/p')
  sent=$(sed -n 's/.*sent \([0-9]*\) probes in \([0-9.]*\)s (.*/\1/p' "$log")
  secs=$(sed -n 's/.*sent \([0-9]*\) probes in \([0-9.]*\)s (.*/\2/p' "$log")
  replies=$(sed -n 's/.*probes, \([0-9]*\) replies.*/\1/p' "$log")
  rss=$(sed -n 's/^RSS \([0-9]*\)/\1/p' "$log")
  far=$((after - before))
  awk -v r="$r" -v s="$sent" -v t="$secs" -v m="$replies" -v f="$far" -v rss="$rss" -v base="$base" 'BEGIN {
    pps = s / t; mpps = m / t; loss = (f > 0) ? 100 * (f - m) / f : 0;
    ratio = (base == "") ? 1 : pps / base;
    printf "%-10d %12.0f %12.0f %11.3f%% %10.1f %10.2f %9.2fx\n", r, pps, mpps, loss, rss / 1024, t, ratio }'
  [ -n "$base" ] || base=$(awk -v s="$sent" -v t="$secs" 'BEGIN { print s / t }')
  rm -f "$log"
done
