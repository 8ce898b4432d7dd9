#!/usr/bin/env bash
# Runs asdic's raw and uring engines on the same veth test bed, alternating, at a few rates,
# and prints per rate and engine (median of REPS runs): probes/s actually sent, replies/s
# matched, reply loss against the bed's ground truth (replies the far side sent vs replies
# matched), CPU time per probe (user+sys of the asdic process from /usr/bin/time, over the
# probes sent) and peak RSS; then the uring/raw ratios.
#
# Each run pings 198.19.0.0/16 twice (131,072 probes, 56-byte payload, 1 s timeout).
# CPU time is the asdic process's only, but on a veth bed it includes kernel work done in
# its context: the softirqs that carry probes through the router and far namespaces and
# build their replies. Compare engines within one run, not absolute numbers across runs.
#
# A second table isolates sending: a veth pair inside the scanner namespace, whose far end
# drops every frame on arrival (a static neighbour with a MAC nobody has), takes probes to
# 198.18.128.0/17 (8 rounds: 262,144 probes, asked for at 10 M/s). No replies, so the send
# path (engine, IP output, one veth hop) is all there is.
#
# usage: bench/engine-rates.sh [RATE...]   (default: 20000 50000 100000 400000)
#        REPS=N (default 3)  ASDIC=path/to/asdic (default: build target/release/asdic)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
if [ -z "${ASDIC:-}" ]; then
  cargo build --release -p asdic-cli >&2
  ASDIC="${CARGO_TARGET_DIR:-target}/release/asdic"
fi
reps=${REPS:-3}
rates=("$@")
((${#rates[@]})) || rates=(20000 50000 100000 400000)
id=eng$$
runs=$(mktemp)
sinkruns=$(mktemp)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -f "$runs" "$sinkruns"' EXIT
scripts/bed.sh up "$id" >/dev/null
# The sink, inside the bed's scanner namespace (torn down with it).
ip netns exec "asdic-$id-scan" sh -e -c '
  ip link add vsink0 type veth peer name vsink1
  ip link set vsink0 up; ip link set vsink1 up
  ip addr add 198.18.2.1/30 dev vsink0
  ip neigh add 198.18.2.2 lladdr 02:00:00:00:00:02 dev vsink0 nud permanent
  ip route add 198.18.128.0/17 via 198.18.2.2 dev vsink0'
replied() { scripts/bed.sh truth "$id" | sed -n 's/.*"replied":\([0-9]*\).*/\1/p'; }

# Per-thread CPU: /usr/bin/time sums the process, whose TX thread spins (sched_yield) while
# pacing below saturation. So the threads' utime+stime are also sampled from /proc every
# 100 ms while asdic runs; each thread counts with its last sample (ticks of 10 ms).
sample() { # pid file: appends "tid name utime stime" lines
  local pid=$1 out=$2 t
  while kill -0 "$pid" 2>/dev/null; do
    for t in /proc/"$pid"/task/*/stat; do cat "$t" 2>/dev/null; echo; done |
      sed -n 's/^\([0-9]*\) (\([^)]*\)) \(.*\)/\1 \2 \3/p' |
      awk '{ print $1, $2, $14, $15 }' >>"$out"
    sleep 0.1
  done
}
thread_cpu() { # file regex -> seconds of the threads whose name matches
  awk -v re="$2" -v hz="$(getconf CLK_TCK)" '$2 ~ re { last[$1] = $3 + $4 }
    END { for (t in last) s += last[t]; printf "%.2f", s / hz }' "$1"
}

one() { # engine rate [sink] -> one line: engine rate sent secs replies far user sys rss_kb rx_s tx_s
  local e=$1 r=$2 before after log threads bg pid="" target=(198.19.0.0/16 -c 2 -W 1s)
  [ "${3:-}" = sink ] && target=(198.18.128.0/17 -c 8 -W 100ms)
  before=$(replied)
  log=$(mktemp)
  threads=$(mktemp)
  ip netns exec "asdic-$id-scan" /usr/bin/time -f 'TIME %U %S %M' "$ASDIC" ping "${target[@]}" \
    -i 0 --rate "$r" -q --no-progress --engine "$e" >/dev/null 2>"$log" &
  bg=$!
  while [ -z "$pid" ] && kill -0 "$bg" 2>/dev/null; do pid=$(pgrep -P "$bg" || true); done
  [ -n "$pid" ] && sample "$pid" "$threads"
  wait "$bg" || true
  after=$(replied)
  grep -q "asdic: engine $e:" "$log" || { echo "engine $e did not run:" >&2; cat "$log" >&2; exit 1; }
  local sent secs replies t
  sent=$(sed -n 's/.*sent \([0-9]*\) probes in \([0-9.]*\)s (.*/\1/p' "$log")
  secs=$(sed -n 's/.*sent \([0-9]*\) probes in \([0-9.]*\)s (.*/\2/p' "$log")
  replies=$(sed -n 's/.*probes, \([0-9]*\) replies.*/\1/p' "$log")
  t=$(sed -n 's/^TIME //p' "$log")
  echo "$e $r $sent $secs $replies $((after - before)) $t $(thread_cpu "$threads" '^asdic-rx') $(thread_cpu "$threads" '^asdic-tx')"
  rm -f "$log" "$threads"
}

for ((k = 0; k < reps; k++)); do
  # Alternate which engine goes first.
  if ((k % 2)); then order=(uring raw); else order=(raw uring); fi
  for r in "${rates[@]}"; do
    for e in "${order[@]}"; do
      line=$(one "$e" "$r")
      echo "$line" >>"$runs"
      echo "run $((k + 1))/$reps: $line" >&2
    done
  done
  for e in "${order[@]}"; do
    line=$(one "$e" 10000000 sink)
    echo "$line" >>"$sinkruns"
    echo "sink run $((k + 1))/$reps: $line" >&2
  done
done

echo "median of $reps runs per cell; 131,072 probes per run"
echo
echo "| rate asked | engine | sent pps | matched pps | reply loss | CPU µs/probe | RX thread µs/reply | TX thread µs/probe | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
awk '
function median(s,   a, n, i, j, t) {
  n = split(s, a, " ");
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
}
{
  e = $1; r = $2; key = r SUBSEP e;
  if (!(r in seen)) { seen[r] = 1; order[++nr] = r }
  pps[key] = pps[key] " " ($3 / $4);
  mpps[key] = mpps[key] " " ($5 / $4);
  loss[key] = loss[key] " " (($6 > 0) ? 100 * ($6 - $5) / $6 : 0);
  cpu[key] = cpu[key] " " (1e6 * ($7 + $8) / $3);
  rss[key] = rss[key] " " ($9 / 1024);
  rx[key] = rx[key] " " (1e6 * $10 / ($5 > 0 ? $5 : 1));
  tx[key] = tx[key] " " (1e6 * $11 / $3);
}
END {
  for (i = 1; i <= nr; i++) {
    r = order[i];
    for (k = 1; k <= 2; k++) {
      e = (k == 1) ? "raw" : "uring"; key = r SUBSEP e;
      P[e] = median(pps[key]); C[e] = median(cpu[key]); M[e] = median(mpps[key]);
      R[e] = median(rx[key]); T[e] = median(tx[key]);
      printf "| %d | %s | %.0f | %.0f | %.3f%% | %.2f | %.2f | %.2f | %.1f |\n", r, e, P[e], M[e], median(loss[key]), C[e], R[e], T[e], median(rss[key]);
    }
    ratio[i] = sprintf("| %d | uring/raw | %.2f× | %.2f× | | %.2f× | %.2f× | %.2f× | |", r, P["uring"] / P["raw"], M["uring"] / M["raw"], C["uring"] / C["raw"], R["uring"] / R["raw"], T["uring"] / T["raw"]);
  }
  print "";
  print "| rate asked | | sent pps | matched pps | | CPU per probe | RX thread per reply | TX thread per probe | |";
  print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |";
  for (i = 1; i <= nr; i++) print ratio[i];
}' "$runs"

echo
echo "TX only, into the sink (262,144 probes per run, asked for at 10 M/s; median of $reps runs)"
echo
echo "| engine | sent pps | CPU µs/probe | TX thread µs/probe | peak RSS MiB |"
echo "| --- | --- | --- | --- | --- |"
awk '
function median(s,   a, n, i, j, t) {
  n = split(s, a, " ");
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
}
{
  e = $1;
  pps[e] = pps[e] " " ($3 / $4); cpu[e] = cpu[e] " " (1e6 * ($7 + $8) / $3);
  tx[e] = tx[e] " " (1e6 * $11 / $3); rss[e] = rss[e] " " ($9 / 1024);
}
END {
  for (k = 1; k <= 2; k++) {
    e = (k == 1) ? "raw" : "uring";
    P[e] = median(pps[e]); C[e] = median(cpu[e]); T[e] = median(tx[e]);
    printf "| %s | %.0f | %.2f | %.2f | %.1f |\n", e, P[e], C[e], T[e], median(rss[e]);
  }
  printf "| uring/raw | %.2f× | %.2f× | %.2f× | |\n", P["uring"] / P["raw"], C["uring"] / C["raw"], T["uring"] / T["raw"];
}' "$sinkruns"
