#!/usr/bin/env python3
"""Joins xdp-txstamp's per-frame send stamps with a nanosecond capture of the link they went
out on (the router's side of it), one frame per target.

usage: xdp_txstamp.py PCAP STAMPS SCANNER_IP

STAMPS: lines "target seq user_ns txmd_ns" (CLOCK_REALTIME; txmd_ns 0 when the kernel gave
no completion stamp). For each frame, the capture's stamp of the request minus each send
stamp: a send stamp can only be earlier than the capture, so a negative difference means
that stamp is taken after the frame was on the wire. A third kind: the later of the clock
read before the frame's call and the completion stamp of the frame before it in the same
call (copy mode transmits a call's frames one after another). Prints one line of JSON per
stamp kind:
p50, p99 and max of capture − stamp (µs), how many were after the capture, how many frames
had no stamp of that kind.
"""
import ipaddress
import json
import sys

from rtt_truth import echo, packets, pct


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    pcap, stamps, scanner = sys.argv[1], sys.argv[2], ipaddress.ip_address(sys.argv[3])
    wire = {}
    for ts, data in packets(pcap):
        e = echo(data)
        if e is not None and e[2] == "req" and e[0] == scanner:
            wire.setdefault(e[1], ts)
    frames = {}
    with open(stamps) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                frames[int(parts[1])] = (ipaddress.ip_address(parts[0]), int(parts[2]), int(parts[3]))
    user, txmd, latest, missing, joined = [], [], [], 0, 0
    for i, (target, u, k) in sorted(frames.items()):
        if target not in wire:
            continue
        joined += 1
        user.append((wire[target] - u) / 1000.0)
        if k == 0:
            missing += 1
        else:
            txmd.append((wire[target] - k) / 1000.0)
        # The latest event known to precede the frame: the clock read before its call, or
        # the kernel's completion of the frame sent before it in the same call.
        prev = frames.get(i - 1)
        est = max(u, prev[2] if prev is not None and prev[1] == u else 0)
        latest.append((wire[target] - est) / 1000.0)
    for name, xs, miss in (
        ("user-space-before-call", user, 0),
        ("txmd-completion", txmd, missing),
        ("prev-frame-completion", latest, 0),
    ):
        print(json.dumps({
            "stamp": name,
            "joined": joined,
            "p50_us": pct(xs, 0.5),
            "p99_us": pct(xs, 0.99),
            "max_us": max(xs) if xs else None,
            "after_capture": sum(1 for x in xs if x < 0),
            "missing": miss,
        }))


if __name__ == "__main__":
    main()
