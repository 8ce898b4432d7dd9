#!/usr/bin/env bash
# Refreshes fuzz/corpus/frames/ with real frames from the veth test bed: echo requests as
# asdic sends them (raw and XDP engines, IPv4 and IPv6, small and large), the kernel's echo
# replies, the router's destination-unreachable errors (the rejected /24 and /120) and
# time-exceeded errors (a trace), neighbour discovery. The bed is torn down on exit.
#
# usage: sudo fuzz/capture-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -p asdic-cli >&2
id=corp$$
out=fuzz/corpus/frames
trap 'scripts/bed.sh down "$id" >/dev/null 2>&1 || true' EXIT
scripts/bed.sh up "$id" >/dev/null
A=$PWD/target/release/asdic
rm -rf "$out"
scripts/bed.sh exec "$id" -- python3 fuzz/capture.py "$out" 12 &
cap=$!
sleep 1
run() { scripts/bed.sh exec "$id" -- "$A" "$@" >/dev/null 2>&1 || true; }
run ping 198.19.0.1 198.19.0.13 198.19.77.5 2001:db8:1::1 2001:db8:1::4d05 -c 2 -i 200ms --engine raw
run ping 198.19.0.2 2001:db8:1::2 -c 2 -i 200ms -s 1400 --engine raw
run ping 198.19.0.3 2001:db8:1::3 -c 2 -i 200ms --engine xdp
run ping 198.19.0.4 -c 1 -s 3000 --engine raw
run trace 198.19.0.5 2001:db8:1::5 --engine raw
wait "$cap"
ls "$out" | wc -l
