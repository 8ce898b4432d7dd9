#!/usr/bin/env bash
# The AF_XDP race on two speed beds (scripts/bed.sh up --speed: the far end answers echo
# requests in XDP, so the bed is not the bottleneck), one whose scanner link has 1 queue and
# one with 2 (the responder answers on the queue of the CPU it runs on, so on this 2-core
# machine replies arrive on both). In one run, on each bed, over the same 65,536 targets
# (198.19.0.0/16, 676 dead):
#
#   ceiling    a minimal AF_XDP sender of its own, not asdic's engine (bench/src/bin/xdp-ceiling.rs:
#              own UMEM and rings per queue, libxdp's redirect program, prebuilt frames in
#              batches of 64, one thread counting replies off the RX rings; no pacing, stamps,
#              table or matching)
#   stamps     the same sender stamping each frame as issue 28 asks (xdp-ceiling ... stamps):
#              a CLOCK_MONOTONIC read written into each frame right before it goes on the
#              ring, and asdic's own XDP program's bpf_ktime_get_ns receive stamp on each reply
#   floor      that and a reply's proof (xdp-ceiling ... floor): the stamp's keyed MAC patched
#              in per frame and the program's keyed check. Their ratios to the ceiling are the
#              most a prober doing that work per frame can reach here; asdic's ratio to the
#              floor is what asdic's engine and runtime cost beyond it (FLOOR=0: neither
#              runs; FLOOR=split: also tx-stamp and rx-stamp, each stamp on its own)
#   asdic      asdic ping --engine xdp -c 60 -i 1ms -R 10000000: 20 rounds back to back,
#              1,310,720 probes, every reply matched and timed (one socket per queue)
#   zmap       Debian's zmap (apt-get install zmap: 2.1.1; ZMAP=path for another installed
#              build, ZMAP=none to leave it out; peers are never built from source here)
#              -M icmp_echoscan -T 2 -P 60 -r 0, every response written
#              (--output-filter "success = 1")
#   masscan    Debian's masscan (apt-get install masscan: 1.3.2; MASSCAN=path|none) --ping
#              --rate 10000000 --wait 1 -oL: one probe per target (it has no rounds), so its
#              run is shorter than a full 1-s window and its sent/s is the span's average
#
# Each run lasts several seconds. Per tool and bed, the median over REPS runs of:
#   sent/s     probes on the wire per second: s0's tx_packets sampled every 2 ms; the median
#              of the full 1-s windows between the run's first and last frame (steady rate,
#              not the peak)
#   found      distinct live hosts the tool reported (of 64,860)
#   matched/s  replies the tool reported, over the seconds it sent
#   missed     replies the responder sent that the tool did not report
#   txdrop     frames the scanner's link dropped on transmit during the run (s0's tx_dropped:
#              a veth drops what its peer's queue cannot take; no tool sees them)
#   CPU/probe  user+sys of the tool's process (/usr/bin/time) over the frames it sent
#   RSS        the tool's peak resident set
# and each tool's steady sent rate as a ratio to zmap's and to the ceiling's on the same bed,
# plus asdic on 2 queues over asdic on 1 queue. Ratios come from the same run: the machine
# is noisy, absolute rates are not comparable across runs.
#
# With BASE=path (another asdic binary, e.g. built from an earlier commit) the same asdic run
# is repeated with it as tool "base", in turn with the others, and asdic's steady rate is
# also given as a ratio to base's: a before/after comparison measured in one run.
#
# usage: bench/xdp-race.sh        REPS=N (default 3), ZMAP=path|none (default: Debian's),
#                                 MASSCAN=path|none (default: Debian's),
#                                 BASE=path (optional), QUEUES=1|2|both (default both),
#                                 FLOOR=0|split (stamps and floor left out, or split),
#                                 ASDIC_ARGS="--batch 64" (more flags for asdic and base)
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
. bench/peers.sh
zmap=$(peer_zmap)
masscan=$(peer_masscan)
target="${CARGO_TARGET_DIR:-target}/release"
cargo build --release -p asdic-cli -p asdic-responder -p asdic-bench >&2
reps=${REPS:-3}
work=$(mktemp -d)
case ${QUEUES:-both} in
1) beds=(rq1$$) ;;
2) beds=(rq2$$) ;;
both) beds=(rq1$$ rq2$$) ;;
*) echo "xdp-race: QUEUES=${QUEUES} is not 1, 2 or both" >&2; exit 2 ;;
esac
spid=""
trap 'if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; fi
  for b in "${beds[@]}"; do scripts/bed.sh down "$b" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
for b in "${beds[@]}"; do
  q=1
  [[ $b == rq2* ]] && q=2
  ASDIC_RESPONDER="$target/asdic-responder" scripts/bed.sh up "$b" --speed --queues "$q" >/dev/null
done
: >"$work/empty.conf"

# Samples s0's tx_packets every 2 ms ("epoch_seconds count" lines) until killed. Bash
# builtins only (read -t on a pipe as the sleep), so the sampler costs little CPU.
sampler() { # ns file
  exec ip netns exec "$1" bash -c '
    exec {s}<> <(:)
    while :; do
      read -r n < /sys/class/net/s0/statistics/tx_packets
      echo "$EPOCHREALTIME $n"
      read -r -t 0.002 -u "$s" || true
    done' >"$2" 2>/dev/null
}
# file -> "steady_pps sent_in_span span_s total": the span runs from the first sample 9
# packets above the start to the first within 8 of the end (stray ARP/ND frames do not
# stretch it); steady_pps is the median of the packets sent in each full 1-s window of it.
span() {
  awk '{ t[NR] = $1; c[NR] = $2 } END {
    n0 = c[1]; n1 = c[NR]
    for (i = 1; i <= NR; i++) if (c[i] >= n0 + 9) { a = i; break }
    for (i = 1; i <= NR; i++) if (c[i] >= n1 - 8) { b = i; break }
    d = t[b] - t[a]; if (d <= 0) d = 1e-9
    k = 0; s = a
    while (1) {
      e = s; while (e <= b && t[e] < t[s] + 1) e++
      if (e > b) break
      win[++k] = (c[e] - c[s]) / (t[e] - t[s]); s = e
    }
    for (i = 2; i <= k; i++) for (x = i; x > 1 && win[x - 1] > win[x]; x--) { y = win[x]; win[x] = win[x - 1]; win[x - 1] = y }
    med = (k == 0) ? (c[b] - c[a]) / d : (k % 2 ? win[(k + 1) / 2] : (win[k / 2] + win[k / 2 + 1]) / 2)
    printf "%.0f %d %.6f %d\n", med, c[b] - c[a], d, n1 - n0 }' "$1"
}
replied() { scripts/bed.sh truth "$1" | sed -n 's/.*"replied":\([0-9]*\).*/\1/p'; }
# Frames the scanner's link dropped on transmit (a veth drops what its peer's queue cannot
# take; they are in no tool's sent count on the wire, and a tool cannot see them).
txdropped() { ip netns exec "asdic-$1-scan" cat /sys/class/net/s0/statistics/tx_dropped; }

run_tool() { # tool bed -> name steady_pps sent span_s found matched replied cpu_s rss_kb
  local tool=$1 bed=$2 ns="asdic-$2-scan" name="$1@$2" out="$work/$1-$2.out" tm="$work/$1-$2.time"
  local samples="$work/$1-$2.samples" r0 r1 m f mac
  mac=$(scripts/bed.sh truth "$bed" | sed -n 's/.*"gateway_mac":"\([^"]*\)".*/\1/p')
  r0=$(replied "$bed")
  local d0
  d0=$(txdropped "$bed")
  sampler "$ns" "$samples" &
  spid=$!
  sleep 0.2
  local cmd=()
  case $tool in
  ceiling) cmd=("$target/xdp-ceiling" s0 198.18.0.1 "$mac" 198.19.0.0/16 5) ;;
  stamps | floor | tx-stamp | rx-stamp) cmd=("$target/xdp-ceiling" s0 198.18.0.1 "$mac" 198.19.0.0/16 5 "$tool") ;;
  asdic | base)
    local bin="$target/asdic"
    [[ $tool == base ]] && bin=$BASE
    cmd=("$bin" ping 198.19.0.0/16 --engine xdp -c 60 -i 1ms -R 10000000 -W 1s
      --no-progress --format csv ${ASDIC_ARGS:-})
    ;;
  zmap)
    cmd=("$zmap" -M icmp_echoscan -i s0 -S 198.18.0.1 -G "$mac" -b "$work/empty.conf"
      -C /dev/null -r 0 -T 2 -P 60 -c 1 -q --output-filter "success = 1" --max-sendto-failures=1000000000
      -f saddr -o "$out" 198.19.0.0/16)
    ;;
  masscan)
    cmd=(timeout 120 "$masscan" --ping 198.19.0.0/16 --rate 10000000 --adapter s0
      --adapter-ip 198.18.0.1 --router-mac "$mac" --wait 1 -oL "$out")
    ;;
  esac
  local rc=0
  ip netns exec "$ns" /usr/bin/time -f "%U %S %M" -o "$tm" "${cmd[@]}" \
    >"$work/$name.stdout" 2>"$work/$name.stderr" || rc=$?
  # asdic exits 1 when some targets did not answer (the bed's dead hosts).
  [[ $rc == 0 || ($rc == 1 && $tool =~ ^(asdic|base)$) ]] || {
    echo "xdp-race: $name failed:" >&2
    tail -5 "$work/$name.stderr" >&2
    kill "$spid" 2>/dev/null || true
    return 1
  }
  sleep 0.2
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  spid=""
  r1=$(replied "$bed")
  local d1
  d1=$(txdropped "$bed")
  case $tool in
  ceiling | stamps | floor | tx-stamp | rx-stamp)
    m=$(sed -n 's/.*"received":\([0-9]*\).*/\1/p' "$work/$name.stdout")
    f=0
    if [[ $tool =~ ^(stamps|floor|rx-stamp)$ ]]; then
      # Every reply went through asdic's filter: each must carry its receive stamp.
      local st
      st=$(sed -n 's/.*"stamped":\([0-9]*\).*/\1/p' "$work/$name.stdout")
      [[ $st == "$m" ]] || echo "xdp-race: $name: $st of $m replies carried a receive stamp" >&2
    fi
    ;;
  asdic | base)
    m=$(sed -n 's/^asdic: 65536 targets, [0-9]* probes, \([0-9]*\) replies.*/\1/p' "$work/$name.stderr")
    f=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "received") c = i; next } $c > 0 { n++ } END { print n + 0 }' "$work/$name.stdout")
    ;;
  zmap)
    m=$(($(grep -c . "$out") - 1)) # a header line
    f=$(tail -n +2 "$out" | sort -u | grep -c .)
    ;;
  masscan)
    m=$(grep -c '^open icmp' "$out" || true)
    f=$(awk '$1 == "open" && $2 == "icmp" { print $4 }' "$out" | sort -u | grep -c . || true)
    ;;
  esac
  read -r steady sent secs _ < <(span "$samples")
  read -r u s rss < <(tail -n 1 "$tm") # after "Command exited with non-zero status 1"
  echo "$name $steady $sent $secs $f ${m:-0} $((r1 - r0)) $(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }') $rss $((d1 - d0))"
}

tools=(ceiling)
case ${FLOOR:-1} in
0) ;;
split) tools+=(rx-stamp tx-stamp stamps floor) ;; # libxdp's runs apart
*) tools+=(stamps floor) ;;
esac
if [[ -n ${BASE:-} ]]; then
  [[ -x $BASE ]] || { echo "xdp-race: BASE=$BASE is not an executable" >&2; exit 2; }
  tools+=(base)
fi
tools+=(asdic)
[[ $zmap == none ]] || tools+=(zmap)
[[ $masscan == none ]] || tools+=(masscan)
results="$work/results"
for ((rep = 1; rep <= reps; rep++)); do
  for b in "${beds[@]}"; do
    for t in "${tools[@]}"; do
      run_tool "$t" "$b" >>"$results"
    done
  done
  echo "xdp-race: repetition $rep of $reps done" >&2
done
sed -i "s/@rq1$$/@1q/; s/@rq2$$/@2q/" "$results"

awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  {
    k = ++n[$1]
    st[$1, k] = $2; fo[$1, k] = $5; mps[$1, k] = $6 / $4
    mi[$1, k] = ($7 > $6 ? $7 - $6 : 0)
    cpu[$1, k] = $8 * 1e6 / ($3 > 0 ? $3 : 1); rss[$1, k] = $9 / 1024; td[$1, k] = $10
  }
  END {
    nt = split("ceiling@1q tx-stamp@1q rx-stamp@1q stamps@1q floor@1q base@1q asdic@1q zmap@1q masscan@1q ceiling@2q tx-stamp@2q rx-stamp@2q stamps@2q floor@2q base@2q asdic@2q zmap@2q masscan@2q", all, " ")
    no = 0
    for (i = 1; i <= nt; i++) if (n[all[i]] > 0) order[++no] = all[i]
    for (i = 1; i <= no; i++) {
      t = order[i]; m = n[t]
      for (k = 1; k <= m; k++) { a[k] = st[t, k] }; S[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = fo[t, k] }; F[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = mps[t, k] }; M[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = mi[t, k] }; X[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = cpu[t, k] }; C[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = rss[t, k] }; R[t] = median(a, m)
      for (k = 1; k <= m; k++) { a[k] = td[t, k] }; D[t] = median(a, m)
    }
    printf "%-12s %10s %8s %10s %8s %8s %10s %8s %7s %7s\n", "tool@bed", "sent/s", "found", "matched/s", "missed", "txdrop", "CPU us/pr", "RSS MiB", "x zmap", "x ceil"
    for (i = 1; i <= no; i++) {
      t = order[i]; q = substr(t, index(t, "@"))
      printf "%-12s %10.0f %8s %10.0f %8d %8d %10.2f %8.1f %7.2f %7.2f\n", t, S[t], (t ~ /ceiling|stamp|floor/ ? "-" : F[t]), M[t], X[t], D[t], C[t], R[t],
        (S["zmap" q] > 0 ? S[t] / S["zmap" q] : 0), (S["ceiling" q] > 0 ? S[t] / S["ceiling" q] : 0)
    }
    for (q = 1; q <= 2; q++) if (n["floor@" q "q"] > 0 && n["asdic@" q "q"] > 0 && S["floor@" q "q"] > 0)
      printf "asdic / floor on %d queue(s), same run: steady sent/s %.3f, matched/s %.3f, CPU/probe %.3f\n", q,
        S["asdic@" q "q"] / S["floor@" q "q"], M["asdic@" q "q"] / M["floor@" q "q"], C["asdic@" q "q"] / C["floor@" q "q"]
    if (n["asdic@1q"] > 0 && n["asdic@2q"] > 0)
      printf "asdic on 2 queues / asdic on 1 queue (steady sent/s): %.2f\n", S["asdic@2q"] / S["asdic@1q"]
    for (q = 1; q <= 2; q++) if (n["base@" q "q"] > 0 && S["base@" q "q"] > 0) {
      printf "asdic / base on %d queue(s), same run: steady sent/s %.3f, matched/s %.3f, CPU/probe %.3f\n", q,
        S["asdic@" q "q"] / S["base@" q "q"], M["asdic@" q "q"] / M["base@" q "q"], C["asdic@" q "q"] / C["base@" q "q"]
      # The spread of the runs of base: a ratio inside it is noise.
      for (k = 1; k <= n["base@" q "q"]; k++) { a[k] = st["base@" q "q", k] }
      lo = a[1]; hi = a[1]; for (k = 2; k <= n["base@" q "q"]; k++) { if (a[k] < lo) lo = a[k]; if (a[k] > hi) hi = a[k] }
      printf "  steady sent/s of base over its runs: %.0f..%.0f (%.1f %% of its median)\n", lo, hi, (hi - lo) * 100 / S["base@" q "q"]
    }
    printf "(median of %d runs per tool and bed; steady = median full 1-s window; 65,536 targets, 64,860 live)\n", m
  }' "$results"
echo "raw runs: tool@bed steady_pps sent span_s found matched replied cpu_s rss_kb tx_dropped" >&2
cat "$results" >&2
