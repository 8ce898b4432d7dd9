#!/usr/bin/env bash
# The engine race on the speed bed (scripts/bed.sh up --speed: the far end answers echo
# requests in XDP, so the bed is not the bottleneck the nftables bed is). In one run, on the
# same bed and the same targets (198.19.0.0/16, 65,536 addresses, 676 of them dead):
#
#   ceiling    prebuilt frames blasted through asdic's AF_XDP TX path with no bookkeeping
#              (bench/src/bin/xdp-ceiling.rs: no pacing, stamps, table or matching)
#   asdic-xdp  asdic scan --engine xdp
#   asdic-uring, asdic-raw   the socket engines
#   zmap       Debian's zmap, icmp_echoscan module
#   masscan    Debian's masscan --ping
#
# every prober asked for 1,000,000 probes/s (more than any reaches here). Per tool, the median
# of REPS runs (tools alternate within each repetition):
#   sent/s     probes on the wire per second of sending: s0's tx_packets sampled every 2 ms
#              inside the scanner namespace, from its start to its end (ignoring up to 8
#              stray frames at either end)
#   matched/s  replies the tool reported (asdic's summary, zmap's and masscan's output lines),
#              per second of sending
#   loss       1 - matched / replies the responder sent during that run (its `replied`)
#   CPU/probe  user+sys of the tool's process (/usr/bin/time) over the frames it sent
#   RSS        the tool's peak resident set
# and the sent rates as ratios to zmap's and to the ceiling's.
#
# usage: bench/xdp-race.sh        REPS=N (default 3)
# Needs root. Installs zmap, masscan and GNU time with apt if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
need=()
command -v zmap >/dev/null || need+=(zmap)
command -v masscan >/dev/null || need+=(masscan)
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
  echo "xdp-race: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
target="${CARGO_TARGET_DIR:-target}/release"
cargo build --release -p asdic-cli -p asdic-xdp -p asdic-bench >&2
reps=${REPS:-3}
id=race$$
ns=asdic-$id-scan
work=$(mktemp -d)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
ASDIC_RESPONDER="$target/asdic-responder" scripts/bed.sh up "$id" --speed >/dev/null
truth() { scripts/bed.sh truth "$id"; }
mac=$(truth | sed -n 's/.*"gateway_mac":"\([^"]*\)".*/\1/p')
replied() { truth | sed -n 's/.*"replied":\([0-9]*\).*/\1/p'; }
: >"$work/empty.conf"

# Samples s0's tx_packets every 2 ms ("epoch_seconds count" lines) until killed. Bash
# builtins only (read -t on a pipe as the sleep), so the sampler costs little CPU.
sampler() {
  exec ip netns exec "$ns" bash -c '
    exec {s}<> <(:)
    while :; do
      read -r n < /sys/class/net/s0/statistics/tx_packets
      echo "$EPOCHREALTIME $n"
      read -r -t 0.002 -u "$s" || true
    done' >"$1" 2>/dev/null
}
# file -> "packets seconds": the rate between the first sample 9 packets above the start and
# the first within 8 of the end, so that a few stray frames before or after the run (ARP,
# neighbour discovery) do not stretch the span.
span() {
  awk '{ t[NR] = $1; c[NR] = $2 } END {
    n0 = c[1]; n1 = c[NR]
    for (i = 1; i <= NR; i++) if (c[i] >= n0 + 9) { a = i; break }
    for (i = 1; i <= NR; i++) if (c[i] >= n1 - 8) { b = i; break }
    d = t[b] - t[a]; if (d <= 0) d = 1e-9
    printf "%d %.6f %d\n", c[b] - c[a], d, n1 - n0 }' "$1"
}

run_tool() { # name -> one result line: name sent secs matched replied cpu_s rss_kb
  local name=$1 out="$work/$1.out" tm="$work/$1.time" samples="$work/$1.samples" r0 r1 spid m
  r0=$(replied)
  sampler "$samples" &
  spid=$!
  sleep 0.1
  local cmd=()
  case $name in
  ceiling) cmd=("$target/xdp-ceiling" 198.19.0.0/16 65536 1) ;;
  asdic-*)
    cmd=("$target/asdic" scan 198.19.0.0/16 --no-default-blocklist --engine "${name#asdic-}"
      -r 1000000 -c 1 -q -O csv -o "$out")
    ;;
  zmap)
    cmd=(zmap -M icmp_echoscan -i s0 -S 198.18.0.1 -G "$mac" -b "$work/empty.conf"
      -r 1000000 -c 1 -q -o "$out" 198.19.0.0/16)
    ;;
  masscan)
    cmd=(masscan --ping 198.19.0.0/16 --rate 1000000 -e s0 --adapter-ip 198.18.0.1
      --router-mac "$mac" -oL "$out" --wait 1)
    ;;
  esac
  ip netns exec "$ns" /usr/bin/time -f "%U %S %M" -o "$tm" "${cmd[@]}" \
    >"$work/$name.stdout" 2>"$work/$name.stderr" || {
    echo "xdp-race: $name failed:" >&2
    tail -5 "$work/$name.stderr" >&2
    kill "$spid" 2>/dev/null || true
    return 1
  }
  sleep 0.1
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  r1=$(replied)
  case $name in
  ceiling) m=$(sed -n 's/.*"received":\([0-9]*\).*/\1/p' "$work/$name.stdout") ;;
  asdic-*) m=$(sed -n 's/^asdic: [0-9]* probes: \([0-9]*\) replies.*/\1/p' "$work/$name.stderr") ;;
  zmap) m=$(($(grep -c . "$out") - 1)) ;; # a header line
  masscan) m=$(grep -c '^open icmp' "$out" || true) ;;
  esac
  read -r sent secs total < <(span "$samples")
  read -r u s rss <"$tm"
  echo "$name $sent $secs ${m:-0} $((r1 - r0)) $(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }') $rss $total"
}

tools=(ceiling asdic-xdp asdic-uring asdic-raw zmap masscan)
results="$work/results"
for ((rep = 1; rep <= reps; rep++)); do
  for t in "${tools[@]}"; do
    run_tool "$t" >>"$results"
  done
  echo "xdp-race: repetition $rep of $reps done" >&2
done

# Medians per tool, then the table.
awk -v tools="${tools[*]}" '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    k = ++n[$1]
    pps[$1, k] = $2 / $3; mps[$1, k] = $4 / $3
    loss[$1, k] = ($5 > 0 ? 100 * (1 - $4 / $5) : 0)
    cpu[$1, k] = $6 * 1e6 / ($8 > 0 ? $8 : 1); rss[$1, k] = $7 / 1024
  }
  END {
    split(tools, order, " ")
    for (i in order) {
      t = order[i]; m = n[t]
      for (k = 1; k <= m; k++) { a[k] = pps[t, k] }; P[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = mps[t, k] }; M[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = loss[t, k] }; L[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = cpu[t, k] }; C[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = rss[t, k] }; R[t] = median(a, m)
    }
    printf "%-12s %10s %10s %8s %10s %9s %8s %8s\n", "tool", "sent/s", "matched/s", "loss%", "CPU us/pr", "RSS MiB", "x zmap", "x ceil"
    for (i = 1; i in order; i++) {
      t = order[i]
      printf "%-12s %10.0f %10.0f %8.3f %10.2f %9.1f %8.2f %8.2f\n", t, P[t], M[t], L[t], C[t], R[t],
        (P["zmap"] > 0 ? P[t] / P["zmap"] : 0), (P["ceiling"] > 0 ? P[t] / P["ceiling"] : 0)
    }
    printf "(median of %d runs; 65,536 targets each; loss vs the responder'"'"'s replies in the same run)\n", m
  }' "$results"
echo "raw runs: tool sent_in_span span_s matched replied cpu_s rss_kb frames_total" >&2
cat "$results" >&2
