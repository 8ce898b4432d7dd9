#!/usr/bin/env bash
# Which AF_XDP send stamp is closest to the wire (issue 28, item 1): the user-space clock
# read right before the call that hands a frame to the kernel, or the kernel's completion
# stamp through AF_XDP TX metadata (XDP_TXMD_FLAGS_TIMESTAMP; software in copy mode).
#
# On the routed bed (its router captures its scanner-side link r0 with nanosecond stamps),
# bench/src/bin/xdp-txstamp.rs sends one echo request to each host of 198.19.0.0/20 from a
# TX-only AF_XDP socket of its own, in calls of BATCH frames at RATE frames/s, and prints both
# stamps of every frame; bench/xdp_txstamp.py joins them with the capture and prints, per
# stamp, the capture minus the stamp (p50, p99, max, µs) and how many stamps came after the
# capture (a stamp after the wire is not a send stamp).
#
# usage: bench/xdp-txstamp.sh [BATCH:RATE...]   (default: 1:1000 1:20000 64:20000 64:200000)
#        REPS=N (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -p asdic-bench --bin xdp-txstamp >&2
bin="${CARGO_TARGET_DIR:-target}/release/xdp-txstamp"
cases=("$@")
((${#cases[@]})) || cases=(1:1000 1:20000 64:20000 64:200000)
reps=${REPS:-3}
id=txs$$
work=$(mktemp -d)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
scripts/bed.sh up "$id" >/dev/null
scan="asdic-$id-scan" rtr="asdic-$id-rtr"
# The next hop: the router's side of the scanner's link.
mac=$(ip netns exec "$rtr" cat /sys/class/net/r0/address)
printf '%-6s %8s %-24s %5s %9s %9s %9s %7s %8s\n' batch rate stamp run p50_us p99_us max_us after missing
for c in "${cases[@]}"; do
  b=${c%%:*} r=${c##*:}
  for k in $(seq "$reps"); do
    d="$work/$b-$r-$k"
    mkdir -p "$d"
    ip netns exec "$rtr" tcpdump -i r0 -n -s 128 -B 65536 --time-stamp-precision=nano \
      -w "$d/wire.pcap" icmp 2>"$d/tcpdump.err" &
    cap=$!
    for i in $(seq 100); do grep -q listening "$d/tcpdump.err" 2>/dev/null && break; sleep 0.05; done
    ip netns exec "$scan" "$bin" s0 198.18.0.1 "$mac" 198.19.0.0/20 4096 "$b" "$r" >"$d/stamps" 2>"$d/err" || {
      cat "$d/err" >&2
      kill -INT "$cap"
      exit 1
    }
    # tcpdump hands its buffer over a block at a time, by 1 s at the latest: a capture
    # stopped sooner loses its last block (the run's last frames).
    sleep 1.5
    kill -INT "$cap"
    wait "$cap" || true
    python3 bench/xdp_txstamp.py "$d/wire.pcap" "$d/stamps" 198.18.0.1 >"$d/rows"
    python3 - "$d/rows" "$b" "$r" "$k" <<'PY'
import json, sys
f = lambda v: "-" if v is None else f"{v:.2f}"
b, r, k = sys.argv[2:5]
for line in open(sys.argv[1]):
    x = json.loads(line)
    print(f"{b:<6} {r:>8} {x['stamp']:<24} {k:>5} {f(x['p50_us']):>9} {f(x['p99_us']):>9} "
          f"{f(x['max_us']):>9} {x['after_capture']:>7} {x['missing']:>8}")
PY
    rm -f "$d/wire.pcap"
  done
done
