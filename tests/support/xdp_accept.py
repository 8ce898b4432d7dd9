#!/usr/bin/env python3
"""Frames the kernel drops and valid replies it accepts, for tests/xdp_accept_bed.rs (issue 26).

Runs in the bed's router namespace on r0 (the scanner's side) and watches the echo requests
the scanner sends (AF_PACKET). For each one it may answer, at the scanner's interface, with
hand-built Ethernet frames (no scapy), from the genuine reply the probed host would send
(same identifier, sequence and data: its stamp is valid):

  for a dead host (it never answers: whatever arrives must not count):
    bad_csum    IPv4 only: the IP header checksum wrong
    dst_ip      the IP destination another address than the scanner's
    dst_mac     unicast to another MAC than the scanner's
    vlan        an 802.1Q tag (VLAN 5) in front of the IP header
    qinq        an 802.1ad tag (VLAN 5)
    bad_plen    IPv6 only: a payload length 8 bytes beyond the frame
  for a live host whose request the router drops (nft, set up by the test), the only reply:
    frag4       IPv4: two fragments (MF, then offset 3)
    opts4       IPv4: a header with options (IHL 6: three NOPs and an end of list)
    ext6        IPv6: hop-by-hop and destination options headers, then ICMPv6
    deep6       IPv6: hop-by-hop, routing (type 0, no segments left) and four destination
                options headers: six extension headers
    frag6       IPv6: two fragments (fragment header)
    deep7       IPv6: seven extension headers (one destination options header more than
                deep6): past what asdic's XDP program walks, so the kernel's (read back
                through the engine's raw socket)

usage: xdp_accept.py TOTAL DEAD4 DEAD6 FRAG4 EXT6 DEEP6 FRAG6 OPTS4 DEEP7
  each set a comma-separated list of addresses ("-" for none). It stops once TOTAL requests
  have been seen (0.5 s later, or after 30 s), and prints its counts as one JSON line.

Safety: it only sends on r0 of the bed, to the scanner's MAC, frames from the bed's
198.19.0.0/16 and 2001:db8:1::/64 (the dst_ip category: to 198.18.0.99 / 2001:db8:0:1::99).
"""
import json
import socket
import struct

from inet import csum
import sys
import time

SCAN4 = "198.18.0.1"
SCAN6 = "2001:db8:0:1::1"
OTHER4 = "198.18.0.99"
OTHER6 = "2001:db8:0:1::99"
OTHER_MAC = bytes.fromhex("020000000099")
ETH_P_ALL = 0x0003


def ipv4(src, dst, payload, ident, frag=0, proto=1, bad_csum=False, options=b""):
    h = struct.pack("!BBHHHBBH4s4s", 0x45 + len(options) // 4, 0,
                    20 + len(options) + len(payload), ident, frag, 61, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst)) + options
    c = csum(h) ^ (0x5555 if bad_csum else 0)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


def icmp4_reply(ident, seq, data):
    h = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + data
    return h[:2] + struct.pack("!H", csum(h)) + h[4:]


def icmp6_reply(src, dst, ident, seq, data):
    m = struct.pack("!BBHHH", 129, 0, 0, ident, seq) + data
    pseudo = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
              + struct.pack("!I3xB", len(m), 58))
    return m[:2] + struct.pack("!H", csum(pseudo + m)) + m[4:]


def ipv6(src, dst, next_header, payload, extra_len=0):
    return (struct.pack("!IHBB", 0x60000000, len(payload) + extra_len, next_header, 61)
            + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + payload)


def opts(next_header):
    """An 8-byte hop-by-hop or destination options header: one PadN option."""
    return struct.pack("!BB", next_header, 0) + b"\x01\x04\0\0\0\0"


def routing0(next_header):
    """A type-0 routing header with no segments left (8 bytes): nothing to route."""
    return struct.pack("!BBBB", next_header, 0, 0, 0) + b"\0\0\0\0"


def eth(dst, src, ethertype, payload, tag=None):
    if tag is not None:
        return dst + src + struct.pack("!HHH", tag, 5, ethertype) + payload
    return dst + src + struct.pack("!H", ethertype) + payload


def addrs(arg):
    return set() if arg == "-" else set(arg.split(","))


class Injector:
    def __init__(self, total, dead4, dead6, frag4, ext6, deep6, frag6, opts4, deep7):
        self.total = total
        self.dead4, self.dead6 = dead4, dead6
        self.frag4, self.ext6, self.deep6, self.frag6 = frag4, ext6, deep6, frag6
        self.opts4, self.deep7 = opts4, deep7
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("r0", 0))
        self.sock.settimeout(0.05)
        self.counts = {k: 0 for k in ["requests4", "requests6", "bad_csum", "dst_ip", "dst_mac",
                                      "vlan", "qinq", "bad_plen", "frag4", "opts4", "ext6", "deep6",
                                      "frag6", "deep7",
                                      "frames"]}
        self.ip_id = 0x4000

    def send(self, kind, frame):
        self.sock.send(frame)
        self.counts["frames"] += 1
        if kind:
            self.counts[kind] += 1

    def dead(self, scan_mac, rtr_mac, ethertype, good_ip, wrong_ip, with_csum):
        """The five frames around a genuine reply for a dead host."""
        if with_csum:
            self.send("bad_csum", eth(scan_mac, rtr_mac, ethertype, with_csum))
        self.send("dst_ip", eth(scan_mac, rtr_mac, ethertype, wrong_ip))
        self.send("dst_mac", eth(OTHER_MAC, rtr_mac, ethertype, good_ip))
        self.send("vlan", eth(scan_mac, rtr_mac, ethertype, good_ip, tag=0x8100))
        self.send("qinq", eth(scan_mac, rtr_mac, ethertype, good_ip, tag=0x88A8))

    def on_v4(self, scan_mac, rtr_mac, ip):
        ihl = (ip[0] & 0x0F) * 4
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        body = ip[ihl:struct.unpack("!H", ip[2:4])[0]]
        if src != SCAN4 or len(body) < 8 or body[0] != 8:
            return
        self.counts["requests4"] += 1
        ident, seq = struct.unpack("!HH", body[4:8])
        reply = icmp4_reply(ident, seq, body[8:])
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        if dst in self.dead4:
            self.dead(scan_mac, rtr_mac, 0x0800,
                      ipv4(dst, SCAN4, reply, self.ip_id),
                      ipv4(dst, OTHER4, reply, self.ip_id),
                      ipv4(dst, SCAN4, reply, self.ip_id, bad_csum=True))
        elif dst in self.frag4:
            # 24 bytes (3 units of 8) in the first fragment, the rest in the second.
            first, rest = reply[:24], reply[24:]
            self.send("frag4", eth(scan_mac, rtr_mac, 0x0800,
                                   ipv4(dst, SCAN4, first, self.ip_id, frag=0x2000)))
            self.send(None, eth(scan_mac, rtr_mac, 0x0800,
                                ipv4(dst, SCAN4, rest, self.ip_id, frag=3)))
        elif dst in self.opts4:
            self.send("opts4", eth(scan_mac, rtr_mac, 0x0800,
                                   ipv4(dst, SCAN4, reply, self.ip_id, options=b"\x01\x01\x01\x00")))

    def on_v6(self, scan_mac, rtr_mac, ip):
        if ip[6] != 58:
            return
        src = socket.inet_ntop(socket.AF_INET6, ip[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, ip[24:40])
        body = ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
        if src != SCAN6 or len(body) < 8 or body[0] != 128:
            return
        self.counts["requests6"] += 1
        ident, seq = struct.unpack("!HH", body[4:8])
        reply = icmp6_reply(dst, SCAN6, ident, seq, body[8:])
        if dst in self.dead6:
            self.dead(scan_mac, rtr_mac, 0x86DD, ipv6(dst, SCAN6, 58, reply),
                      ipv6(dst, OTHER6, 58, icmp6_reply(dst, OTHER6, ident, seq, body[8:])),
                      None)
            self.send("bad_plen", eth(scan_mac, rtr_mac, 0x86DD,
                                      ipv6(dst, SCAN6, 58, reply, extra_len=8)))
        elif dst in self.ext6:
            chain = opts(60) + opts(58)
            self.send("ext6", eth(scan_mac, rtr_mac, 0x86DD, ipv6(dst, SCAN6, 0, chain + reply)))
        elif dst in self.deep6:
            chain = opts(43) + routing0(60) + opts(60) + opts(60) + opts(60) + opts(58)
            self.send("deep6", eth(scan_mac, rtr_mac, 0x86DD, ipv6(dst, SCAN6, 0, chain + reply)))
        elif dst in self.deep7:
            chain = opts(43) + routing0(60) + opts(60) + opts(60) + opts(60) + opts(60) + opts(58)
            self.send("deep7", eth(scan_mac, rtr_mac, 0x86DD, ipv6(dst, SCAN6, 0, chain + reply)))
        elif dst in self.frag6:
            self.ip_id = (self.ip_id + 1) & 0xFFFF
            first, rest = reply[:24], reply[24:]
            h1 = struct.pack("!BBHI", 58, 0, 0x0001, self.ip_id)        # offset 0, M
            h2 = struct.pack("!BBHI", 58, 0, (3 << 3), self.ip_id)      # offset 3 units
            self.send("frag6", eth(scan_mac, rtr_mac, 0x86DD, ipv6(dst, SCAN6, 44, h1 + first)))
            self.send(None, eth(scan_mac, rtr_mac, 0x86DD, ipv6(dst, SCAN6, 44, h2 + rest)))

    def run(self):
        print("ready", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 30
        done_at = None
        while time.monotonic() < deadline:
            if done_at is not None and time.monotonic() >= done_at:
                break
            try:
                frame, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING or len(frame) < 14:
                continue
            rtr_mac, scan_mac = frame[0:6], frame[6:12]
            ethertype = struct.unpack("!H", frame[12:14])[0]
            if ethertype == 0x0800 and len(frame) >= 34:
                self.on_v4(scan_mac, rtr_mac, frame[14:])
            elif ethertype == 0x86DD and len(frame) >= 62:
                self.on_v6(scan_mac, rtr_mac, frame[14:])
            seen = self.counts["requests4"] + self.counts["requests6"]
            if done_at is None and seen >= self.total:
                done_at = time.monotonic() + 0.5
        print(json.dumps(self.counts), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    Injector(int(a[0]), *[addrs(x) for x in a[1:9]]).run()
