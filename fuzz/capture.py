#!/usr/bin/env python3
"""Captures ICMP and ICMPv6 frames seen in this network namespace (run it inside the test
bed's scanner namespace) for a few seconds and keeps a diverse few of each kind as seed corpus
files: at most PER_KIND frames per (ethertype, ICMP type, code, direction), each written as
corpus/frames/<kind>-<sha1>.bin.

usage: capture.py OUT_DIR SECONDS
"""
import hashlib
import os
import socket
import sys
import time

PER_KIND = 4
ETH_P_ALL = 0x0003


def kind(frame):
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != 1 or len(frame) < 14 + ihl + 4:
            return None
        t, c = frame[14 + ihl], frame[15 + ihl]
        return f"v4-t{t}-c{c}"
    if ethertype == 0x86DD and len(frame) >= 58:
        if frame[20] != 58:
            return None
        t, c = frame[54], frame[55]
        return f"v6-t{t}-c{c}"
    return None


def main():
    out, secs = sys.argv[1], float(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.settimeout(0.2)
    seen = {}
    end = time.monotonic() + secs
    kept = 0
    while time.monotonic() < end:
        try:
            frame, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        k = kind(frame)
        if k is None:
            continue
        # addr[2] is the packet type: 0 host (to us), 4 outgoing.
        k += "-out" if addr[2] == 4 else "-in"
        if seen.get(k, 0) >= PER_KIND:
            continue
        seen[k] = seen.get(k, 0) + 1
        name = f"{k}-{hashlib.sha1(frame).hexdigest()[:12]}.bin"
        with open(os.path.join(out, name), "wb") as f:
            f.write(frame)
        kept += 1
    print(f"capture: kept {kept} frames of {len(seen)} kinds: {' '.join(sorted(seen))}")


if __name__ == "__main__":
    main()
