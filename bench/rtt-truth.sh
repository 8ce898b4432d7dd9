#!/usr/bin/env bash
# How true asdic's RTTs are: the bed's router captures its scanner-side link (r0) with
# nanosecond kernel stamps (tcpdump --time-stamp-precision=nano); for every probe, the wire
# RTT is the reply leaving that link minus the request arriving there, and a prober's RTT for
# the same probe can only be larger, by its own send and receive paths.
#
# Per engine and rate, one probe to each host of 198.19.0.0/20 (4,096 targets; the bed's
# dead hosts, 1 in 97, never answer), `asdic ping -c 1 -R RATE --engine E --format csv`;
# prints asdic's RTT minus the wire RTT (median over REPS runs of each run's p50 and p99;
# the max over all runs), probes below the wire (summed; must be 0), distinct RTT values
# (median), and the capture's own drops (summed; must be 0 for the row to mean anything).
#
# usage: bench/rtt-truth.sh [RATE...]   (default: 1000 20000 50000 200000)
#        ENGINES="xdp raw uring" (default)  REPS=N (default 5)
#        ASDIC_ARGS="--batch 1" (more flags for every asdic run)
#        ASDIC=path/to/asdic (default: build target/release/asdic)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v tcpdump >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null
if [ -z "${ASDIC:-}" ]; then
  cargo build --release -p asdic-cli >&2
  ASDIC="${CARGO_TARGET_DIR:-target}/release/asdic"
fi
reps=${REPS:-5}
engines=(${ENGINES:-xdp raw uring})
rates=("$@")
((${#rates[@]})) || rates=(1000 20000 50000 200000)
id=rtt$$
work=$(mktemp -d)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
scripts/bed.sh up "$id" >/dev/null
scan="asdic-$id-scan" rtr="asdic-$id-rtr"

one() { # engine rate run -> one JSON line (plus "capture_dropped")
  local e=$1 r=$2 k=$3 dir="$work/$1-$2-$3"
  mkdir -p "$dir"
  ip netns exec "$rtr" tcpdump -i r0 -n -s 128 -B 65536 --time-stamp-precision=nano \
    -w "$dir/wire.pcap" icmp or icmp6 2>"$dir/tcpdump.err" &
  local cap=$!
  local i
  for i in $(seq 100); do grep -q listening "$dir/tcpdump.err" 2>/dev/null && break; sleep 0.05; done
  # Exit 1 is "some targets did not answer" (the bed's dead hosts): expected.
  local rc=0
  ip netns exec "$scan" "$ASDIC" ping 198.19.0.0/20 -c 1 -R "$r" --engine "$e" -q ${ASDIC_ARGS:-} \
    --format csv -o "$dir/out.csv" >/dev/null 2>"$dir/asdic.err" || rc=$?
  if ((rc > 1)); then
    cat "$dir/asdic.err" >&2
    kill -INT "$cap"
    wait "$cap" || true
    return 1
  fi
  sleep 0.3
  kill -INT "$cap"
  wait "$cap" || true
  # target,…,received,…,rtt_last_us: one probe per target, so its last RTT is its only one.
  awk -F, 'NR > 1 && $4 == 1 { print $1, $6 }' "$dir/out.csv" >"$dir/rtts"
  local dropped
  dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$dir/tcpdump.err")
  python3 bench/rtt_truth.py "$dir/wire.pcap" "$dir/rtts" 198.18.0.1 |
    sed "s/}\$/, \"capture_dropped\": ${dropped:-0}}/"
  rm -f "$dir/wire.pcap"
}

printf '%-6s %8s %6s %9s %9s %9s %6s %9s %8s %9s\n' engine rate runs p50_us p99_us max_us \
  below distinct joined cap_drop
for e in "${engines[@]}"; do
  for r in "${rates[@]}"; do
    : >"$work/rows"
    for k in $(seq "$reps"); do one "$e" "$r" "$k" >>"$work/rows"; done
    python3 - "$work/rows" "$e" "$r" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: statistics.median(x[k] for x in rows if x[k] is not None)
print(f"{sys.argv[2]:<6} {sys.argv[3]:>8} {len(rows):>6} {med('p50_us'):>9.2f} "
      f"{med('p99_us'):>9.2f} {max(x['max_us'] for x in rows):>9.2f} "
      f"{sum(x['below_wire'] for x in rows):>6} {med('distinct'):>9.0f} "
      f"{med('joined'):>8.0f} {sum(x['capture_dropped'] for x in rows):>9}")
EOF
  done
done
