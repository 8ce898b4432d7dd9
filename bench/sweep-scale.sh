#!/usr/bin/env bash
# asdic sweep at fleet scale on the speed bed (scripts/bed.sh up --speed: the far end answers
# echo requests in XDP, 198.19.0.0/16 and 2001:db8:1::/64, hosts with index % 97 == 13 dead).
#
# TARGETS targets (default 100,000) swept every EVERY (default 1s) for SECS seconds (default
# 150: the 60 s window fills, then stays full), with the Prometheus endpoint scraped every
# 10 s and, with OUTPUT=1, Parquet written (rotated each minute). FAMILY=mixed (default): the
# whole 198.19.0.0/16, 65,536 IPv4, and the rest IPv6 from 2001:db8:1::/64, both families on
# the one XDP engine auto picks (one AF_XDP socket per queue serves both); FAMILY=v6: all from
# 2001:db8:1::/64, all on XDP.
#
# Every 10 s it prints the sweep process's RSS (read just before the scrape) and CPU
# (user+sys over the interval, in % of one core), and the rounds and round lag the metrics
# endpoint reports; at the end: mean CPU, RSS at 60 s and at the end (stable memory means no
# growth once the window is full) and the peak, the
# targets whose window shows loss (the bed's dead hosts are 1/97 of them), the replies asdic
# matched against the replies the responder sent, and the time one scrape took.
#
# SAMPLE=S samples every S seconds instead of 10 (bench/soak.sh: 60).
#
# usage: sudo bench/sweep-scale.sh        [TARGETS=N] [EVERY=1s] [SECS=S] [OUTPUT=1] [SAMPLE=S]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/release"
cargo build --release -p asdic-cli -p asdic-responder >&2
n=${TARGETS:-100000}
every=${EVERY:-1s}
secs=${SECS:-150}
id=swb$$
ns=asdic-$id-scan
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  scripts/bed.sh down "$id" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
ASDIC_RESPONDER="$target/asdic-responder" scripts/bed.sh up "$id" --speed >/dev/null
replied() { scripts/bed.sh truth "$id" | sed -n 's/.*"replied":\([0-9]*\).*/\1/p'; }

# The targets file: named hosts, NetXMS form.
family=${FAMILY:-mixed}
python3 - "$n" "$family" >"$work/fleet.txt" <<'EOF'
import sys
n, family = int(sys.argv[1]), sys.argv[2]
v4 = min(n, 65536) if family == "mixed" else 0
for i in range(v4):
    print(f"198.19.{i >> 8}.{i & 255}:host{i}")
import ipaddress
base = int(ipaddress.IPv6Address("2001:db8:1::"))
for i in range(n - v4):
    print(f"[{ipaddress.IPv6Address(base + i + 1)}]:v6host{i}")
EOF
every_s=$(python3 -c "import sys; s=sys.argv[1]; print(float(s[:-2])/1000 if s.endswith('ms') else float(s.rstrip('s')))" "$every")
rate=$(python3 -c "print(int($n / $every_s * 1.2) + 1000)")
# More rounds than the measurement lasts: the script ends the sweep with SIGINT, as an
# operator would.
rounds=$(python3 -c "print(int(($secs + 60) / $every_s))")
out=()
[ "${OUTPUT:-0}" = 1 ] && out=(-o "$work/out" --rotate 1m)

r0=$(replied)
ip netns exec "$ns" "$target/asdic" sweep "$work/fleet.txt" --every "$every" --rounds "$rounds" \
  --rate "$rate" --metrics-listen 127.0.0.1:9427 --status-every 30s -q "${out[@]}" \
  2>"$work/stderr" &
pid=$!
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0; }
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo 0; }
hwm() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo 0; }
metric() { grep -E "^$1 " "$work/m" | awk '{print $2}' | head -1; }
printf '%6s %9s %7s %7s %10s\n' t_s rss_mib cpu_% rounds lag_ms
t0=$(date +%s.%N)
prev=$(ticks)
prev_t=$t0
cpu_sum=0
cpu_n=0
rss60=
elapsed=0
sample=${SAMPLE:-10}
lag_max=0
rounds_seen=0
while kill -0 "$pid" 2>/dev/null && [ "$elapsed" -lt "$secs" ]; do
  sleep "$sample"
  kill -0 "$pid" 2>/dev/null || break
  now=$(date +%s.%N)
  cur=$(ticks)
  cpu=$(python3 -c "print(round(100 * ($cur - $prev) / $hz / ($now - $prev_t), 1))")
  prev=$cur
  prev_t=$now
  elapsed=$(python3 -c "print(round($now - $t0))")
  # RSS before the scrape: the steady state, not the scrape's own buffers.
  r=$(rss)
  ip netns exec "$ns" curl -s -m 20 127.0.0.1:9427/metrics >"$work/m" || : >"$work/m"
  lag=$(metric asdic_sweep_round_lag_seconds)
  lag_max=$(python3 -c "print(max($lag_max, float('${lag:-0}')))")
  rounds_seen=$(metric asdic_sweep_rounds_total)
  rounds_seen=${rounds_seen:-0}
  printf '%6s %9s %7s %7s %10s\n' "$elapsed" "$r" "$cpu" "$(metric asdic_sweep_rounds_total)" \
    "$(python3 -c "print(round(float('${lag:-0}') * 1000, 1))")"
  if [ "$elapsed" -ge 20 ]; then
    cpu_sum=$(python3 -c "print($cpu_sum + $cpu)")
    cpu_n=$((cpu_n + 1))
  fi
  if [ -z "$rss60" ] && [ "$elapsed" -ge 60 ]; then rss60=$r; fi
done
rss_end=$(rss)
# One timed scrape at the end of the run, while the window is full.
s0=$(date +%s.%N)
ip netns exec "$ns" curl -s -m 60 127.0.0.1:9427/metrics >"$work/m" || : >"$work/m"
t_scrape=$(python3 -c "print(round($(date +%s.%N) - $s0, 2))")
peak=$(hwm)
# CPU seconds per thread over the whole run (which part of the pipeline costs what).
threads=$(for t in /proc/"$pid"/task/*; do
  awk -v hz="$hz" '{c = $2; gsub(/[()]/, "", c); printf "%s %.1f\n", c, ($14 + $15) / hz}' "$t/stat"
done | sort -k2 -nr | awk '{printf "%s %ss, ", $1, $2}')
kill -INT "$pid"
lossy=$(grep -E '^asdic_sweep_loss_ratio\{' "$work/m" | awk '$2 > 0' | wc -l)
series=$(grep -vc '^#' "$work/m" || true)
bytes=$(wc -c <"$work/m")
wait "$pid" || true
pid=
r1=$(replied)
cat "$work/stderr" | grep -v '^asdic: engine' >&2 || true
matched=$(sed -n 's/.* probes ended, \([0-9]*\) replies.*/\1/p' "$work/stderr")
echo
echo "targets: $n ($family) every $every, rounds asked $rounds (ended by SIGINT), rate cap $rate/s"
echo "engine: $(grep -o 'engine [a-z]*:' "$work/stderr" | tr '\n' ' ')"
echo "mean CPU after 20 s: $(python3 -c "print(round($cpu_sum / max($cpu_n, 1), 1))") % of one core"
echo "RSS (between scrapes): ${rss60:-?} MiB at 60 s, $rss_end MiB at the end; peak $peak MiB"
dead=$(python3 -c '
import ipaddress, sys
d = 0
for line in open(sys.argv[1]):
    a = line.split("]")[0].lstrip("[") if line.startswith("[") else line.split(":")[0]
    x = int(ipaddress.ip_address(a))
    # The responder: IPv4 host index = the low 16 bits; IPv6 only below 2001:db8:1::1:0.
    i = x & 0xffff if "." in a else x - int(ipaddress.IPv6Address("2001:db8:1::"))
    d += i < 65536 and i % 97 == 13
print(d)' "$work/fleet.txt")
echo "targets with loss in the window: $lossy (dead hosts among the targets: $dead)"
echo "replies: asdic matched $matched, responder sent $((r1 - r0))"
echo "scrape: $series series, $bytes bytes, ${t_scrape} s"
echo "CPU by thread: $threads"
echo "rounds: $rounds_seen after ${elapsed} s (one per $every: $(python3 -c "print(int($elapsed / $every_s))") expected), largest round lag seen $(python3 -c "print(round($lag_max * 1000, 1))") ms"
