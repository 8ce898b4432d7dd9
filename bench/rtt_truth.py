#!/usr/bin/env python3
"""Wire truth for RTTs: joins a nanosecond pcap taken on the router's scanner-side link with
a prober's per-target RTTs.

usage: rtt_truth.py PCAP RTTS SCANNER_IP [RESOLUTION_NS]

PCAP: tcpdump -w with --time-stamp-precision=nano (Ethernet, IPv4/IPv6 ICMP echo).
RTTS: lines "target rtt_us" (one probe per target; other lines ignored).
RESOLUTION_NS: the prober's RTT resolution, where its printed decimals do not say it (fping
prints ms with two or three decimals, zmap whole µs).

For every echo request from SCANNER_IP and the echo reply with the same target, identifier
and sequence going back, the wire RTT is the reply's stamp minus the request's (both taken by
the router's kernel on the same link). A prober's RTT for that probe can only be larger: its
own send and receive paths add to it. Prints one line of JSON: how many probes were joined,
the prober's RTT minus the wire RTT (p50, p99, max, µs), how many were below the wire, how
many distinct RTT values the prober gave for them, and how many distinct wire RTTs the same
probes had at the resolution the prober prints (decimals of µs): a prober that quantises
its stamps (one per batch) gives far fewer values than the wire; one that does not gives
about as many (the wire's own spread bounds both: RTTs within 2 µs of each other at 1 ns
resolution can take at most 2,000 values).
"""
import ipaddress
import json
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        if magic == 0xA1B23C4D:
            endian, scale = "<", 1
        elif magic == 0x4D3CB2A1:
            endian, scale = ">", 1
        elif magic == 0xA1B2C3D4:
            endian, scale = "<", 1000
        elif magic == 0xD4C3B2A1:
            endian, scale = ">", 1000
        else:
            sys.exit(f"{path}: not a pcap file")
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        if linktype != 1:
            sys.exit(f"{path}: link type {linktype}, want Ethernet")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield sec * 1_000_000_000 + frac * scale, data


def echo(data):
    """(src, dst, type, ident, seq) of an ICMP/ICMPv6 echo frame, or None."""
    if len(data) < 14:
        return None
    proto = struct.unpack("!H", data[12:14])[0]
    ip = data[14:]
    if proto == 0x0800 and len(ip) >= 20 and ip[9] == 1:
        ihl = (ip[0] & 0xF) * 4
        icmp = ip[ihl:]
        if len(icmp) < 8 or icmp[0] not in (0, 8):
            return None
        kind = "req" if icmp[0] == 8 else "rep"
        src, dst = ipaddress.ip_address(ip[12:16]), ipaddress.ip_address(ip[16:20])
    elif proto == 0x86DD and len(ip) >= 40 and ip[6] == 58:
        icmp = ip[40:]
        if len(icmp) < 8 or icmp[0] not in (128, 129):
            return None
        kind = "req" if icmp[0] == 128 else "rep"
        src, dst = ipaddress.ip_address(ip[8:24]), ipaddress.ip_address(ip[24:40])
    else:
        return None
    ident, seq = struct.unpack("!HH", icmp[4:8])
    return src, dst, kind, ident, seq


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    pcap, rtts, scanner = sys.argv[1], sys.argv[2], ipaddress.ip_address(sys.argv[3])
    sent, wire = {}, {}
    for ts, data in packets(pcap):
        e = echo(data)
        if e is None:
            continue
        src, dst, kind, ident, seq = e
        if kind == "req" and src == scanner:
            sent.setdefault((dst, ident, seq), ts)
        elif kind == "rep" and dst == scanner:
            t0 = sent.get((src, ident, seq))
            if t0 is not None and src not in wire:
                wire[src] = ts - t0
    diffs, values, joined_wire, decimals = [], set(), [], 0
    with open(rtts) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            try:
                target, rtt_us = ipaddress.ip_address(parts[0]), float(parts[1])
            except ValueError:
                continue
            if target in wire:
                values.add(rtt_us)
                joined_wire.append(wire[target])
                diffs.append(rtt_us - wire[target] / 1000.0)
                if "." in parts[1]:
                    decimals = max(decimals, len(parts[1].split(".")[1]))
    # The wire's RTTs (ns) at the prober's resolution: 10^(3 - decimals) ns.
    step = int(sys.argv[4]) if len(sys.argv) == 5 else 10 ** max(0, 3 - min(decimals, 3))
    out = {
        "joined": len(diffs),
        "wire_p50_us": pct([w / 1000.0 for w in wire.values()], 0.5),
        "p50_us": pct(diffs, 0.5),
        "p99_us": pct(diffs, 0.99),
        "max_us": max(diffs) if diffs else None,
        "below_wire": sum(1 for d in diffs if d < 0),
        "distinct": len(values),
        "wire_distinct": len({w // step for w in joined_wire}),
        # The rate the probes went at: requests over their span on the wire.
        "wire_pps": (len(sent) - 1) * 1e9 / (max(sent.values()) - min(sent.values()))
        if len(sent) > 1 and max(sent.values()) > min(sent.values()) else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
