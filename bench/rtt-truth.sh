#!/usr/bin/env bash
# How true asdic's RTTs are: the bed's router captures its scanner-side link (r0) with
# nanosecond kernel stamps (tcpdump --time-stamp-precision=nano); for every probe, the wire
# RTT is the reply leaving that link minus the request arriving there, and a prober's RTT for
# the same probe can only be larger, by its own send and receive paths.
#
# Per engine and rate, one probe to each host of 198.19.0.0/20 (4,096 targets; the bed's
# dead hosts, 1 in 97, never answer), `asdic ping -c 1 -R RATE --engine E --format csv`;
# prints the rate the probes went at on the wire (requests over their span; median), the
# prober's RTT minus the wire RTT (median over REPS runs of each run's p50 and p99; the max
# over all runs), probes below the wire (summed; must be 0), distinct RTT values of the
# prober and of the wire for the same probes at the prober's resolution (medians), and the
# capture's own drops (summed; must be 0 for the row to mean anything).
#
# usage: bench/rtt-truth.sh [RATE...]   (default: 1000 20000 50000 200000)
#        ENGINES="xdp raw uring fping zmap" (default; fping and zmap are the peers, Debian's
#        packages: `fping -C 1 -i MS -g 198.19.0.0/20`, µs resolution; `zmap -M icmp_echo_time
#        -r RATE`, µs resolution; FPING=path or ZMAP=path for another installed build)
#        REPS=N (default 5)
#        QUEUES=N (default 1): RX and TX queues of the scanner's link (scripts/bed.sh --queues)
#        ASDIC_ARGS="--batch 1" (more flags for every asdic run)
#        MODE=scan: the stateless scan instead (`asdic scan 198.19.0.0/20 -R RATE`, one probe
#        per target, each timed from the stamp its payload carries)
#        ASDIC=path/to/asdic (default: build target/release/asdic)
#        SPREAD_US=N: the far end answers with a delay of its own per probe, uniform in 0..N µs
#        (xdp/responder/src/delay.rs, the kernel's echo replies off there), so that the
#        wire's RTTs spread over N µs instead of lying within about one: how many distinct
#        values a prober keeps when the truth has them (the bed's own RTTs are ~6 µs, in steps
#        of ~10 ns, so at most a few hundred distinct values exist without it)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v tcpdump >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null
if [ -z "${ASDIC:-}" ]; then
  cargo build --release -p asdic-cli >&2
  ASDIC="${CARGO_TARGET_DIR:-target}/release/asdic"
fi
reps=${REPS:-5}
engines=(${ENGINES:-xdp raw uring fping zmap})
rates=("$@")
((${#rates[@]})) || rates=(1000 20000 50000 200000)
id=rtt$$
work=$(mktemp -d)
responder=""
trap 'if [ -n "$responder" ]; then kill "$responder" 2>/dev/null || true; fi
  scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
scripts/bed.sh up "$id" --queues "${QUEUES:-1}" >/dev/null
if [ -n "${SPREAD_US:-}" ]; then
  cargo build --release -p asdic-responder >&2
  ip netns exec "asdic-$id-far" sysctl -qw net.ipv4.icmp_echo_ignore_all=1
  # At most an hour; killed when the bench ends.
  ip netns exec "asdic-$id-far" "${CARGO_TARGET_DIR:-target}/release/delay-responder" \
    "$SPREAD_US" 3600 >"$work/responder.out" 2>&1 &
  responder=$!
fi
scan="asdic-$id-scan" rtr="asdic-$id-rtr"
: >"$work/empty.conf"
# zmap's next hop: the router's side of the scanner's link.
gw_mac=$(ip netns exec "$rtr" cat /sys/class/net/r0/address)
. bench/peers.sh
fping=none zmap=none
for e in "${engines[@]}"; do
  case $e in
  fping) fping=$(peer fping "${FPING:-}") ;;
  zmap) zmap=$(peer_zmap) ;;
  esac
done

one() { # engine rate run -> one JSON line (plus "capture_dropped")
  local e=$1 r=$2 k=$3 dir="$work/$1-$2-$3"
  mkdir -p "$dir"
  ip netns exec "$rtr" tcpdump -i r0 -n -s 128 -B 65536 --time-stamp-precision=nano \
    -w "$dir/wire.pcap" icmp or icmp6 2>"$dir/tcpdump.err" &
  local cap=$!
  local i
  for i in $(seq 100); do grep -q listening "$dir/tcpdump.err" 2>/dev/null && break; sleep 0.05; done
  # Exit 1 is "some targets did not answer" (the bed's dead hosts): expected.
  local rc=0 res_ns=""
  case $e in
  fping)
    # One probe per target, RATE probes/s (-i: ms between probes); -C 1 prints each
    # target's RTT in ms (µs resolution) on stderr, "-" when it did not answer.
    ip netns exec "$scan" "$fping" -C 1 -q -r 0 -t 1000 -B 1 -i "$(awk -v r="$r" 'BEGIN { print 1000 / r }')" \
      -g 198.19.0.0/20 >/dev/null 2>"$dir/fping.out" || rc=$?
    awk '$2 == ":" && $3 != "-" { printf "%s %.3f\n", $1, $3 * 1000 }' "$dir/fping.out" >"$dir/rtts"
    # Its resolution: the most decimals of ms it printed.
    res_ns=$(awk '$2 == ":" && $3 ~ /\./ { d = length($3) - index($3, "."); if (d > m) m = d }
      END { r = 1000000; for (i = 0; i < m; i++) r /= 10; print (r < 1 ? 1 : r) }' "$dir/fping.out")
    ;;
  zmap)
    # icmp_echo_time: each reply with its probe's send time (in the payload) and its receive
    # time (libpcap's stamp), both µs.
    ip netns exec "$scan" "$zmap" -M icmp_echo_time -i s0 -S 198.18.0.1 -G "$gw_mac" -b "$work/empty.conf" \
      -C "$work/empty.conf" -r "$r" -c 1 -q -O csv -f "saddr,sent-timestamp-ts,sent-timestamp-us,timestamp-ts,timestamp-us" \
      -o "$dir/out.csv" 198.19.0.0/20 >/dev/null 2>"$dir/zmap.err" || rc=$?
    awk -F, 'NR > 1 { printf "%s %d\n", $1, ($4 - $2) * 1000000 + $5 - $3 }' "$dir/out.csv" >"$dir/rtts"
    res_ns=1000
    ;;
  *)
    if [[ ${MODE:-ping} == scan ]]; then
      ip netns exec "$scan" "$ASDIC" scan 198.19.0.0/20 -R "$r" --engine "$e" -q --no-default-blocklist \
        --cooldown 1s ${ASDIC_ARGS:-} -O csv -o "$dir/out.csv" >/dev/null 2>"$dir/asdic.err" || rc=$?
      # target,outcome,rtt_us,…: one row per target.
      awk -F, 'NR > 1 && $2 == "reply" { print $1, $3 }' "$dir/out.csv" >"$dir/rtts"
    else
      ip netns exec "$scan" "$ASDIC" ping 198.19.0.0/20 -c 1 -R "$r" --engine "$e" -q ${ASDIC_ARGS:-} \
        --format csv -o "$dir/out.csv" >/dev/null 2>"$dir/asdic.err" || rc=$?
      # target,…,received,…,rtt_last_us: one probe per target, so its last RTT is its only one.
      awk -F, 'NR > 1 && $4 == 1 { print $1, $6 }' "$dir/out.csv" >"$dir/rtts"
    fi
    ;;
  esac
  if ((rc > 1)); then
    cat "$dir"/*.err >&2
    kill -INT "$cap"
    wait "$cap" || true
    return 1
  fi
  sleep 0.3
  kill -INT "$cap"
  wait "$cap" || true
  local dropped
  dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$dir/tcpdump.err")
  python3 bench/rtt_truth.py "$dir/wire.pcap" "$dir/rtts" 198.18.0.1 $res_ns |
    sed "s/}\$/, \"capture_dropped\": ${dropped:-0}}/"
  rm -f "$dir/wire.pcap"
}

printf '%-6s %8s %8s %6s %9s %9s %9s %6s %9s %9s %8s %9s\n' engine rate wire_pps runs p50_us p99_us \
  max_us below distinct wire_dist joined cap_drop
for e in "${engines[@]}"; do
  for r in "${rates[@]}"; do
    : >"$work/rows"
    for k in $(seq "$reps"); do one "$e" "$r" "$k" >>"$work/rows"; done
    python3 - "$work/rows" "$e" "$r" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: statistics.median(x[k] for x in rows if x[k] is not None)
print(f"{sys.argv[2]:<6} {sys.argv[3]:>8} {med('wire_pps'):>8.0f} {len(rows):>6} {med('p50_us'):>9.2f} "
      f"{med('p99_us'):>9.2f} {max(x['max_us'] for x in rows):>9.2f} "
      f"{sum(x['below_wire'] for x in rows):>6} {med('distinct'):>9.0f} "
      f"{med('wire_distinct'):>9.0f} "
      f"{med('joined'):>8.0f} {sum(x['capture_dropped'] for x in rows):>9}")
EOF
  done
done
if [ -n "$responder" ]; then
  # What the far end answered, refused to send, and left unanswered (a full queue).
  kill "$responder" 2>/dev/null || true
  wait "$responder" 2>/dev/null || true
  responder=""
  echo "delay-responder: $(cat "$work/responder.out")" >&2
fi
