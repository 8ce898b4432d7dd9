#!/usr/bin/env bash
# Peak memory and what was found, asdic scan against zmap and masscan (Debian's), on the same
# scans of the
# accuracy bed (scanner -- router -- far side, the far side answering 198.19.0.0/16 by its
# kernel, 674 dead hosts and a /24 the router rejects): 198.19.0.0/20 and 198.19.0.0/16 at
# 20,000 probes/s, 200,000/s and full speed (asdic --rate 10000000, zmap --rate 0, masscan
# --rate 10000000), cooldown
# 1 s, results as CSV. asdic runs twice per scan: on its AF_XDP engine (what auto picks on
# this bed) and on raw sockets (zmap's kind of I/O).
#
# For each run: probes sent (masscan: frames on the scanner's link during its run), seconds of
# sending (masscan reports none: -), peak RSS (GNU time's maximum resident set),
# and the echo-reply hit set checked against the bed's rule (live = not dead, not
# rejected): found, missed, extra. zmap counts echo replies only (its icmp_echoscan
# success), masscan its "open icmp" lines (--ping); asdic's replies are counted the same way
# (its ICMP error rows aside).
#
# usage: bench/scan-rss.sh        ZMAP=path (default: Debian's zmap, apt-get install zmap)
#                                 MASSCAN=path|none (default: Debian's masscan)
#                                 RATES="20000 200000 full" PREFIXES="20 16"
# Needs root. Traffic stays in the bed's namespaces (198.18.0.0/15).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
. bench/peers.sh
zmap=$(peer_zmap)
[[ $zmap != none ]] || { echo "scan-rss: needs zmap (ZMAP=none is not for this race)" >&2; exit 2; }
masscan=$(peer_masscan)
tools="asdic-xdp asdic-raw zmap"
[[ $masscan == none ]] || tools="$tools masscan"
target="${CARGO_TARGET_DIR:-target}/release"
cargo build --release -p asdic-cli >&2
rates=${RATES:-20000 200000 full}
prefixes=${PREFIXES:-20 16}
id=rss$$
ns=asdic-$id-scan
work=$(mktemp -d)
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
scripts/bed.sh up "$id" >/dev/null
mac=$(ip netns exec "asdic-$id-rtr" cat /sys/class/net/r0/address)
: >"$work/empty.conf"

# prefix length -> the bed's live addresses in it, sorted (host index x: 198.19.x>>8.x&255;
# dead iff x % 97 == 13 outside the rejected 198.19.77.0/24).
live() {
  awk -v n=$((1 << (32 - $1))) 'BEGIN { for (x = 0; x < n; x++) if (int(x / 256) != 77 && x % 97 != 13) printf "198.19.%d.%d\n", int(x / 256), x % 256 }' | sort
}

printf '%-10s %-16s %9s %9s %9s %8s %8s %8s %9s\n' tool scan rate sent send_s found missed extra rss_mib
for plen in $prefixes; do
  live "$plen" >"$work/live"
  for rate in $rates; do
    for tool in $tools; do
      out="$work/$tool.csv" err="$work/$tool.err" tm="$work/$tool.time"
      case $tool in
      asdic-*)
        r=$rate
        [ "$rate" = full ] && r=10000000
        ip netns exec "$ns" /usr/bin/time -f '%M' -o "$tm" "$target/asdic" scan "198.19.0.0/$plen" \
          --no-default-blocklist --engine "${tool#asdic-}" -R "$r" --cooldown 1 -q -O csv -o "$out" --force 2>"$err"
        awk -F, 'NR > 1 && $2 == "reply" { print $1 }' "$out" | sort -u >"$work/found"
        sent=$(sed -n 's/^asdic: sent \([0-9]*\) probes in \([0-9.]*\)s.*/\1/p' "$err")
        secs=$(sed -n 's/^asdic: sent \([0-9]*\) probes in \([0-9.]*\)s.*/\2/p' "$err")
        ;;
      zmap)
        r=$rate
        [ "$rate" = full ] && r=0
        ip netns exec "$ns" /usr/bin/time -f '%M' -o "$tm" "$zmap" -M icmp_echoscan -i s0 \
          -S 198.18.0.1 -G "$mac" -b "$work/empty.conf" -C /dev/null -r "$r" -T 1 -P 1 -c 1 \
          --output-filter "success = 1" --max-sendto-failures=1000000000 -f saddr -o "$out" \
          "198.19.0.0/$plen" 2>"$err"
        tail -n +2 "$out" | sort -u >"$work/found"
        # zmap's last status line: "send: N done (R Kp/s avg)"; seconds = N / R.
        read -r sent secs < <(grep -o 'send: [0-9]* done ([0-9.]* [KM]*p/s avg)' "$err" | tail -1 |
          awk '{ r = $4; gsub(/[(]/, "", r); r += 0; if ($5 ~ /^K/) r *= 1e3; if ($5 ~ /^M/) r *= 1e6; printf "%d %.3f\n", $2, (r > 0 ? $2 / r : 0) }')
        ;;
      masscan)
        r=$rate
        [ "$rate" = full ] && r=10000000
        tx0=$(ip netns exec "$ns" cat /sys/class/net/s0/statistics/tx_packets)
        rc=0
        ip netns exec "$ns" /usr/bin/time -f '%M' -o "$tm" timeout 300 "$masscan" --ping \
          "198.19.0.0/$plen" --rate "$r" --adapter s0 --adapter-ip 198.18.0.1 --router-mac "$mac" \
          --wait 1 -oL "$out" >"$err" 2>&1 || rc=$?
        [[ $rc == 0 ]] || echo "scan-rss: masscan exited $rc (124: timed out)" >&2
        awk '$1 == "open" && $2 == "icmp" { print $4 }' "$out" | sort -u >"$work/found"
        # Frames on s0 during its run (its probes, and the odd ARP); it reports no send time.
        sent=$(($(ip netns exec "$ns" cat /sys/class/net/s0/statistics/tx_packets) - tx0))
        secs=-
        ;;
      esac
      found=$(grep -c . "$work/found" || true)
      missed=$(comm -23 "$work/live" "$work/found" | grep -c . || true)
      extra=$(comm -13 "$work/live" "$work/found" | grep -c . || true)
      rss=$(tail -n 1 "$tm")
      printf '%-10s %-16s %9s %9s %9s %8d %8d %8d %9.1f\n' "$tool" "198.19.0.0/$plen" "$rate" \
        "${sent:-?}" "${secs:--}" "$found" "$missed" "$extra" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
    done
  done
done
