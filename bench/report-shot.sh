#!/usr/bin/env bash
# asdic report, rendered: runs a scan, a sweep, a ping and a trace on the veth test bed (4 %
# random loss, dead hosts, a rejected /24), writes the report, prints how long it took and how
# big it is, renders the page in Debian's headless chromium and keeps the screenshot as
# bench/report-screenshot.png (the artifact of this script).
#
# Chromium runs inside the bed's scanner namespace, whose only routes lead into the bed: the
# page cannot fetch anything, so the screenshot also shows it renders offline.
#
# usage: sudo bench/report-shot.sh [SCREENSHOT.png]   (default bench/report-screenshot.png)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if ! command -v chromium >/dev/null; then
  echo "report-shot: installing Debian's chromium" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cargo build --release -p asdic-cli >&2
shot=${1:-bench/report-screenshot.png}
id=shot$$
work=$(mktemp -d /tmp/asdic-report-shot.XXXXXX)
chmod 755 "$work"
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
A=$PWD/target/release/asdic
scripts/bed.sh up "$id" --loss 4 >/dev/null
in_bed() { scripts/bed.sh exec "$id" -- "$@"; }

# A fleet of 24 hosts: one dead on the bed (198.19.3.21: (3*256+21) % 97 == 13), one in the
# rejected /24, one IPv6.
{
  for i in $(seq 1 21); do echo "198.19.3.$i:web$i"; done
  echo "198.19.77.40:rejected"
  echo "[2001:db8:1::33]:v6-a"
  echo "[2001:db8:1::34]:v6-b"
} >"$work/fleet.txt"
# ping and trace exit 1 when some targets did not answer (as fping): the bed has such targets.
in_bed "$A" scan 198.19.0.0/16 --rate 50000 --all-events --no-default-blocklist --cooldown 2s \
  -q -o "$work/scan.parquet" 2>&1 | tail -n 2
in_bed "$A" sweep "$work/fleet.txt" --every 250ms --timeout 500ms --rounds 120 -q \
  -o "$work/sweep" 2>&1 | tail -n 1
in_bed "$A" ping 198.19.77.0/28 198.19.4.0/24 -c 5 -i 100ms --rate 5000 \
  -o "$work/ping.parquet" 2>&1 | tail -n 2 || true
in_bed "$A" trace 198.19.5.1 198.19.77.3 2001:db8:1::5 -o "$work/trace.parquet" 2>&1 | tail -n 1 || true

command -v /usr/bin/time >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
/usr/bin/time -f 'report: %e s, peak RSS %M KiB' \
  "$A" report "$work/scan.parquet" "$work/sweep" "$work/ping.parquet" "$work/trace.parquet" \
  --title "asdic report: the veth test bed" -o "$work/report"
printf 'report.html: %s bytes; figures: %s files, %s bytes\n' \
  "$(stat -c %s "$work/report/report.html")" "$(find "$work/report/figures" -type f | wc -l)" \
  "$(du -sb "$work/report/figures" | cut -f1)"

in_bed chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --window-size=1280,6400 \
  --screenshot="$work/shot.png" "file://$work/report/report.html" >/dev/null 2>"$work/chromium.log" || {
  cat "$work/chromium.log" >&2
  exit 1
}
cp "$work/shot.png" "$shot"
echo "screenshot: $shot ($(stat -c %s "$shot") bytes, 1280x6400)"
