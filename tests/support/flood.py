#!/usr/bin/env python3
"""A session-id flood for the test bed: from the router namespace, learns the run's session
id and identifier from the first echo request asdic sends through the router (AF_PACKET on
IFACE; any probed host learns them the same way), then floods the scanner with echo replies
that carry them, from addresses of the bed's 198.19.0.0/16, with random sequences and a
stamp whose MAC is wrong, as fast as it can for SECONDS. Prints its count as one JSON line.

Safety: it sends only to SCANNER (198.18.0.1, the bed's scanner), inside the bed's
namespaces; the loop is bounded in time.

usage: flood.py IFACE SECONDS
"""
import json
import os
import random
import socket
import struct
import sys
import time

from inet import csum, ipv4

SCANNER = "198.18.0.1"


def main():
    iface, seconds = sys.argv[1], float(sys.argv[2])
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sniff.bind((iface, 0))
    sniff.settimeout(10)
    while True:
        pkt = sniff.recv(2048)
        ihl = (pkt[0] & 15) * 4
        if pkt[9] == 1 and socket.inet_ntoa(pkt[12:16]) == SCANNER and pkt[ihl] == 8:
            ident = struct.unpack("!H", pkt[ihl + 4:ihl + 6])[0]
            session = pkt[ihl + 8:ihl + 12]
            break
    sniff.close()
    print("ready", flush=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    dst = socket.inet_aton(SCANNER)
    # Precomputed replies (the Python loop is the bottleneck): 4,096 of them, sent round.
    frames = []
    for _ in range(4096):
        src = bytes([198, 19, random.randrange(256), random.randrange(256)])
        data = session + os.urandom(28)
        icmp = struct.pack("!BBHHH", 0, 0, 0, ident, random.randrange(65536)) + data
        icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
        frames.append(ipv4(src, dst, 1, icmp, ttl=60))
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in frames:
            try:
                s.sendto(f, (SCANNER, 0))
                sent += 1
            except OSError:
                pass
    print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main()
