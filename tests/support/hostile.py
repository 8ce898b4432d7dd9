#!/usr/bin/env python3
"""A hostile peer for the test bed: runs in the far namespace while asdic probes the bed and,
watching the echo requests that arrive (AF_PACKET on f0), sends back to the prober, through
the router, traffic that must never count as a live host or an RTT:

  forged      an echo reply from the probed address, right id/seq, MAC altered
  unprobed    a copy of a genuine reply's ICMP from an address never probed
  replay      the far host's own genuine replies, sent again later: 0.2 s later
              (replay_early: a duplicate) and 1.5 s later (replay_late: past the scan's
              cooldown, stale)
  truncated   an echo reply with data too short for a stamp
  cut_error   an error whose quoted datagram is cut inside its IP header
  bad_checksum an echo reply with a wrong ICMP checksum
  oversized   an echo reply with 1,200 bytes of someone else's data
  error       destination-unreachable errors quoting echo requests asdic never sent
  unrelated   errors about other traffic (UDP, TCP)
  queries     timestamp and information requests

Every K-th request triggers one of each; unrelated packets go out at a steady pace. Replays
go out 0.2 s after the genuine reply (a duplicate) and 1.5 s after it (past the scan's
400 ms cooldown: stale). Once TOTAL requests have been
seen (the run's last probe), it stops at once: replays not yet due are dropped, so that
everything it sent reached the prober before the prober's cooldown ended; it prints its counts
(of packets sent) as one JSON line on stdout. IPv4 only.

Safety: it only sends to SCANNER (198.18.0.1, the bed's scanner) from addresses of the bed's
198.19.0.0/16 or its router/far hosts, inside the bed's namespaces.

usage: hostile.py K TOTAL UNPROBED_PREFIX (e.g. 4 4096 198.19.200)
"""
import json
import os
import random
import socket
import struct

from inet import csum
import sys
import time

SCANNER = "198.18.0.1"
# Everything the peer sends carries this TTL, so that it never mistakes its own packets
# (seen leaving f0) for the far host's genuine replies.
TTL = 61
ETH_P_ALL = 0x0003


def icmp(t, code, rest, data):
    h = struct.pack("!BBH4s", t, code, 0, rest) + data
    c = csum(h)
    return h[:2] + struct.pack("!H", c) + h[4:]


def echo_reply(ident, seq, data):
    return icmp(0, 0, struct.pack("!HH", ident, seq), data)


def ipv4(src, dst, payload, proto=1, ttl=TTL, total=None):
    h = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total if total is not None else 20 + len(payload),
        random.randrange(65536),
        0,
        ttl,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    c = csum(h)
    return h[:10] + struct.pack("!H", c) + h[12:] + payload


class Peer:
    def __init__(self, k, total, unprobed):
        self.k, self.total, self.unprobed = k, total, unprobed
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.rx.bind(("f0", 0))
        self.rx.settimeout(0.05)
        self.counts = {k: 0 for k in
                       ["requests", "forged", "unprobed", "replay", "replay_early", "replay_late",
                        "truncated", "cut_error",
                        "bad_checksum", "oversized", "error", "unrelated", "queries"]}
        self.due = []  # (time, kind, packet) replays
        self.seen = 0
        self.replies = 0

    def send(self, kind, pkt):
        self.tx.sendto(pkt, (SCANNER, 0))
        self.counts[kind] += 1

    def on_request(self, src, dst, ident, seq, data):
        self.counts["requests"] += 1
        self.seen += 1
        if self.seen % self.k:
            return
        # Forged: right addresses and identifiers, one MAC bit flipped.
        bad = bytearray(data)
        if len(bad) >= 32:
            bad[24] ^= 0x01
        self.send("forged", ipv4(dst, src, echo_reply(ident, seq, bytes(bad))))
        # A genuine-looking reply from an address never probed.
        other = f"{self.unprobed}.{random.randrange(1, 255)}"
        self.send("unprobed", ipv4(other, src, echo_reply(ident, seq, data)))
        # Truncated: an echo reply with 12 bytes of data, too short for asdic's stamp. (ICMP
        # shorter than its 8-byte header never reaches a raw ICMP socket: the kernel's raw
        # ICMP filter drops it.)
        self.send("truncated", ipv4(dst, src, echo_reply(ident, seq, data[:12])))
        # An error whose quoted datagram is cut inside its IP header.
        self.send("cut_error", ipv4("198.18.1.2", src, icmp(3, 1, b"\0\0\0\0", ipv4(src, dst, b"")[:12])))
        # An echo reply with a wrong checksum.
        r = bytearray(echo_reply(ident, seq, data))
        r[2] ^= 0xFF
        self.send("bad_checksum", ipv4(dst, src, bytes(r)))
        # Oversized: someone else's 1,200 bytes under our identifiers.
        junk = bytes(random.randrange(256) for _ in range(1200))
        self.send("oversized", ipv4(dst, src, echo_reply(ident, seq, junk)))
        # An error quoting an echo request asdic never sent (other id/seq, other target).
        quoted = ipv4(src, f"198.19.{random.randrange(256)}.{random.randrange(256)}",
                      icmp(8, 0, struct.pack("!HH", ident ^ 0x5555, seq ^ 0xAAAA), data[:8]))
        self.send("error", ipv4("198.18.1.2", src, icmp(3, 1, b"\0\0\0\0", quoted)))

    def on_reply(self, pkt):
        # Every K-th genuine reply of the far host (outgoing on f0): replayed twice, later.
        self.replies += 1
        if self.replies % self.k == 0:
            now = time.monotonic()
            self.due.append((now + 0.2, "replay_early", pkt))
            self.due.append((now + 1.5, "replay_late", pkt))

    def unrelated(self):
        # Errors about other traffic (UDP, TCP) reach asdic's socket and count as "other";
        # queries (timestamp, information) are dropped by the raw engine's ICMP_FILTER, which
        # passes only echo replies and errors.
        errors = [
            icmp(3, 3, b"\0\0\0\0", ipv4(SCANNER, "198.19.9.9", b"\0" * 8, proto=17)),
            icmp(12, 0, b"\x14\0\0\0", ipv4(SCANNER, "198.19.9.9", b"\0" * 8, proto=6)),
            icmp(11, 0, b"\0\0\0\0", ipv4(SCANNER, "198.19.9.9", b"\0" * 8, proto=17)),
        ]
        queries = [
            icmp(13, 0, struct.pack("!HH", 7, 7), b"\0" * 12),
            icmp(15, 0, struct.pack("!HH", 8, 8), b""),
        ]
        if random.randrange(2):
            self.send("unrelated", ipv4("198.19.250.1", SCANNER, random.choice(errors)))
        else:
            self.send("queries", ipv4("198.19.250.1", SCANNER, random.choice(queries)))

    def run(self):
        print("ready", file=sys.stderr, flush=True)
        last = None
        next_unrelated = time.monotonic()
        while True:
            now = time.monotonic()
            for t, kind, p in [d for d in self.due if d[0] <= now]:
                # Our TTL, so that the replay is not taken for a genuine reply in turn (the
                # kernel recomputes the header checksum of IP_HDRINCL packets).
                p = bytearray(p)
                p[8] = TTL
                self.send("replay", bytes(p))
                self.counts[kind] += 1
            self.due = [d for d in self.due if d[0] > now]
            if last is not None and now >= next_unrelated:
                self.unrelated()
                next_unrelated = now + 0.002
            if self.counts["requests"] >= self.total:
                break
            try:
                frame, addr = self.rx.recvfrom(65535)
            except socket.timeout:
                continue
            if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
                continue
            ihl = (frame[14] & 0x0F) * 4
            ip = frame[14:]
            body = ip[ihl:]
            if len(body) < 8:
                continue
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            t, = struct.unpack("!B", body[:1])
            ident, seq = struct.unpack("!HH", body[4:8])
            outgoing = addr[2] == socket.PACKET_OUTGOING
            if t == 8 and not outgoing and src == SCANNER:
                last = now
                self.on_request(src, dst, ident, seq, bytes(body[8:]))
            elif t == 0 and outgoing and dst == SCANNER and ip[8] != TTL:
                self.on_reply(bytes(ip))
        print(json.dumps(self.counts), flush=True)


if __name__ == "__main__":
    random.seed(int(os.environ.get("HOSTILE_SEED", "7")))
    Peer(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]).run()
