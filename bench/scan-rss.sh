#!/usr/bin/env bash
# Shows that a scan's memory does not grow with its target count. Measured in one run:
# - a dry run over all of IPv4 (3.7 billion addresses after the default blocklist, no
#   socket): generation rate and peak RSS;
# - real scans of 198.19.0.0/20 and 198.19.0.0/16 on the veth test bed at the same rate and
#   cooldown, with CSV and with Parquet output: send rate, replies, peak RSS (16× the
#   targets, same memory). A real scan adds to the dry run what is fixed by rate × cooldown
#   (the in-flight table), sockets and threads, and the Parquet writer's row-group buffer.
#
# usage: sudo bench/scan-rss.sh [RATE [COOLDOWN]]   (default 50000 probes/s, 1 s)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -p asdic-cli >&2
rate=${1:-50000}
cooldown=${2:-1}
id=rss$$
tmp=$(mktemp -d)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

field() { sed -n "$1" "$2"; }
printf '%-36s %12s %9s %14s %13s %9s\n' run targets seconds per_second peak_rss_mib replies
/usr/bin/time -f 'RSS %M' target/release/asdic scan --dry-run -q 0.0.0.0/0 2>"$tmp/dry"
awk -v n="$(field 's/.*dry run: \([0-9]*\) targets.*/\1/p' "$tmp/dry")" \
  -v s="$(field 's/.* in \([0-9.]*\)s (.*/\1/p' "$tmp/dry")" \
  -v r="$(field 's/^RSS \([0-9]*\)/\1/p' "$tmp/dry")" 'BEGIN {
  printf "%-36s %12.0f %9.2f %14.0f %13.1f %9s\n", "dry run, all IPv4 (generation only)", n, s, n / s, r / 1024, "-" }'
scripts/bed.sh up "$id" >/dev/null
for run in "198.19.0.0/20 csv" "198.19.0.0/16 csv" "198.19.0.0/20 parquet" "198.19.0.0/16 parquet"; do
  read -r prefix fmt <<<"$run"
  log="$tmp/scan"
  out="$tmp/out.parquet"
  [ "$fmt" = parquet ] || out=/dev/null
  ip netns exec "asdic-$id-scan" /usr/bin/time -f 'RSS %M' target/release/asdic scan "$prefix" \
    --no-default-blocklist -r "$rate" -c "$cooldown" -q -O "$fmt" -o "$out" 2>"$log"
  awk -v p="$prefix, $fmt" -v n="$(field 's/.*sent \([0-9]*\) probes in \([0-9.]*\)s (.*/\1/p' "$log")" \
    -v s="$(field 's/.*sent \([0-9]*\) probes in \([0-9.]*\)s (.*/\2/p' "$log")" \
    -v h="$(field 's/.*probes: \([0-9]*\) replies.*/\1/p' "$log")" \
    -v r="$(field 's/^RSS \([0-9]*\)/\1/p' "$log")" 'BEGIN {
    printf "%-36s %12d %9.2f %14.0f %13.1f %9d\n", "scan " p, n, s, n / s, r / 1024, h }'
done
